"""Log output as operators read or ship it: readable lines in dev, JSON lines in production.

`logging_config(fmt)` is a standard `logging.config.dictConfig` dict for the gateway's loggers
(`runapi.*`, among them `runapi.access` with one line per request, and uvicorn's); operators who ship
logs elsewhere pass their own dict through `runapi serve --log-config FILE` instead. A record whose
message object has `log_fields()` (an access line) is written by `JsonFormatter` as those fields;
any other record as time, level, logger and message, plus the `fields` given in `extra`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Literal

import msgspec

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

_encode = msgspec.json.Encoder(decimal_format="string").encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time`, `level`, `logger`, then the message or its fields.

    A message object with a `log_fields()` method (an access line) is written as those fields."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._prefix = ""

    def _timestamp(self, created: float) -> str:
        """ISO 8601 in UTC with milliseconds, 2026-12-07T10:31:02.123Z (the date part formatted once a second)."""
        second = int(created)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        log_fields = getattr(record.msg, "log_fields", None)
        if log_fields is not None and not record.args:
            data: dict[str, Any] = {"time": self._timestamp(record.created), "level": record.levelname.lower(),
                                    "logger": record.name, **log_fields()}
        else:
            data = {"time": self._timestamp(record.created), "level": record.levelname.lower(), "logger": record.name}
            data["message"] = record.getMessage()
            fields = getattr(record, "fields", None)
            if isinstance(fields, dict):
                data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return _encode(data).decode()


class TextFormatter(logging.Formatter):
    """`10:31:02 INFO     message`: what a person reads in a terminal (the time formatted once a second)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-8s %(message)s", datefmt="%H:%M:%S")
        self._second = -1
        self._clock = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._clock = second, time.strftime("%H:%M:%S", time.localtime(second))
        line = f"{self._clock} {record.levelname:<8} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class EventLoopStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A `StreamHandler` that, on a thread running an event loop, writes each record to the stream's
    buffer and flushes at most `flush_delay` seconds later, once for every record written meanwhile.

    A plain `StreamHandler` flushes after every record: one `write(2)` per request, the largest part of an
    access line's cost. Elsewhere (no running loop: the CLI, other threads) it flushes at once. `flush()`
    (called at exit by `logging.shutdown`) still writes everything at once."""

    def __init__(self, stream: Any = None, flush_delay: float = 0.05) -> None:
        super().__init__(stream)
        self.flush_delay = flush_delay
        self._flush_due = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own rule: report, never raise
            self.handleError(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if not self._flush_due:
            self._flush_due = True
            loop.call_later(self.flush_delay, self._flush_later)

    def _flush_later(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._flush_due = False
            if not getattr(self.stream, "closed", False):  # a stream closed meanwhile was flushed then
                self.flush()


SIMULATOR_THREAD = "runapi-simulator"
"""The thread `runapi dev` runs the upstream simulator in (its uvicorn logs under the same names)."""


class SimulatorFaultFilter(logging.Filter):
    """Drops uvicorn's "ASGI callable returned without completing response." from the simulator's thread:
    that is how the simulator cuts a stream on purpose (a fault a dev asked for), not a gateway error.
    The gateway logs the upstream failure itself, as a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName == SIMULATOR_THREAD and record.msg == "ASGI callable returned without "
                    "completing response.")


def logging_config(fmt: LogFormat = "json", *, access_log: bool = True, server_level: str = "INFO",
                   dev: bool = False) -> dict[str, Any]:
    """A `dictConfig` dict: every gateway logger (and uvicorn's) to stderr in `fmt`.

    `access_log=False` silences `runapi.access` (one line per request) and nothing else; `server_level`
    is uvicorn's own (start-up lines at INFO); `dev` drops the simulator's deliberate-fault noise."""
    formatter = {"()": f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'TextFormatter'}"}
    handler = {"class": f"{__name__}.EventLoopStreamHandler", "formatter": fmt, "stream": "ext://sys.stderr"}
    logger = {"handlers": ["console"], "level": "INFO", "propagate": False}
    server_error: dict[str, Any] = {"level": server_level}  # propagates to "uvicorn"
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {fmt: formatter},
        "handlers": {"console": handler},
        "loggers": {
            "runapi": logger,
            "runapi.access": {**logger, "level": "INFO" if access_log else "WARNING"},
            "uvicorn": {**logger, "level": server_level},
            "uvicorn.error": server_error,
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},  # ours replaces it
        },
    }
    if dev:
        config["filters"] = {"simulator_faults": {"()": f"{__name__}.SimulatorFaultFilter"}}
        server_error["filters"] = ["simulator_faults"]
    return config


def configure_logging(fmt: LogFormat, *, access_log: bool = True, server_level: str = "INFO",
                      dev: bool = False) -> dict[str, Any]:
    """Apply `logging_config` to this process and return it (uvicorn's workers apply it again)."""
    import logging.config

    config = logging_config(fmt, access_log=access_log, server_level=server_level, dev=dev)
    logging.config.dictConfig(config)
    return config
