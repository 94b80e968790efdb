"""A bounded load generator for process-manager tests: wrk in the background, its failures counted."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess

import pytest

LONGEST = 60  # seconds: a load that is to last as long as its with block is stopped at the block's end


class Load:
    """wrk against a server for `seconds`; result() waits for it and returns its counts. As a context
    manager, without `seconds`, it lasts as long as the with block: stopped by SIGINT at the end (wrk
    still prints its summary), killed if the block raised."""

    def __init__(self, port: int, seconds: float = LONGEST, connections: int = 16, path: str = "/",
                 close: bool = False) -> None:
        if shutil.which("wrk") is None:
            pytest.skip("wrk is not installed")
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
        if close:
            command += ["-H", "Connection: close"]
        self.proc = subprocess.Popen(command + [f"http://127.0.0.1:{port}{path}"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def __enter__(self) -> Load:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self.proc.send_signal(signal.SIGINT)
        else:
            self.proc.kill()
            self.proc.wait()

    def result(self) -> dict[str, int]:
        output, _ = self.proc.communicate(timeout=60)
        counts = {"requests": int(re.search(r"(\d+) requests in", output).group(1)),
                  "connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0, "output": output}
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
        if errors:
            counts.update(zip(("connect", "read", "write", "timeout"), map(int, errors.groups())))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        if non2xx:
            counts["non2xx"] = int(non2xx.group(1))
        return counts

    def failed(self) -> tuple[int, dict]:
        """Failed requests (any socket error or non-2xx answer), and the full counts."""
        counts = self.result()
        return sum(counts[key] for key in ("connect", "read", "write", "timeout", "non2xx")), counts
