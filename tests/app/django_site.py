"""A one-module Django site (settings, views, URLs, WSGI and ASGI apps) as a real project has them: the admin
with its login over the database, and views that use asyncio the way sync Django code may. The database
is the SQLite file named by FASTCLUSTER_TEST_DB; `python django_site.py ADMIN_PASSWORD` creates it."""

import asyncio
import os
import sys

import django
from django.conf import settings
from django.contrib import admin
from django.http import JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                    "django.contrib.sessions", "django.contrib.messages"],
    MIDDLEWARE=["django.middleware.security.SecurityMiddleware",
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware",
                "django.middleware.clickjacking.XFrameOptionsMiddleware"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
                "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                   "django.contrib.auth.context_processors.auth",
                                                   "django.contrib.messages.context_processors.messages"]}}],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                           "NAME": os.environ.get("FASTCLUSTER_TEST_DB", ":memory:")}},
    STATIC_URL="/static/",
    USE_TZ=True,
)
django.setup()


async def double(number: int) -> int:
    await asyncio.sleep(0)
    return 2 * number


def run_coroutine(request):
    """A sync view that runs a coroutine of its own, as code calling an async library from sync code does."""
    return JsonResponse({"result": asyncio.run(double(21))})


def running_loop(request):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return JsonResponse({"running_loop": False})
    return JsonResponse({"running_loop": True})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("run/", run_coroutine),
    path("loop/", running_loop),
]


def wsgi_application():
    from django.core.wsgi import get_wsgi_application
    return get_wsgi_application()


def asgi_application():
    from django.core.asgi import get_asgi_application
    return get_asgi_application()


if __name__ == "__main__":
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    get_user_model().objects.create_superuser("admin", "admin@example.com", sys.argv[1])
