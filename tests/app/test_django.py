"""A real Django site on fastcluster with the default settings: the admin login over the database, and sync
views that use asyncio, which only work where the WSGI app does not run inside a running event loop."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest

from tests.app.client import APPS
from tests.app.test_asgi import get

pytest.importorskip("django")

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    """A migrated database holding the user admin, made once for the module (a login only adds a session)."""
    database = str(tmp_path_factory.mktemp("django") / "db.sqlite3")
    subprocess.run([sys.executable, "django_site.py", PASSWORD], cwd=APPS,
                   env={"PATH": "", "FASTCLUSTER_TEST_DB": database}, check=True, timeout=60)
    return database


@pytest.fixture
def site(serve, database):
    """serve_site(interface) runs the Django site on the database."""
    env = {"FASTCLUSTER_TEST_DB": database}

    def serve_site(interface: str, *args: str):
        return serve(f"django_site:{interface}_application", "--factory", "--app-dir", APPS, *args, env=env)
    return serve_site


def cookies_of(headers: list[tuple[str, str]]) -> dict[str, str]:
    jar = SimpleCookie()
    for name, value in headers:
        if name.lower() == "set-cookie":
            jar.load(value)
    return {name: morsel.value for name, morsel in jar.items()}


def exchange(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request: (status, header list with repeats, body)."""
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    client.request(method, path, body=body, headers=headers or {})
    response = client.getresponse()
    return response.status, response.getheaders(), response.read()


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_admin_login(site, interface):
    server = site(interface)
    status, headers, page = exchange(server.port, "GET", "/admin/login/?next=/admin/")
    assert status == 200, page
    csrf_cookie = cookies_of(headers)["csrftoken"]
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    form = urlencode({"csrfmiddlewaretoken": token, "username": "admin", "password": PASSWORD,
                      "next": "/admin/"}).encode()
    status, headers, page = exchange(server.port, "POST", "/admin/login/?next=/admin/", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf_cookie}"})
    assert status == 302, page
    assert dict(headers)["Location"] == "/admin/"
    session = cookies_of(headers)["sessionid"]
    status, _, page = exchange(server.port, "GET", "/admin/", headers={"Cookie": f"sessionid={session}"})
    assert status == 200
    assert b"Site administration" in page


@pytest.mark.parametrize("threads", ["0", "2"])
def test_sync_views_see_no_running_loop(site, threads):
    server = site("wsgi", "--threads", threads)
    assert json.loads(get(server.port, "GET", "/loop/")[2]) == {"running_loop": False}
    for _ in range(3):  # the worker's own loop keeps serving after each app's loop came and went
        status, _, body = get(server.port, "GET", "/run/")
        assert (status, json.loads(body)) == (200, {"result": 42})
