"""structlog set-up: JSON lines for journald, pipes and log shippers; readable lines on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def _renderer(stream: TextIO) -> structlog.typing.Processor:
    """One JSON object per line, unless a person reads ``stream`` on a terminal."""
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer(sort_keys=False)


def configure(stream: TextIO | None = None, level: str = "info") -> None:
    """Send key/value events to ``stream`` (stderr by default): JSON, or readable lines on a TTY."""
    stream = stream or sys.stderr
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _renderer(stream),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
