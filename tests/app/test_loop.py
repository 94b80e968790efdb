"""--loop: the event loop of app workers (uvloop by default, asyncio's when asked or when uvloop cannot be
imported), and, on asyncio's, the paths of ours that lean on the loop: lifespan, timers, streamed answers,
WebSockets and the WSGI thread pool's hand-back (tests/master/test_master.py stops a worker on it with a
request in flight). The rest of the suite runs on the default loop."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from websockets.asyncio.client import connect

from tests.app.client import APPS, fetch
from tests.conftest import free_port


def loop_of(server) -> str:
    response, body = fetch(server, "/")
    assert response.status == 200
    return body.decode()


def without_uvloop(tmp_path) -> dict[str, str]:
    """An environment where `import uvloop` fails, as where it is not installed."""
    (tmp_path / "uvloop").mkdir()
    (tmp_path / "uvloop" / "__init__.py").write_text("raise ImportError('no uvloop here')\n")
    return {"PYTHONPATH": str(tmp_path)}


def test_apps_run_on_uvloop_by_default_and_on_asyncio_when_asked(serve):
    assert loop_of(serve("apps:loop_name", "--app-dir", APPS)) == "uvloop"
    assert loop_of(serve("apps:loop_name", "--app-dir", APPS, "--loop", "asyncio")) == "asyncio"


def test_without_uvloop_auto_takes_asyncio_and_asking_for_uvloop_is_one_line_and_status_2(serve, tmp_path):
    env = without_uvloop(tmp_path)
    assert loop_of(serve("apps:loop_name", "--app-dir", APPS, env=env)) == "asyncio"
    refused = subprocess.run(
        [sys.executable, "-m", "fastcluster", "serve", "apps:loop_name", "--app-dir", APPS,
         "--loop", "uvloop", "--port", str(free_port())],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert refused.stderr == ("fastcluster: error: --loop uvloop: uvloop cannot be imported "
                              "(pip install uvloop, or --loop asyncio)\n")


def test_on_asyncio_lifespan_streams_websockets_and_the_wsgi_pool_work(serve):
    scope_server = serve("apps:echo_scope", "--app-dir", APPS, "--loop", "asyncio")
    response, body = fetch(scope_server, "/x", "POST", b"hello")
    scope = json.loads(body)
    assert response.status == 200 and scope["state"] == {"started": "yes"} and scope["body_length"] == 5

    stream_server = serve("apps:stream", "--app-dir", APPS, "--loop", "asyncio")
    response, body = fetch(stream_server, "/")
    assert (response.status, body) == (200, b"".join(b"part %d\n" % index for index in range(5)))

    ws_server = serve("websocket_apps:raw", "--app-dir", APPS, "--loop", "asyncio")

    async def talk() -> None:
        async with connect(f"ws://127.0.0.1:{ws_server.port}/room") as ws:
            await ws.send("first")
            assert json.loads(await ws.recv())["path"] == "/room"
            assert await ws.recv() == "first"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"

    asyncio.run(talk())

    wsgi_server = serve("wsgi_apps:environ_echo", "--app-dir", APPS, "--loop", "asyncio", "--threads", "2")
    response, body = fetch(wsgi_server, "/w", "POST", b"body read on a pool thread")
    assert response.status == 200 and json.loads(body)["input"] == "body read on a pool thread"
