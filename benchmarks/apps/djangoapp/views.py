"""The item view: GET /items/<item_id>?q= answers JSON without touching the database."""

from django.http import HttpRequest, JsonResponse


def read_item(request: HttpRequest, item_id: int) -> JsonResponse:
    return JsonResponse({"item_id": item_id, "name": f"item {item_id}", "q": request.GET.get("q")})
