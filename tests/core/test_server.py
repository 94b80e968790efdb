"""The worker's own loop (core/server.pyx) run in this process: how promptly a stop takes effect."""

import signal
import socket
import threading
import time

import pytest
from fastcluster.core.context import Context
from fastcluster.core.responder import Responder
from fastcluster.core.server import Server

from fastcluster.config import Limits

# The loop sleeps in epoll_wait until its once-a-second tick when nothing happens.
PROMPT = 0.3


@pytest.fixture
def server():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        server = Server(Context(Responder(), limits=Limits()), [listener])
        previous = signal.signal(signal.SIGUSR2, lambda *_: server.stop(graceful=True, timeout=5))
        try:
            yield server
        finally:
            signal.signal(signal.SIGUSR2, previous)
    assert server.open_connections == 0 and server.pending_buffers == 0


def test_a_stop_asked_before_the_loop_runs_ends_it_without_waiting_for_a_tick(server):
    server.stop(graceful=True, timeout=5)
    started = time.monotonic()
    server.run()
    assert time.monotonic() - started < PROMPT


def test_a_signal_that_does_not_interrupt_epoll_wait_still_stops_the_loop_at_once(server):
    """Its C handler runs on another thread, as it does on this one between two epoll_waits: only the
    wake-up pipe tells the sleeping loop that a Python handler waits to run."""
    sent = []

    def signal_from_another_thread():
        time.sleep(0.2)  # the loop is asleep, its next tick 0.8 s away
        sent.append(time.monotonic())
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)

    other = threading.Thread(target=signal_from_another_thread)
    other.start()
    server.run()
    stopped = time.monotonic()
    other.join()
    assert stopped - sent[0] < PROMPT
    assert signal.set_wakeup_fd(-1) == -1  # the loop gave back the wake-up fd it found
