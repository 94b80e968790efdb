"""ASGI 3 lifespan, and the worker's ASGI server: the HTTP exchanges themselves run in Cython
(fastcluster.core.asgi); this adds the startup and shutdown events, with their state, once per worker."""

from __future__ import annotations

import asyncio
import logging

from fastcluster.app.loading import AppLoadError, app_failure
from fastcluster.core.asgi import ASGI, AsgiApp

log = logging.getLogger("fastcluster.app")


class AsgiServer(AsgiApp):
    """The app as one worker runs it: HTTP exchanges (inherited) and lifespan."""

    # ---- lifespan ----

    async def startup(self, mode: str) -> None:
        """Run the app's lifespan startup; raise AppLoadError when it fails: its reason ends with the app's
        own last line (its exception's, or the last line of the message it sent), its details hold the
        traceback."""
        if mode == "off":
            return
        self.lifespan_events: asyncio.Queue = asyncio.Queue()
        self.lifespan_done: asyncio.Future = self.loop.create_future()
        self.lifespan_task = self.loop.create_task(self.run_lifespan(mode))
        await self.lifespan_events.put({"type": "lifespan.startup"})
        outcome = await self.lifespan_done
        if outcome is not None:
            raise outcome

    async def run_lifespan(self, mode: str) -> None:
        scope = {"type": "lifespan", "asgi": ASGI, "state": self.state}
        try:
            await self.app(scope, self.lifespan_events.get, self.lifespan_send)
        except BaseException as exc:
            if not self.lifespan_done.done():
                if mode == "on":
                    self.lifespan_done.set_result(app_failure("lifespan startup failed", exc))
                else:  # auto: an app that does not speak lifespan
                    log.debug("the app does not support lifespan (%s); going on without it", exc)
                    self.lifespan_done.set_result(None)
            elif self.lifespan_done.result() is None:  # after a good startup (a failed one is reported)
                log.error("lifespan task failed: %s: %s", type(exc).__name__, exc)
        finally:
            if not self.lifespan_done.done():
                self.lifespan_done.set_result(None)

    async def lifespan_send(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self.lifespan_done.set_result(None)
        elif kind == "lifespan.startup.failed":
            # Frameworks (Starlette) send the whole traceback: the reason is its last line.
            text = str(message.get("message", "")).strip()
            last = text.splitlines()[-1] if text else "(no message)"
            self.lifespan_done.set_result(AppLoadError(f"lifespan startup failed: {last}",
                                                       text + "\n" if "\n" in text else ""))
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if kind.endswith("failed"):
                log.error("lifespan shutdown failed: %s", message.get("message", ""))
            self.shutdown_done.set_result(None)

    async def shutdown(self) -> None:
        task = getattr(self, "lifespan_task", None)
        if task is None or task.done():
            return
        self.shutdown_done: asyncio.Future = self.loop.create_future()
        await self.lifespan_events.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self.shutdown_done), 10)
        except asyncio.TimeoutError:
            log.warning("lifespan shutdown did not complete within 10 s")
