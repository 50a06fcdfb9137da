"""Logging into the host's log, tagged with the app, the function and the
instance. Lines logged while an orchestrator replays are suppressed by the
host, so each appears once. Python's `logging` module is wired to it too:
`logging.getLogger(__name__).info(...)` lands in the same log."""

from __future__ import annotations

import logging as _logging

from wit_world.imports import logging as wit_log

_LEVELS = [
    (_logging.ERROR, wit_log.Level.ERROR),
    (_logging.WARNING, wit_log.Level.WARN),
    (_logging.INFO, wit_log.Level.INFO),
    (_logging.DEBUG, wit_log.Level.DEBUG),
]


def trace(message: str) -> None:
    wit_log.log(wit_log.Level.TRACE, str(message))


def debug(message: str) -> None:
    wit_log.log(wit_log.Level.DEBUG, str(message))


def info(message: str) -> None:
    wit_log.log(wit_log.Level.INFO, str(message))


def warn(message: str) -> None:
    wit_log.log(wit_log.Level.WARN, str(message))


warning = warn


def error(message: str) -> None:
    wit_log.log(wit_log.Level.ERROR, str(message))


class HostHandler(_logging.Handler):
    """Sends `logging` records to the host's log."""

    def emit(self, record: _logging.LogRecord) -> None:
        level = next((w for n, w in _LEVELS if record.levelno >= n), wit_log.Level.TRACE)
        try:
            wit_log.log(level, self.format(record))
        except Exception:  # noqa: BLE001: logging must never fail a function
            self.handleError(record)


def install() -> None:
    root = _logging.getLogger()
    if not any(isinstance(h, HostHandler) for h in root.handlers):
        root.addHandler(HostHandler())
        if root.level > _logging.INFO or root.level == _logging.NOTSET:
            root.setLevel(_logging.INFO)
