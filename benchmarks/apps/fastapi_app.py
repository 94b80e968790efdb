"""The FastAPI app of the fastapi scenario: GET /items/{item_id}?q= answers a pydantic model as JSON."""

from typing import Optional

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    item_id: int
    name: str
    q: Optional[str] = None  # pydantic evaluates the annotation: `str | None` needs Python 3.10


@app.get("/items/{item_id}", response_model=Item)
async def read_item(item_id: int, q: Optional[str] = None) -> Item:
    return Item(item_id=item_id, name=f"item {item_id}", q=q)
