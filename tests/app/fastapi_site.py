"""A FastAPI app as real projects write one: pydantic models in and out, path and query parameters, sync
and async endpoints, a dependency, validation errors and a WebSocket endpoint (imported by the workers)."""

from __future__ import annotations

import asyncio
import threading

from fastapi import Depends, FastAPI, Header, HTTPException, WebSocket
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


class Stored(Item):
    id: int
    q: str | None = None


async def caller(user_agent: str | None = Header(default=None)) -> str:
    return user_agent or "unknown"


@app.get("/items/{item_id}", response_model=Stored)
async def read_item(item_id: int, q: str | None = None, who: str = Depends(caller)):
    if item_id == 404:
        raise HTTPException(status_code=404, detail="no such item")
    return Stored(id=item_id, q=q, name=f"item {item_id}", price=9.5, tags=[who])


@app.post("/items", response_model=Stored, status_code=201)
async def create_item(item: Item):
    await asyncio.sleep(0)
    return Stored(id=1, **item.model_dump())


@app.get("/sync")
def blocking():
    """A sync endpoint: FastAPI runs it on its thread pool."""
    return {"thread": threading.current_thread() is not threading.main_thread()}


@app.websocket("/ws")
async def echo(websocket: WebSocket):
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(f"echo: {text}")
