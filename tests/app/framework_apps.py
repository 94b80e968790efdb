"""A Starlette app and a Flask app exercising what real projects use, served by test_frameworks.py."""

import asyncio
import contextlib

from flask import Flask, Response, request
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

background_done: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from lifespan"}


async def item(request):
    return JSONResponse({"id": int(request.path_params["item_id"]), "q": request.query_params.get("q"),
                         "greeting": request.state.greeting})


async def create(request):
    payload = await request.json()
    return JSONResponse({"received": payload, "size": len(await request.body())}, status_code=201)


async def numbers(request):
    async def produce():
        for number in range(5):
            await asyncio.sleep(0.005)
            yield f"{number}\n"
    return StreamingResponse(produce(), media_type="text/plain")


async def remember(request):
    async def note():
        await asyncio.sleep(0.01)
        background_done.append(request.query_params["tag"])
    return PlainTextResponse("later", background=BackgroundTask(note))


async def recall(request):
    return JSONResponse(background_done)


starlette_app = Starlette(routes=[
    Route("/items/{item_id:int}", item),
    Route("/items", create, methods=["POST"]),
    Route("/numbers", numbers),
    Route("/remember", remember),
    Route("/recall", recall),
], lifespan=lifespan)


flask_app = Flask(__name__)


@flask_app.post("/form")
def form():
    return {"name": request.form["name"], "tags": request.form.getlist("tag")}


@flask_app.post("/upload")
def upload():
    uploaded = request.files["file"]
    data = uploaded.read()
    return {"filename": uploaded.filename, "size": len(data), "head": data[:10].decode("latin-1")}


@flask_app.get("/stream")
def stream():
    return Response((f"line {number}\n" for number in range(4)), mimetype="text/plain")


@flask_app.get("/")
def index():
    return "flask"
