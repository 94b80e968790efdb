"""A bounded load generator for process-manager tests: wrk in the background, its failures counted."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest


class Load:
    """wrk against a server for `seconds`; result() waits for it and returns its counts."""

    def __init__(self, port: int, seconds: float, connections: int = 16, path: str = "/",
                 close: bool = False) -> None:
        if shutil.which("wrk") is None:
            pytest.skip("wrk is not installed")
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
        if close:
            command += ["-H", "Connection: close"]
        self.proc = subprocess.Popen(command + [f"http://127.0.0.1:{port}{path}"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

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
