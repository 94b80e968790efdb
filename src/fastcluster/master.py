"""The master process: owns the listening sockets and the stats block, forks one worker per slot pinned to
its CPU, and supervises them. One loop; signal handlers only queue the signal and wake the loop through a
pipe (as gunicorn's arbiter does)."""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import sys
import time
from dataclasses import dataclass

from setproctitle import setproctitle

from fastcluster import worker
from fastcluster.balancing import make_balancer
from fastcluster.config import Config
from fastcluster.core.stats import new_block, reset_slot

log = logging.getLogger("fastcluster.master")

#: Slots the stats block has room for (records are small; scaling up never remaps it).
MAX_SLOTS = 1024
#: A worker that dies sooner than this after starting counts as failing; its restarts back off.
QUICK_DEATH = 1.0
MAX_BACKOFF = 10.0
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)


@dataclass
class Slot:
    index: int
    cpu: int | None
    pid: int = 0
    started: float = 0.0
    quick_deaths: int = 0
    respawn_at: float = 0.0
    boot_failed: str = ""


class Master:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.balancer = make_balancer(config.balance)
        self.slots: dict[int, Slot] = {}
        self.stats_block = new_block(MAX_SLOTS)
        self.signal_queue: list[int] = []
        self.wake_r = self.wake_w = -1
        self.boot_errors_r = self.boot_errors_w = -1
        self.stopping = False

    # ---- life cycle ----

    def run(self) -> int:
        config = self.config
        try:
            self.balancer.open(config.binds, config.workers, config.backlog)
        except OSError as exc:
            print(f"fastcluster: error: {exc.strerror or exc}", file=sys.stderr)
            return 2
        setproctitle(f"fastcluster: master [{' '.join(self.balancer.addresses())}]")
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.boot_errors_r, self.boot_errors_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self.queue_signal)
        log.info("fastcluster master %d listening on %s with %d workers (%s)", os.getpid(),
                 ", ".join(self.balancer.addresses()), config.workers, config.balance)
        for index in range(config.workers):
            self.slots[index] = Slot(index, config.cpu_for(index))
            self.spawn(self.slots[index])
        try:
            return self.loop()
        finally:
            self.balancer.close()

    def loop(self) -> int:
        while True:
            self.wait(self.next_wakeup())
            while self.signal_queue:
                signum = self.signal_queue.pop(0)
                if signum == signal.SIGCHLD:
                    continue
                if signum in (signal.SIGTERM, signal.SIGINT):
                    return self.stop(graceful=True)
                if signum == signal.SIGQUIT:
                    return self.stop(graceful=False)
            self.reap()
            if all(slot.boot_failed for slot in self.slots.values()):
                reasons = sorted({slot.boot_failed for slot in self.slots.values()})
                print(f"fastcluster: error: no worker could start: {'; '.join(reasons)}", file=sys.stderr)
                return worker.WORKER_BOOT_ERROR
            self.respawn_due()

    def stop(self, graceful: bool) -> int:
        """Stop every worker: TERM and wait up to the graceful timeout (a second signal or QUIT: at once)."""
        self.stopping = True
        log.info("stopping (%s)", "graceful" if graceful else "immediate")
        self.balancer.close()  # the workers hold their own copies until they finish
        self.signal_workers(signal.SIGTERM if graceful else signal.SIGQUIT)
        deadline = time.monotonic() + (self.config.graceful_timeout + 1 if graceful else 2)
        while self.live_pids() and time.monotonic() < deadline:
            self.wait(min(0.1, deadline - time.monotonic()))
            if any(signum != signal.SIGCHLD for signum in self.signal_queue) and graceful:
                log.info("second stop signal: stopping at once")
                graceful = False
                self.signal_workers(signal.SIGQUIT)
                deadline = min(deadline, time.monotonic() + 2)
            self.signal_queue.clear()
            self.reap()
        if self.live_pids():
            log.warning("killing %d workers that did not stop in time", len(self.live_pids()))
            self.signal_workers(signal.SIGKILL)
            while self.live_pids():
                self.reap(block=True)
        log.info("stopped")
        return 0

    # ---- workers ----

    def spawn(self, slot: Slot) -> None:
        reset_slot(self.stats_block, slot.index)
        sockets = self.balancer.sockets_for(slot.index)
        pid = os.fork()
        if pid == 0:
            self.become_worker(slot, sockets)
        slot.pid = pid
        slot.started = time.monotonic()
        log.debug("worker %d started as pid %d on CPU %s", slot.index, pid, slot.cpu)

    def become_worker(self, slot: Slot, sockets) -> None:
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        mine = {sock.fileno() for sock in sockets}
        for sock in self.balancer.all_sockets():
            if sock.fileno() not in mine:
                sock.close()  # a slot's socket must close when its master says so, not when we exit
        os.close(self.wake_r)
        os.close(self.wake_w)
        os.close(self.boot_errors_r)
        worker.run(slot.index, self.config, sockets, self.stats_block, self.boot_errors_w)

    def reap(self, block: bool = False) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.worker_exited(pid, status)
            if block:
                return

    def worker_exited(self, pid: int, status: int) -> None:
        slot = next((slot for slot in self.slots.values() if slot.pid == pid), None)
        if slot is None:
            return
        slot.pid = 0
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            return
        if code == worker.WORKER_BOOT_ERROR:
            slot.boot_failed = self.boot_error_for(slot.index) or "see the log above"
            log.error("worker %d could not start (%s); not restarting it", slot.index, slot.boot_failed)
            return
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        lived = time.monotonic() - slot.started
        slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH else 0
        delay = 0.0 if slot.quick_deaths <= 1 else min(MAX_BACKOFF, 0.1 * 2 ** (slot.quick_deaths - 2))
        slot.respawn_at = time.monotonic() + delay
        log.warning("worker %d (pid %d) %s; restarting it%s", slot.index, pid, how,
                    f" in {delay:.1f}s" if delay else "")

    def respawn_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots.values():
            if not slot.pid and not slot.boot_failed and slot.respawn_at <= now:
                self.spawn(slot)

    def boot_error_for(self, index: int) -> str:
        reason = ""
        try:
            for line in os.read(self.boot_errors_r, 65536).decode(errors="replace").splitlines():
                number, _, text = line.partition(" ")
                if number == str(index):
                    reason = text
        except BlockingIOError:
            pass
        return reason

    def live_pids(self) -> list[int]:
        return [slot.pid for slot in self.slots.values() if slot.pid]

    def signal_workers(self, signum: int) -> None:
        for pid in self.live_pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    # ---- signals and waiting ----

    def queue_signal(self, signum: int, frame) -> None:
        if len(self.signal_queue) < 16:
            self.signal_queue.append(signum)
        try:
            os.write(self.wake_w, b".")
        except OSError:
            pass

    def next_wakeup(self) -> float:
        due = [slot.respawn_at for slot in self.slots.values() if not slot.pid and not slot.boot_failed]
        return max(0.0, min(due) - time.monotonic()) if due else 1.0

    def wait(self, timeout: float) -> None:
        try:
            ready, _, _ = select.select([self.wake_r], [], [], max(0.0, timeout))
        except OSError as exc:
            if exc.errno != errno.EINTR:
                raise
            return
        if ready:
            try:
                while os.read(self.wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
