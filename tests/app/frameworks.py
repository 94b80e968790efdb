"""A Starlette app and a Flask app exercising what real users do (imported by the workers)."""

import asyncio
import contextlib
import os

from flask import Flask, Response, request
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
