"""A crash-safe journal of settlements, so that an answer need not wait for the database commit.

`SettlementWriter.submit` appends each settlement here — one `write(2)` into the operating
system's page cache, which outlives the process if it is killed — and returns at once; the
writer commits it in a later batch. Each file (a segment) is removed once every settlement in
it is committed. At start, `recover()` replays the segments a dead process left behind through
the same idempotent sink: generations already committed are skipped, so nothing is charged twice.

Guarantee: a charge survives the gateway process dying at any moment (SIGKILL, OOM kill, crash).
Power loss is covered as far as the database itself is (SQLite runs with synchronous=NORMAL):
the journal is not fsynced per record. A live process holds an exclusive `flock` on each of its
segments, so several worker processes can share one directory and only replay the dead's files.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import time
from pathlib import Path

import msgspec

from runapi.storage import Generation, Settlement, SettlementSink, sqlite_file

log = logging.getLogger("runapi.journal")

_LENGTH = struct.Struct("<I")
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(tuple[Generation, int]).decode
SUFFIX = ".journal"
RECOVERY_BATCH = 500


def journal_directory(setting: str, database_url: str) -> Path | None:
    """Where `[server] settlement_journal` puts the journal: "auto" beside a SQLite database file
    (none for other databases: stateless instances wait for the commit), "off" nowhere, else that path."""
    if setting == "off":
        return None
    if setting != "auto":
        return Path(setting)
    database = sqlite_file(database_url)
    return None if database is None else Path(database + "-journal.d")


class Segment:
    """One journal file and the number of its settlements not yet committed."""

    __slots__ = ("path", "fd", "size", "pending", "sealed")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.size = 0
        self.pending = 0
        self.sealed = False  # no more appends: removed once `pending` reaches 0


class SettlementJournal:
    """Append-only segments of settlements in `directory`; see the module docstring."""

    def __init__(self, directory: Path, max_segment_bytes: int = 4 * 1024 * 1024,
                 truncate_after_bytes: int = 64 * 1024) -> None:
        self.directory = directory
        self._max_segment_bytes = max_segment_bytes
        self._truncate_after_bytes = truncate_after_bytes
        self._current: Segment | None = None
        self._own: set[Path] = set()

    def _open_segment(self) -> Segment:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"settlements-{os.getpid()}-{time.time_ns()}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
        self._own.add(path)
        return Segment(path, fd)

    def append(self, settlement: Settlement) -> Segment:
        """Write one settlement (raises OSError if the disk refuses); returns its segment for `committed`."""
        segment = self._current or self._open_segment()
        self._current = segment
        payload = _encode((settlement.generation, settlement.charge_nanos))
        record = _LENGTH.pack(len(payload)) + payload
        written = os.write(segment.fd, record)
        if written != len(record):  # a full disk: the tail is unreadable, start a fresh segment
            self._seal(segment)
            raise OSError(f"short write to the settlement journal ({written} of {len(record)} bytes)")
        segment.size += written
        segment.pending += 1
        if segment.size >= self._max_segment_bytes:
            self._seal(segment)
        return segment

    def committed(self, segment: Segment) -> None:
        """One settlement of `segment` is in the database."""
        segment.pending -= 1
        if segment.pending:
            return
        if segment.sealed:
            self._remove(segment)
        elif segment.size >= self._truncate_after_bytes:  # idle moment: reuse the file from its start
            os.ftruncate(segment.fd, 0)
            segment.size = 0

    def _seal(self, segment: Segment) -> None:
        segment.sealed = True
        if self._current is segment:
            self._current = None
        if segment.pending == 0:
            self._remove(segment)

    def _remove(self, segment: Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        os.close(segment.fd)
        self._own.discard(segment.path)

    def close(self) -> None:
        """After the writer drained: remove the current segment if everything in it is committed."""
        if self._current is not None:
            segment, self._current = self._current, None
            segment.sealed = True
            if segment.pending == 0:
                self._remove(segment)
            else:  # left for the next start to replay
                os.close(segment.fd)

    async def recover(self, sink: SettlementSink) -> list[Settlement]:
        """Commit what dead processes' segments hold (skipping generations already committed), then
        remove those segments. Returns the settlements found, for the caller to refresh caches."""
        if not self.directory.is_dir():
            return []
        found: list[Settlement] = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            if path in self._own:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:  # another process recovered it meanwhile
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # a live process's segment
                    continue
                settlements = _read_records(path)
                charged = 0
                for start in range(0, len(settlements), RECOVERY_BATCH):
                    charged += len(await sink.record(settlements[start:start + RECOVERY_BATCH]))
                found += settlements
                path.unlink()
                if settlements:
                    log.warning("replayed %d journaled settlements from %s: %d charges written now, the rest "
                                "were already committed", len(settlements), path.name, charged)
            finally:
                os.close(fd)
        return found


def _read_records(path: Path) -> list[Settlement]:
    """The settlements of one segment; a torn last record (the process died inside a write) is ignored."""
    data = path.read_bytes()
    out: list[Settlement] = []
    offset = 0
    while offset + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, offset)
        end = offset + _LENGTH.size + size
        if end > len(data):
            log.warning("ignored a torn record at the end of %s", path.name)
            break
        try:
            generation, charge = _decode(data[offset + _LENGTH.size:end])
        except msgspec.DecodeError:
            log.error("ignored an unreadable record in %s at byte %d", path.name, offset)
            break
        out.append(Settlement(generation, charge))
        offset = end
    return out
