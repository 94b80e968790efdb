"""A Starlette app and a Flask app exercising what real users do (imported by the workers)."""

import asyncio
import contextlib
import os

from flask import Flask, Response, request, stream_with_context
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

MARKER = os.environ.get("FASTCLUSTER_TEST_MARKER", "")


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"pool": "ready"}


async def item(request):
    return JSONResponse({"id": int(request.path_params["item_id"]), "q": request.query_params.get("q"),
                         "pool": request.state.pool})


async def create(request):
    data = await request.json()
    return JSONResponse({"received": data}, status_code=201)


async def numbers(request):
    async def produce():
        for number in range(3):
            yield f"{number}\n"
            await asyncio.sleep(0.01)
    return StreamingResponse(produce(), media_type="text/plain")


def remember():
    with open(MARKER, "a") as marker:
        marker.write("background ran\n")


async def background(request):
    return PlainTextResponse("queued", background=BackgroundTask(remember))


starlette_app = Starlette(routes=[Route("/items/{item_id}", item), Route("/items", create, methods=["POST"]),
                                  Route("/numbers", numbers), Route("/background", background)],
                          lifespan=lifespan)

flask_app = Flask(__name__)


@flask_app.post("/form")
def form():
    return {"name": request.form["name"], "age": int(request.form["age"])}


@flask_app.post("/upload")
def upload():
    uploaded = request.files["file"]
    return {"filename": uploaded.filename, "size": len(uploaded.read())}


@flask_app.get("/stream")
def stream():
    return Response((f"line {n}\n" for n in range(3)), mimetype="text/plain")


@flask_app.get("/async")
async def async_view():
    await asyncio.sleep(0)
    return {"async": True}


@flask_app.get("/page")
def page():
    return "<h1>A page</h1>\n"


@flask_app.get("/endless")
def endless():
    """Streams the request's path for ever, read from the request inside the stream (stream_with_context
    keeps the request's context until the response is closed), and notes in ?marker=FILE when it is closed."""
    def lines():
        try:
            while True:
                yield f"{request.path}\n" * 4096
        finally:  # as the response is closed
            with open(request.args["marker"], "a") as record:
                record.write(f"closed {request.path}\n")
    return Response(stream_with_context(lines()), mimetype="text/plain")


@flask_app.teardown_request
def record_teardown(error):
    if request.args.get("marker"):
        with open(request.args["marker"], "a") as record:
            record.write("teardown\n")
