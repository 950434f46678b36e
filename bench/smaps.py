"""Where a process's resident memory is, by kind of mapping, from /proc/<pid>/smaps.

`python -m bench.smaps PID` prints one split; `bench/memsoak.py` samples it through a soak. Kinds:
`heap` (the main arena, [heap]), `arenas` (glibc's per-thread malloc arenas: anonymous mappings at
64 MiB-aligned addresses, HEAP_MAX_SIZE on 64-bit), `stacks` (anonymous mappings right after a
one-page guard: thread stacks), `anon` (the other anonymous mappings: CPython's object arenas,
malloc's mmap'd large blocks, uvloop/libuv), `sqlite` (the database's files: -shm is the WAL index),
`libs` (shared objects), `python` (the interpreter and other files), `other` ([vdso], [vvar], ...).
"""

from __future__ import annotations

import sys
from pathlib import Path

KINDS = ("heap", "arenas", "stacks", "anon", "sqlite", "libs", "python", "other")
ARENA_ALIGN = 64 * 1024 * 1024


def split_kib(pid: int, arenas: list[int] | None = None) -> dict[str, int]:
    """RSS in KiB by kind of mapping (see the module's docstring); `arenas` gets each thread arena's."""
    totals = dict.fromkeys(KINDS, 0)
    kind, previous_guard_end = "other", -1
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            start, end = (int(x, 16) for x in head[0].split("-"))
            perms, name = head[1], head[5] if len(head) > 5 else ""
            if name == "[heap]":
                kind = "heap"
            elif name.startswith("["):
                kind = "stacks" if name == "[stack]" else "other"
            elif not name:
                if start % ARENA_ALIGN == 0 and perms.startswith("rw"):
                    kind = "arenas"
                    if arenas is not None:
                        arenas.append(0)
                elif start == previous_guard_end:
                    kind = "stacks"
                else:
                    kind = "anon"
            elif ".db" in name:
                kind = "sqlite"
            elif ".so" in name:
                kind = "libs"
            else:
                kind = "python"
            previous_guard_end = end if (perms.startswith("---") and end - start == 4096 and not name) else -1
        elif line.startswith("Rss:"):
            totals[kind] += int(line.split()[1])
            if kind == "arenas" and arenas:
                arenas[-1] += int(line.split()[1])
    return totals


def rollup_kib(pid: int) -> dict[str, int]:
    """/proc/<pid>/smaps_rollup's Rss, Anonymous, Private_Dirty and Shared_Clean in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        if key in ("Rss", "Anonymous", "Private_Dirty", "Shared_Clean", "Private_Clean"):
            out[key] = int(rest.split()[0])
    return out


if __name__ == "__main__":
    pid = int(sys.argv[1])
    print({k: round(v / 1024, 1) for k, v in split_kib(pid).items()}, rollup_kib(pid))
