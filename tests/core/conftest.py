"""Fixtures shared by the core tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def ws_server(serve_shared):
    """One server (one worker) for a module's WebSocket conformance cases, which must never end it."""
    return serve_shared()
