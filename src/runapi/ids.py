"""Random identifiers drawn from a buffer of OS randomness: one getrandom(2) per 4 KiB instead of one per ID.

The bytes are the same `os.urandom` bytes `secrets.token_hex` would use, handed out once each; a
forked child starts with an empty buffer, so a worker never repeats its parent's IDs.
"""

from __future__ import annotations

import os
import threading

__all__ = ["random_hex"]

_BUFFER_BYTES = 4096
_lock = threading.Lock()
_buffer = b""
_offset = 0


def random_hex(nbytes: int) -> str:
    """`nbytes` random bytes (at most 4096) as lowercase hex, like `secrets.token_hex(nbytes)`."""
    global _buffer, _offset
    with _lock:
        start = _offset
        end = start + nbytes
        if end > len(_buffer):
            _buffer = os.urandom(_BUFFER_BYTES)
            start, end = 0, nbytes
        _offset = end
        return _buffer[start:end].hex()


def _forget_after_fork() -> None:
    global _buffer, _offset, _lock
    _lock = threading.Lock()
    _buffer, _offset = b"", 0


os.register_at_fork(after_in_child=_forget_after_fork)
