"""The Flask app of the flask scenario: GET /items/<item_id>?q= answers JSON."""

from flask import Flask, request

app = Flask(__name__)


@app.get("/items/<int:item_id>")
def read_item(item_id: int) -> dict:
    return {"item_id": item_id, "name": f"item {item_id}", "q": request.args.get("q")}
