"""The project's URLs: the admin, as startproject has it, and the item view."""

from django.contrib import admin
from django.urls import path

from djangoapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("items/<int:item_id>", views.read_item),
]
