"""A child process (`runapi dev`, `runapi serve`) whose output lines a test waits for, as events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

RUNAPI = [sys.executable, "-m", "runapi.cli.main"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without RUNAPI_* settings and proxies, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNAPI_") and not k.lower().endswith("_proxy")}
    return {**env, "NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1", **extra}


class ChildProcess:
    """Runs `command`; collects its stdout and stderr lines as they come."""

    def __init__(self, command: Sequence[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [threading.Thread(target=self._read, args=(name, stream), daemon=True)
                         for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr))]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines[name].append(line.rstrip("\n"))
                self._changed.notify_all()
        stream.close()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, stream: str, predicate: Callable[[list[str]], bool], timeout: float = 60) -> list[str]:
        """Block until `predicate(lines of stream)` holds (returns the lines), or fail with the output so far."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.lines[stream]):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    raise AssertionError(f"gave up waiting on {stream}; output so far:\n{self.output()}")
                self._changed.wait(min(remaining, 1.0))
            return list(self.lines[stream])

    def output(self) -> str:
        return "\n".join(["--- stdout", *self.lines["stdout"], "--- stderr", *self.lines["stderr"]])

    def stop(self, timeout: float = 30) -> int:
        """SIGINT (as Ctrl+C), then wait; SIGKILL if it does not end."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return self.process.returncode
