"""Log lines: one JSON object per event (`LOG_FORMAT=json`), or plain text for a terminal.

Every line carries the request context (`portal.request_context`): the request id — the one
in the `X-Request-ID` response header, in audit events and, for the gateway, in the usage
record — the tenant and the actor; a Celery task's lines carry those of the request that
enqueued it. With tracing on (`portal.tracing`), also the trace and span ids, so a log line
leads to its trace.
"""

from __future__ import annotations

import logging
import os
import traceback
from datetime import UTC, datetime

import orjson

from portal import request_context, tracing

# LogRecord attributes that are not "extra" fields a caller passed.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName", "color_message",
    "request",  # Django's request object: its repr says nothing the line doesn't
    "data"}  # Celery's: the dict its message was formatted from
_CONTEXT = ("request_id", "tenant", "actor")


class ContextFilter(logging.Filter):
    """Adds the request context to every record (a caller's `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = request_context.current()
        for name in _CONTEXT:
            if not getattr(record, name, None):
                setattr(record, name, getattr(context, name))
        for name, value in tracing.log_ids().items():
            setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One line of JSON per record: time (UTC, ISO 8601), level, logger, message, the
    request context, the exception's traceback as one string, and any `extra` fields."""

    role = os.environ.get("PORTAL_ROLE", "")

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT:
            value = getattr(record, name, "")
            if value:
                line[name] = value
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in line and value not in (None, ""):
                line[name] = value
        if self.role:
            line["role"] = self.role
        line["pid"] = record.process
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The plain format, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", "")
        return f"{text} [{request_id}]" if request_id else text


def logging_config(*, log_format: str, level: str) -> dict:
    """settings.LOGGING: every logger — Django's, uvicorn's, Celery's, the portal's — writes
    through one handler, in one format, to standard error."""
    formatter = {"()": "portal.logs.JsonFormatter" if log_format == "json"
                 else "portal.logs.TextFormatter"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"portal": formatter},
        "filters": {
            "context": {"()": "portal.logs.ContextFilter"},
            "client_errors": {"()": "portal.log_filters.ClientErrorsWithoutTracebacks"},
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "portal",
                                 "filters": ["context"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "django.request": {"filters": ["client_errors"]},
            # uvicorn configures its own handlers before the portal is loaded: send its
            # lines through the portal's handler instead.
            "uvicorn": {"handlers": ["console"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": [], "propagate": True},
            # No line per request (a write per request on the gateway's hot path): the
            # portal runs uvicorn with --no-access-log; requests are counted in the metrics.
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
