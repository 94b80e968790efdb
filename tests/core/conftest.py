"""Fixtures shared by the core tests."""

from __future__ import annotations

import pytest

from tests.conftest import Server, free_port


@pytest.fixture(scope="module")
def ws_server():
    """One server (one worker) for a module's WebSocket conformance cases, which must never end it."""
    server = Server(["--workers", "1"], free_port()).wait_ready()
    yield server
    assert server.stop() == 0, server.read_output()
    assert "Traceback" not in server.read_output() and "still counted" not in server.read_output()
