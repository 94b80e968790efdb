"""The master process: owns the listening sockets, the stats block, the control socket and the admin
listener; forks one worker per slot pinned to its CPU, and supervises them: respawn with backoff, rolling
reload, scaling, recycling, heartbeats. One loop; signal handlers only queue the signal and wake the loop
through a pipe (as gunicorn's arbiter does)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from setproctitle import setproctitle

from fastcluster import worker
from fastcluster.admin import AdminServer
from fastcluster.balancing import make_balancer
from fastcluster.config import Config
from fastcluster.control import ControlServer, default_control_path
from fastcluster.core.stats import (
    COUNTERS,
    STATE_DRAINING,
    STATE_NAMES,
    STATE_SERVING,
    new_block,
    read_slot,
    reset_slot,
)
from fastcluster.log_file import Collector, LogFile
from fastcluster.metrics import render_metrics
from fastcluster.notify import Notifier
from fastcluster.oneshot import Client
from fastcluster.open_files import raise_open_files_limit
from fastcluster.reloader import FileFilter, Watcher
from fastcluster.tls import decide_kernel_tls

log = logging.getLogger("fastcluster.master")

#: Records the stats block has room for: every live worker, including old ones draining, has its own.
MAX_RECORDS = 1024
#: A worker that dies sooner than this after starting counts as failing; its restarts back off.
QUICK_DEATH = 1.0
MAX_BACKOFF = 10.0
#: A slot whose worker cannot start (boot error) is tried again after 1 s, doubling up to 30 s.
BOOT_RETRY_FIRST = 1.0
BOOT_RETRY_MAX = 30.0
#: Exit status of a master none of whose first workers could start (the app or the setup is broken).
CANNOT_START = 2
#: How often the loop checks heartbeats, readiness, queues and recycling limits, at the least.
SUPERVISE_EVERY = 0.1
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD, signal.SIGHUP,
                   signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Worker:
    """One worker process (a slot has one serving, plus a booting replacement or old ones draining)."""

    pid: int
    slot: int
    cpu: int | None
    record: int
    started: float  # monotonic
    started_wall: float
    max_requests: int  # this worker's recycling limit with its jitter; 0: none
    state: str = "booting"  # booting, serving, draining
    reason: str = ""  # why it was replaced or is being stopped
    recycle_failed: bool = False  # its replacement could not start: do not try again for this worker
    rate: float = 0.0  # requests per second over the last second
    rate_mark: tuple[float, int] = (0.0, 0)
    rss: int = 0


@dataclass
class Slot:
    index: int
    cpu: int | None
    worker: Worker | None = None  # the worker taking new connections
    incoming: Worker | None = None  # its replacement, booting (reload, recycling)
    restarts: int = 0
    quick_deaths: int = 0
    respawn_at: float = 0.0
    boot_failed: str = ""  # why its last worker could not start; cleared when one serves
    boot_details: str = ""  # the app's traceback for it, if any
    boot_failures: int = 0  # workers of this slot that could not start, ever (for /metrics)
    failed_tries: int = 0  # in a row: sets the retry backoff
    removing: bool = False  # scaling down: out of rotation, waiting for its queue to empty
    retired: dict = field(default_factory=dict)  # counters of its finished workers


@dataclass
class Reload:
    pending: list[int]  # slots still to replace, in order
    reason: str
    result: tuple[bool, str] | None = None
    retired: list[Worker] = field(default_factory=list)  # old workers; done once none of them accepts


class Master:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.manager = config.manager
        self.balancer = make_balancer(config.balance)
        self.slots: dict[int, Slot] = {}
        self.workers: dict[int, Worker] = {}  # by pid: every live worker
        self.stats_block = new_block(MAX_RECORDS)
        self.free_records = list(range(MAX_RECORDS - 1, -1, -1))
        self.removed_totals: dict = {}  # counters of slots scaled away, so totals never go down
        self.target = config.workers
        self.signal_queue: list[int] = []
        self.wake_r = self.wake_w = -1
        self.boot_errors_r: socket.socket | None = None
        self.boot_errors_w: socket.socket | None = None
        self.boot_errors: dict[int, tuple[str, str]] = {}  # pid -> (reason, traceback)
        self.served = False  # a worker has served: from then on, boot failures are retried, never fatal
        self.tracebacks_shown: set[str] = set()  # boot-failure tracebacks logged (each once while it lasts)
        self.stopping = False  # the workers are being stopped
        self.drain_at: float | None = None  # a stop was asked: /healthz is 503; the listeners close then
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.reloads: list[Reload] = []  # the first is in progress
        self.replacing: int | None = None  # the slot whose replacement is booting
        self.reloads_done = 0
        self.waiters: list[tuple[Client, Callable[[], dict | None]]] = []
        self.control: ControlServer | None = None
        self.admin: AdminServer | None = None
        self.collector: Collector | None = None  # --log-file: the workers' output
        self.control_path = ""
        self.next_sample = 0.0
        self.stop_requested = False  # asked through the control socket
        self.notifier = Notifier()  # systemd, when $NOTIFY_SOCKET is set
        self.ready_notified = False
        self.ticket_keys_rotated = time.monotonic()  # when the current session ticket key began sealing
        self.watcher: Watcher | None = None  # --reload
        self.broken_shown = False  # --reload: the first start failed and the reason was shown

    # ---- life cycle ----

    def run(self) -> int:
        config = self.config
        try:
            self.balancer.open(config.binds, config.workers, config.backlog)
        except OSError as exc:
            print(f"fastcluster: error: {exc.strerror or exc}", file=sys.stderr)
            return 2
        # Resolved, with the ports the kernel chose: workers find their https sockets by these.
        self.config = config = dataclasses.replace(config, binds=self.balancer.binds)
        try:
            self.open_management()
        except OSError as exc:
            self.balancer.close()
            print(f"fastcluster: error: {exc.strerror or exc}", file=sys.stderr)
            return 2
        setproctitle(f"fastcluster: master [{' '.join(self.balancer.addresses())}]")
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Datagrams: each worker's report (with its traceback) arrives whole, however many fail at once.
        self.boot_errors_r, self.boot_errors_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.boot_errors_r.setblocking(False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self.queue_signal)
        log.info("fastcluster master %d listening on %s with %d workers (%s); control socket %s%s",
                 os.getpid(), ", ".join(self.balancer.addresses()), config.workers, config.balance,
                 self.control_path, f"; admin on http://{self.manager.admin_host}:{self.admin.port}"
                 if self.admin else "")
        if config.unpinned:
            log.info("workers not pinned to CPUs: %s", config.unpinned)
        if config.tls:
            kernel_tls = decide_kernel_tls(config.tls.ktls)
            self.config = config = dataclasses.replace(
                config, tls=dataclasses.replace(config.tls, kernel_tls=kernel_tls))
            log.info("TLS: %s", kernel_tls.line)
        raise_open_files_limit(config.limits.max_connections)
        for index in range(config.workers):
            self.slots[index] = Slot(index, config.cpu_for(index))
            self.spawn(self.slots[index])
        self.start_watching()
        try:
            return self.loop()
        finally:
            if self.watcher:
                self.watcher.close()
            for signum in HANDLED_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)  # stopped: a late signal must not kill the exit
            self.balancer.close()
            self.close_management()
            self.boot_errors_r.close()
            self.boot_errors_w.close()
            self.notifier.close()

    def start_watching(self) -> None:
        """--reload: a thread watches the files and wakes this loop; reload_changed() reloads."""
        watch = self.manager.reload
        if watch is None:
            return
        self.watcher = Watcher(watch.dirs, FileFilter(watch.dirs, watch.includes, watch.excludes), self.wake)
        self.watcher.start()

    def reload_changed(self) -> None:
        """Changed files (--reload): one rolling reload for them, unless one is already waiting to start."""
        if self.watcher.newly_watching():
            log.info("reloading the workers when files change in %s", ", ".join(self.manager.reload.dirs))
        changed = self.watcher.changed()
        if not changed:
            return
        names = ", ".join(changed[:5]) + (", ..." if changed[5:] else "")
        if self.broken_shown:  # nothing ever served: start every slot again with the changed files
            log.info("changed: %s; starting the workers again", names)
            self.broken_shown = False
            for slot in self.slots.values():
                slot.boot_failed = slot.boot_details = ""
                slot.failed_tries = 0
                slot.respawn_at = 0.0
            return
        if any(reload.reason == "reloaded" and not reload.retired and reload is not self.reloads[0]
               for reload in self.reloads):
            log.info("changed: %s; a reload is already waiting", names)
            return
        self.start_reload(f"changed: {names}")

    def open_management(self) -> None:
        self.control_path = self.manager.control or default_control_path(self.balancer.all_sockets())
        if self.manager.pidfile:
            write_pidfile(self.manager.pidfile)
        try:
            if self.manager.log_file:
                self.collector = Collector(LogFile(self.manager.log_file, self.manager.log_max_size,
                                                   self.manager.log_backups))
            self.control = ControlServer(self.control_path)
            if self.manager.admin_port is not None:
                self.admin = AdminServer(self.manager.admin_host, self.manager.admin_port, self.admin_page)
        except OSError:
            self.close_management()
            raise

    def close_management(self) -> None:
        if self.collector:
            self.collector.close()
        if self.control:
            self.control.close()
        if self.admin:
            self.admin.close()
        if self.manager.pidfile:
            remove_pidfile(self.manager.pidfile)

    def loop(self) -> int:
        while True:
            self.wait(self.next_wakeup())
            while self.signal_queue:
                signum = self.signal_queue.pop(0)
                if signum in (signal.SIGTERM, signal.SIGINT):
                    if self.drain_at is not None:
                        log.info("second stop signal: stopping at once")
                        return self.stop(graceful=False)
                    self.announce_stop()
                elif signum == signal.SIGQUIT:
                    return self.stop(graceful=False)
                elif self.drain_at is not None and signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
                    log.info("ignoring %s: the server is stopping", signal.Signals(signum).name)
                elif signum == signal.SIGHUP:
                    self.start_reload("SIGHUP")
                elif signum == signal.SIGTTIN:
                    self.scale(self.target + 1)
                elif signum == signal.SIGTTOU:
                    self.scale(self.target - 1)
                elif signum == signal.SIGUSR1:
                    log.info("reopening log files")
                    if self.collector:
                        self.collector.log_file.open()
                    self.signal_workers(signal.SIGUSR1)
            if self.watcher:
                self.reload_changed()
            self.reap()
            if not self.served and self.slots and all(slot.boot_failed for slot in self.slots.values()):
                if self.watcher is None:
                    return self.cannot_start()
                self.wait_for_a_fix()
            if self.stop_requested:
                self.announce_stop()
            if self.drain_at is not None and time.monotonic() >= self.drain_at:
                return self.stop(graceful=True)
            self.supervise()
            self.respawn_due()

    def cannot_start(self) -> int:
        """No worker of the first start could start: show each distinct traceback once, then the reason."""
        reasons, details = self.first_start_failure()
        sys.stderr.write(details)
        print(f"fastcluster: error: no worker could start: {reasons}", file=sys.stderr)
        self.stopping = True
        self.signal_workers(signal.SIGKILL)  # none should be left; a reload may have started one
        while self.workers:
            self.reap(block=True)
        return CANNOT_START

    def announce_stop(self) -> None:
        """A graceful stop was asked: /healthz answers 503 from now on, while the workers keep serving for
        --drain-delay seconds so that load balancers stop sending first; then the loop calls stop()."""
        if self.drain_at is not None:
            return
        delay = self.config.drain_delay
        self.drain_at = time.monotonic() + delay
        self.notifier.stopping()
        if delay:
            log.info("stop asked: /healthz answers 503; serving %gs more (--drain-delay) before closing the "
                     "listeners", delay)

    def first_start_failure(self) -> tuple[str, str]:
        """Why the slots could not start, and each distinct traceback once."""
        failed = sorted(self.slots.values(), key=lambda slot: slot.index)
        details = "".join(dict.fromkeys(slot.boot_details for slot in failed if slot.boot_details))
        return "; ".join(dict.fromkeys(slot.boot_failed for slot in failed)), details

    def wait_for_a_fix(self) -> None:
        """--reload, and no worker of the first start could start: say why once, then wait for a change
        (reload_changed() starts them again) instead of exiting."""
        if self.broken_shown:
            return
        self.broken_shown = True
        reasons, details = self.first_start_failure()
        log.error("no worker could start: %s; waiting for a change to start them again%s", reasons,
                  f"\n{details.rstrip()}" if details else "")

    def stop(self, graceful: bool) -> int:
        """Stop every worker: TERM and wait up to the graceful timeout (a second signal or QUIT: at once)."""
        self.stopping = True
        if self.drain_at is None:
            self.drain_at = time.monotonic()
            self.notifier.stopping()
        log.info("stopping (%s)", "graceful" if graceful else "immediate")
        for client, _ in self.waiters:
            self.control.answer(client, {"ok": False, "error": "the server is stopping"})
        self.waiters.clear()
        self.balancer.close()  # the workers hold their own copies until they finish
        self.signal_workers(signal.SIGTERM if graceful else signal.SIGQUIT)
        deadline = time.monotonic() + (self.config.graceful_timeout + 1 if graceful else 2)
        while self.workers and time.monotonic() < deadline:
            self.wait(min(0.1, deadline - time.monotonic()))
            if graceful and any(signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
                                for signum in self.signal_queue):
                log.info("second stop signal: stopping at once")
                graceful = False
                self.signal_workers(signal.SIGQUIT)
                deadline = min(deadline, time.monotonic() + 2)
            self.signal_queue.clear()
            self.reap()
        if self.workers:
            log.warning("killing %d workers that did not stop in time", len(self.workers))
            self.signal_workers(signal.SIGKILL)
            while self.workers:
                self.reap(block=True)
        log.info("stopped")
        return 0

    # ---- workers ----

    def spawn(self, slot: Slot, incoming: bool = False) -> Worker:
        record = self.free_records.pop()
        reset_slot(self.stats_block, record)
        sockets = self.balancer.sockets_for(slot.index)
        limit = self.manager.max_requests
        if limit:
            limit += random.randint(0, self.manager.max_requests_jitter)
        # Signals wait while the child is forked: one reaching it before it drops the master's handlers would
        # be queued for a master loop it never runs, and a SIGTERM sent to stop it would be lost.
        output = self.collector.pipe() if self.collector else None
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                for signum in HANDLED_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
                self.become_worker(slot, sockets, record, output)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        if output is not None:
            self.collector.started(*output, slot.index, pid)
        new = Worker(pid, slot.index, slot.cpu, record, time.monotonic(), time.time(), limit)
        self.workers[pid] = new
        if incoming:
            slot.incoming = new
        else:
            slot.worker = new
        log.debug("worker %d started as pid %d on CPU %s", slot.index, pid, slot.cpu)
        return new

    def become_worker(self, slot: Slot, sockets, record: int, output: tuple[int, int] | None) -> None:
        if output is not None:
            self.collector.in_worker(*output)
        mine = {sock.fileno() for sock in sockets}
        for sock in self.balancer.all_sockets():
            if sock.fileno() not in mine:
                sock.close()  # a slot's socket must close when its master says so, not when we exit
        for fd in (self.wake_r, self.wake_w, *self.management_fds()):
            os.close(fd)
        self.boot_errors_r.close()
        worker.run(slot.index, slot.cpu, self.config, sockets, self.stats_block, record, self.boot_errors_w)

    def management_fds(self) -> list[int]:
        """The control socket's and admin listener's descriptors (a new worker closes them)."""
        return (self.control.fds() if self.control else []) + (self.admin.fds() if self.admin else [])

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
        gone = self.workers.pop(pid, None)
        if gone is None:
            return
        slot = self.slots.get(gone.slot)
        self.retire_record(gone, slot)
        code = os.waitstatus_to_exitcode(status)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        if slot is None or self.stopping:
            return
        if slot.incoming is gone:
            slot.incoming = None
            self.replacement_failed(slot, gone, code, how)
            return
        if slot.worker is not gone:
            log.info("worker %d (pid %d, %s) %s", slot.index, pid, gone.reason or "old", how)
            return
        slot.worker = None
        if slot.removing:
            return
        if code == worker.WORKER_BOOT_ERROR:
            self.boot_failed(slot, *self.boot_error_for(pid))
            return
        lived = time.monotonic() - gone.started
        slot.restarts += 1
        # Back off from a crash loop (dying before serving, or exiting soon after), not from a worker that
        # served and was killed from outside: that one is replaced at once, however often it happens.
        failing = gone.state == "booting" or (lived < QUICK_DEATH and code >= 0)
        slot.quick_deaths = slot.quick_deaths + 1 if failing else 0
        delay = 0.0 if slot.quick_deaths <= 1 else min(MAX_BACKOFF, 0.1 * 2 ** (slot.quick_deaths - 2))
        slot.respawn_at = time.monotonic() + delay
        log.warning("worker %d (pid %d) %s; restarting it%s", slot.index, pid, how,
                    f" in {delay:.1f}s" if delay else "")

    def boot_failed(self, slot: Slot, reason: str, details: str) -> None:
        """The slot's worker could not start: keep the slot, show it as failed, try again with backoff."""
        slot.boot_failed = reason or "it exited with the boot-error status"
        slot.boot_details = details
        slot.boot_failures += 1
        slot.failed_tries += 1
        slot.respawn_at = time.monotonic() + self.boot_retry_delay(slot)
        if slot.failed_tries == 1:
            self.balancer.steer(self.rotation())
        if self.served:  # before, the first start may still fail as a whole: cannot_start() tells it once
            self.show_boot_failure(slot)

    @staticmethod
    def boot_retry_delay(slot: Slot) -> float:
        return min(BOOT_RETRY_MAX, BOOT_RETRY_FIRST * 2 ** (slot.failed_tries - 1))

    def show_boot_failure(self, slot: Slot) -> None:
        """Log a boot failure; its traceback only the first time it is seen (retries repeat it)."""
        full = slot.boot_details and slot.boot_details not in self.tracebacks_shown
        log.error("worker %d could not start (%s); trying again in %gs%s", slot.index, slot.boot_failed,
                  self.boot_retry_delay(slot), f"\n{slot.boot_details.rstrip()}" if full else "")
        self.tracebacks_shown.add(slot.boot_details)

    def retire_record(self, gone: Worker, slot: Slot | None) -> None:
        """Fold a finished worker's counters into its slot's (or the removed slots') and free its record."""
        final = read_slot(self.stats_block, gone.record)
        add_counters(slot.retired if slot is not None else self.removed_totals, final)
        self.free_records.append(gone.record)

    def respawn_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots.values():
            # Until a worker has served, a slot that could not start waits: cannot_start() may end it all.
            vacant = slot.worker is None and slot.incoming is None and (self.served or not slot.boot_failed)
            # A slot leaving the rotation gets a worker again only to serve what is queued on it.
            if vacant and slot.respawn_at <= now and (not slot.removing or self.balancer.queued(slot.index)):
                self.spawn(slot)

    def boot_error_for(self, pid: int) -> tuple[str, str]:
        """The reason and traceback worker `pid` sent before it exited with the boot-error status."""
        while True:
            try:
                report = json.loads(self.boot_errors_r.recv(1 << 20))
            except (BlockingIOError, ValueError):
                break
            self.boot_errors[report["pid"]] = (report["reason"], report["details"])
        return self.boot_errors.pop(pid, ("", ""))

    def signal_workers(self, signum: int) -> None:
        for pid in list(self.workers):
            kill(pid, signum)

    def retire(self, old: Worker, reason: str) -> None:
        """Stop a worker gracefully: it stops accepting, finishes in-flight requests and exits."""
        old.state = "draining"
        old.reason = reason
        kill(old.pid, signal.SIGTERM)

    # ---- supervision: readiness, reloads, scaling, heartbeats, recycling ----

    def supervise(self) -> None:
        now = time.monotonic()
        sample = now >= self.next_sample
        if sample:
            self.next_sample = now + 1.0
        for current in list(self.workers.values()):
            record = read_slot(self.stats_block, current.record)
            if current.state == "booting" and record["state"] == STATE_SERVING:
                self.now_serving(current)
            if sample:
                self.sample(current, record, now)
            self.check_heartbeat(current, record, now)
        self.advance_reload()
        self.advance_removals()
        if self.config.tls and now - self.ticket_keys_rotated >= self.config.tls.ticket_key_lifetime / 2:
            self.rotate_ticket_keys("its half-lifetime passed")
        if not self.reloads and self.replacing is None:
            self.check_recycling()
        self.answer_waiters()
        self.notify_progress()

    def rotate_ticket_keys(self, why: str) -> int:
        """A new session ticket key for every worker (they read it from shared memory)."""
        self.ticket_keys_rotated = time.monotonic()
        generation = self.config.tls.ticket_keys.rotate()
        log.info("TLS session ticket keys rotated (%s): generation %d", why, generation)
        return generation

    def notify_progress(self) -> None:
        """systemd: READY=1 once every slot's worker serves (or, after one served, could not start), then
        the watchdog and a STATUS= line every few seconds."""
        if not self.notifier.enabled:
            return
        settled = (slot.removing or slot.boot_failed or (slot.worker and slot.worker.state == "serving")
                   for slot in self.slots.values())
        if not self.ready_notified and self.served and all(settled):
            self.ready_notified = True
            self.notifier.ready(self.status_line())
        self.notifier.tick(self.status_line())

    def status_line(self) -> str:
        serving = [slot.worker for slot in self.slots.values()
                   if slot.worker is not None and slot.worker.state == "serving" and not slot.removing]
        failed = sum(1 for slot in self.slots.values() if slot.boot_failed and not slot.removing)
        rate = sum(current.rate for current in self.workers.values())
        return (f"{len(serving)} of {self.target} workers serving, {rate:.0f} req/s"
                + (f", {failed} cannot start" if failed else ""))

    def now_serving(self, current: Worker) -> None:
        current.state = "serving"
        slot = self.slots.get(current.slot)
        if slot is not None and slot.boot_failed and current in (slot.worker, slot.incoming):
            log.info("worker %d serves again after %d failed starts", slot.index, slot.failed_tries)
            self.tracebacks_shown.discard(slot.boot_details)
            slot.boot_failed = slot.boot_details = ""
            slot.failed_tries = 0
            self.balancer.steer(self.rotation())
        if not self.served:
            self.served = True
            for other in self.slots.values():
                if other.boot_failed:  # failed in the first start while this one came up
                    self.show_boot_failure(other)

    def sample(self, current: Worker, record: dict, now: float) -> None:
        then, count = current.rate_mark
        if then:
            current.rate = (record["requests"] - count) / max(1e-3, now - then)
        current.rate_mark = (now, record["requests"])
        current.rss = rss_bytes(current.pid)

    def check_heartbeat(self, current: Worker, record: dict, now: float) -> None:
        timeout = self.manager.timeout
        if current.state == "booting":
            if now - current.started > timeout:
                log.error("worker %d (pid %d) did not start within %gs; killing it", current.slot,
                          current.pid, timeout)
                current.reason = "boot timeout"
                kill(current.pid, signal.SIGKILL)
            return
        silent = now - record["heartbeat"]
        if record["heartbeat"] and silent > timeout and current.reason != "no heartbeat":
            current.reason = "no heartbeat"
            log.error("worker %d (pid %d) sent no heartbeat for %.1fs (--timeout %g); killing it; "
                      "it was on request: %s", current.slot, current.pid, silent, timeout,
                      record["request"] or "(none yet)")
            kill(current.pid, signal.SIGKILL)

    def check_recycling(self) -> None:
        for slot in self.slots.values():
            current = slot.worker
            if current is None or current.state != "serving" or current.recycle_failed or slot.removing:
                continue
            reason = ""
            if current.max_requests:
                served = read_slot(self.stats_block, current.record)["requests"]
                if served >= current.max_requests:
                    reason = f"served {served} requests (--max-requests)"
            if not reason and self.manager.max_memory and current.rss > self.manager.max_memory << 20:
                reason = f"RSS {current.rss >> 20} MiB over --max-memory {self.manager.max_memory}"
            if reason:
                log.info("recycling worker %d (pid %d): %s", slot.index, current.pid, reason)
                self.reloads.append(Reload([slot.index], "recycled"))
                return

    def start_reload(self, why: str) -> Reload:
        for slot in self.slots.values():
            if slot.boot_failed and slot.worker is None:  # another try now, with the new code
                log.info("worker %d could not start before; starting it again", slot.index)
                slot.failed_tries = 0
                slot.respawn_at = 0.0
        reload = Reload(sorted(index for index, slot in self.slots.items()
                               if not slot.removing and slot.worker is not None), "reloaded")
        log.info("rolling reload of %d workers (%s)", len(reload.pending), why)
        self.notifier.reloading()
        self.reloads.append(reload)
        return reload

    def advance_reload(self) -> None:
        """One slot at a time: start its replacement; once it serves, retire the old worker."""
        if self.replacing is not None:
            slot = self.slots[self.replacing]
            new = slot.incoming
            if new is None or new.state != "serving":
                return
            old, slot.worker, slot.incoming = slot.worker, new, None
            self.replacing = None
            if old is not None:
                self.retire(old, self.reloads[0].reason if self.reloads else "replaced")
                if self.reloads:
                    self.reloads[0].retired.append(old)
        while self.reloads:
            reload = self.reloads[0]
            while reload.pending:
                slot = self.slots.get(reload.pending.pop(0))
                if slot is None or slot.removing or slot.boot_failed:
                    continue
                self.replacing = slot.index
                self.spawn(slot, incoming=True)
                return
            if any(self.still_accepting(old) for old in reload.retired):
                return  # a reload is done when only new code can take a connection
            self.reloads.pop(0)
            if reload.reason == "reloaded":
                self.reloads_done += 1
                reload.result = (True, "reloaded")
                log.info("rolling reload finished")
                self.notifier.ready(self.status_line())

    def still_accepting(self, old: Worker) -> bool:
        return old.pid in self.workers and read_slot(self.stats_block, old.record)["state"] != STATE_DRAINING

    def replacement_failed(self, slot: Slot, new: Worker, code: int, how: str) -> None:
        """A replacement died before serving: stop this reload, keep the old workers serving."""
        self.replacing = None
        reason, details = self.boot_error_for(new.pid) if code == worker.WORKER_BOOT_ERROR else ("", "")
        reason = reason or new.reason or how
        # The app's traceback, once per failed reload: the one new worker that tried is the only one.
        details = f"\n{details.rstrip()}" if details else ""
        reload = self.reloads.pop(0) if self.reloads else None
        if reload is not None and reload.reason == "recycled":
            if slot.worker is not None:
                slot.worker.recycle_failed = True
            log.error("the replacement of worker %d could not start (%s); the old worker keeps serving%s",
                      slot.index, reason, details)
            return
        log.error("reload aborted: the new worker %d could not start (%s); the old workers keep serving%s",
                  slot.index, reason, details)
        if reload is not None:
            reload.result = (False, f"worker {slot.index} could not start: {reason}")
            self.notifier.ready(f"reload failed, the old workers serve: {reload.result[1]}")

    def scale(self, workers: int) -> None:
        """Add slots on the least used CPUs, or take the highest slots out of rotation and drain them."""
        workers = max(1, min(workers, MAX_RECORDS // 2))
        active = sorted(index for index, slot in self.slots.items() if not slot.removing)
        self.target = workers
        if workers > len(active):
            for _ in range(workers - len(active)):
                self.add_slot()
        elif workers < len(active):
            for index in active[workers:]:
                self.slots[index].removing = True
                log.info("scaling down: slot %d leaves the rotation", index)
        else:
            return
        self.balancer.steer(self.rotation())

    def rotation(self) -> set[int]:
        """The slots new connections go to: not leaving, and not failing to start while another serves."""
        staying = {index for index, slot in self.slots.items() if not slot.removing}
        return {index for index in staying if not self.slots[index].boot_failed} or staying

    def add_slot(self) -> None:
        index = next(i for i in range(MAX_RECORDS) if i not in self.slots)
        cpu = self.free_cpu()
        self.balancer.add_slot(index)
        slot = self.slots[index] = Slot(index, cpu)
        log.info("scaling up: slot %d on CPU %s", index, cpu)
        self.spawn(slot)

    def free_cpu(self) -> int | None:
        if self.config.cpus is None:
            return None
        used = [slot.cpu for slot in self.slots.values() if not slot.removing]
        return min(self.config.cpus, key=lambda cpu: (used.count(cpu), self.config.cpus.index(cpu)))

    def advance_removals(self) -> None:
        """A slot out of rotation: once its queue is empty, drain its worker; once that is gone, close it."""
        for slot in [slot for slot in self.slots.values() if slot.removing]:
            current = slot.worker
            if current is not None and current.state == "serving" and not self.balancer.queued(slot.index):
                self.retire(current, "scaled down")
                slot.worker = None
            if slot.worker is None and slot.incoming is None and not self.balancer.queued(slot.index) and \
                    not any(w.slot == slot.index for w in self.workers.values()):
                self.balancer.remove_slot(slot.index)
                add_counters(self.removed_totals, slot.retired)
                del self.slots[slot.index]
                self.balancer.steer(self.rotation())
                log.info("slot %d removed", slot.index)

    # ---- control and admin ----

    def handle_control(self, client: Client, message: dict) -> None:
        command = message.get("command")
        if command == "ping":
            self.control.answer(client, {"ok": True})
        elif command == "status":
            self.control.answer(client, {"ok": True, "status": self.snapshot()})
        elif command == "stop":
            self.control.answer(client, {"ok": True, "message": "stopping"})
            self.stop_requested = True
        elif command == "reload":
            reload = self.start_reload("control socket")
            self.waiters.append((client, lambda: reload.result and {"ok": reload.result[0],
                                                                    "message": reload.result[1]}))
        elif command == "rotate-ticket-keys":
            if not self.config.tls:
                self.control.answer(client, {"ok": False, "error": "this server serves no https"})
                return
            generation = self.rotate_ticket_keys("control socket")
            self.control.answer(client, {"ok": True,
                                         "message": f"session ticket keys: generation {generation}"})
        elif command == "scale":
            workers = message.get("workers")
            if not isinstance(workers, int) or workers < 1:
                self.control.answer(client, {"ok": False, "error": "scale needs a positive worker count"})
                return
            self.scale(workers)
            self.waiters.append((client, lambda: self.scaled() and {"ok": True,
                                                                    "message": f"{len(self.slots)} workers"}))
        else:
            self.control.answer(client, {"ok": False, "error": f"unknown command {command!r}"})

    def scaled(self) -> bool:
        return len(self.slots) == self.target and all(
            slot.boot_failed or (slot.worker is not None and slot.worker.state == "serving")
            for slot in self.slots.values())

    def answer_waiters(self) -> None:
        still = []
        for client, ready in self.waiters:
            reply = ready()
            if reply:
                self.control.answer(client, reply)
            else:
                still.append((client, ready))
        self.waiters = still

    def admin_page(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return self.health()
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(self.snapshot()).encode()
        return 404, "text/plain", b"not found: try /metrics or /healthz\n"

    def health(self) -> tuple[int, str, bytes]:
        """/healthz: 200 ok; 200 degraded while a slot's worker cannot start but others serve; 503 while
        stopping or when no worker serves."""
        if self.drain_at is not None:
            return 503, "text/plain", b"draining\n"
        failed = "".join(f"worker {slot.index} could not start: {slot.boot_failed}\n"
                         for slot in sorted(self.slots.values(), key=lambda slot: slot.index)
                         if slot.boot_failed and not slot.removing)
        if not any(current.state == "serving" for current in self.workers.values()):
            return 503, "text/plain", f"no worker serving\n{failed}".encode()
        return 200, "text/plain", f"degraded\n{failed}".encode() if failed else b"ok\n"

    def snapshot(self) -> dict:
        """Everything status and /metrics show, as plain data."""
        now = time.monotonic()
        rows = []
        slots = {}
        for slot in sorted(self.slots.values(), key=lambda slot: slot.index):
            totals = dict(slot.retired)
            for current in sorted((w for w in self.workers.values() if w.slot == slot.index),
                                  key=lambda w: w.started):
                record = read_slot(self.stats_block, current.record)
                add_counters(totals, record)
                rows.append({
                    "slot": slot.index, "pid": current.pid, "cpu": current.cpu,
                    "state": "removing" if slot.removing and current.state == "serving" else current.state,
                    "uptime": round(now - current.started, 3), "started": current.started_wall,
                    "restarts": slot.restarts,
                    "requests": record["requests"], "requests_per_second": round(current.rate, 1),
                    "connections": record["connections_open"], "websockets": record["websockets_open"],
                    "rss": current.rss,
                    "bytes_in": record["bytes_in"], "bytes_out": record["bytes_out"],
                    "heartbeat_age": round(now - record["heartbeat"], 3) if record["heartbeat"] else None,
                    "worker_state": STATE_NAMES.get(record["state"], "?"), "request": record["request"],
                    "latency": record["latency"],
                })
            totals.setdefault("connections_open", 0)
            retry = slot.boot_failed and slot.worker is None and slot.incoming is None
            slots[slot.index] = {"cpu": slot.cpu, "restarts": slot.restarts, "removing": slot.removing,
                                 "boot_failed": slot.boot_failed, "boot_failures": slot.boot_failures,
                                 "failed_tries": slot.failed_tries,
                                 "retry_in": round(max(0.0, slot.respawn_at - now), 1) if retry else None,
                                 **totals}
        failed = any(slot.boot_failed and not slot.removing for slot in self.slots.values())
        server = dict(self.removed_totals)
        for totals in slots.values():
            add_counters(server, totals)
        return {
            "master": {
                "pid": os.getpid(), "uptime": round(now - self.started, 3), "started": self.started_wall,
                "state": "draining" if self.drain_at is not None else ("reloading" if self.reloads else
                                                           "degraded" if failed else "serving"),
                "addresses": self.balancer.addresses(), "workers": self.target, "reloads": self.reloads_done,
                "restarts": sum(slot.restarts for slot in self.slots.values()), "control": self.control_path,
                "log_file": self.collector.log_file.path if self.collector else None,
                "tls": {"ticket_key_generation": self.config.tls.ticket_keys.generation,
                        "kernel_tls": self.config.tls.kernel_tls.line} if self.config.tls else None,
            },
            "workers": rows,
            "slots": slots,
            "totals": server,
        }

    # ---- signals and waiting ----

    def queue_signal(self, signum: int, frame) -> None:
        if signum != signal.SIGCHLD and len(self.signal_queue) < 16:
            self.signal_queue.append(signum)
        self.wake()

    def wake(self) -> None:
        """Make the loop's wait return (from a signal handler or the --reload watcher's thread)."""
        try:
            os.write(self.wake_w, b".")
        except OSError:
            pass

    def next_wakeup(self) -> float:
        due = [slot.respawn_at for slot in self.slots.values()
               if slot.worker is None and (self.served or not slot.boot_failed) and not slot.removing]
        if self.drain_at is not None:
            due.append(self.drain_at)
        wait = max(0.0, min(due) - time.monotonic()) if due else SUPERVISE_EVERY
        return min(wait, SUPERVISE_EVERY)

    def wait(self, timeout: float) -> None:
        poller = select.poll()
        outputs = self.collector.fds() if self.collector else []
        for fd in [self.wake_r, *self.management_fds(), *outputs]:
            poller.register(fd, select.POLLIN)
        try:
            events = poller.poll(max(0.0, timeout) * 1000)
        except InterruptedError:
            return
        ready = {fd for fd, _ in events}
        if self.wake_r in ready:
            try:
                while os.read(self.wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if self.control:
            for client, message in self.control.requests(ready):
                if self.drain_at is not None and message.get("command") not in ("status", "ping"):
                    self.control.answer(client, {"ok": False, "error": "the server is stopping"})
                else:
                    self.handle_control(client, message)
        if self.admin:
            self.admin.serve(ready)
        if outputs:
            self.collector.read(ready)


def add_counters(into: dict, record: dict) -> None:
    """Sum a record's counters into `into` (status classes and latency buckets element by element)."""
    for name in COUNTERS:
        into[name] = into.get(name, 0) + record.get(name, 0)
    for name in ("status_classes", "latency"):
        if name in record:
            have = into.get(name) or [0] * len(record[name])
            into[name] = [a + b for a, b in zip(have, record[name])]
    for gauge in ("connections_open", "websockets_open"):
        if gauge in record:
            into[gauge] = into.get(gauge, 0) + record[gauge]


def kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def write_pidfile(path: str) -> None:
    try:
        with open(path) as handle:
            other = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        other = 0
    if other and other != os.getpid():
        try:
            os.kill(other, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise OSError(f"--pidfile {path}: process {other} is running") from None
        else:
            raise OSError(f"--pidfile {path}: process {other} is running") from None
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(temporary, path)


def remove_pidfile(path: str) -> None:
    try:
        with open(path) as handle:
            if handle.read().strip() == str(os.getpid()):
                os.unlink(path)
    except OSError:
        pass
