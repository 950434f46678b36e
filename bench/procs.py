"""Child processes of the benchmark, and what /proc says about their CPU time and memory.

CPU is read as utime+stime (plus cutime+cstime, which hold reaped children) of every
process in a tree, so a server's forked workers and threads are counted; the figure is
in clock ticks and converted to seconds with SC_CLK_TCK.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until 127.0.0.1:`port` accepts connections; raise if `proc` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening on {port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")
        time.sleep(0.05)


class Child:
    """A server started by the benchmark in its own session (process group), logged to a file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(list(argv), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the child's own process group, then SIGKILL it if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may hold spaces and parentheses: split after its closing parenthesis.
    return raw[raw.rindex(")") + 2:].split()


def tree_pids(root: int) -> list[int]:
    """`root` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system, reaped children included) used so far by the tree under `root`."""
    ticks = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields is not None:  # fields[11:15] = utime, stime, cutime, cstime
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLK_TCK


def _status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def tree_peak_rss_mib(root: int) -> float:
    """Σ VmHWM (peak resident set) of the processes in the tree, in MiB."""
    return sum(_status_kib(pid, "VmHWM") for pid in tree_pids(root)) / 1024


def peak_rss_mib(root: int) -> tuple[float, float]:
    """(Σ VmHWM of the tree, the largest VmHWM of one process: the gateway itself, or its biggest worker
    under `--workers N`, the figure issue 8 bounds per worker), in MiB, from one read of each process: the
    largest never exceeds the sum, as two reads a moment apart could make it (the peak grows meanwhile)."""
    peaks = [_status_kib(pid, "VmHWM") for pid in tree_pids(root)]
    return sum(peaks) / 1024, max(peaks, default=0) / 1024


def tree_rss_mib(root: int) -> float:
    """Σ VmRSS (current resident set) of the processes in the tree, in MiB."""
    return sum(_status_kib(pid, "VmRSS") for pid in tree_pids(root)) / 1024


@contextlib.contextmanager
def cpu_meter(pid: int | None) -> Iterator[list[float]]:
    """Yields a list that holds the tree's CPU seconds spent inside the block once it exits."""
    spent: list[float] = []
    before = tree_cpu_seconds(pid) if pid else 0.0
    yield spent
    spent.append(tree_cpu_seconds(pid) - before if pid else 0.0)


def database_cpu_seconds(database: str) -> float:
    """CPU seconds used so far by the PostgreSQL server's backends connected to `database` (their process
    title reads `postgres: <cluster>: <user> <database> <client> <state>`); a backend that exits takes its
    time with it, so meter a window in which the gateway's pooled connections stay open."""
    ticks = 0
    marker = f" {database} ".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            title = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            if title.startswith(b"postgres: ") and marker in title:
                fields = _stat_fields(int(entry.name))
                if fields is not None:
                    ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds used so far by each thread of `pid` (its main thread's ID is `pid`)."""
    out: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                raw = Path(f"/proc/{pid}/task/{entry.name}/stat").read_text()
                fields = raw[raw.rindex(")") + 2:].split()
                out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out
