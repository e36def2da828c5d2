"""Logging: JSON lines by default (one object per line, for log search), readable
text for the dev server. Every line written while serving a request carries its
id (`request_id`), uvicorn's own lines included.

The request id comes from asgi-correlation-id (its middleware is added in
main.py; its filter copies the id onto each log record) and the JSON from
python-json-logger: both plug into the standard `logging` module, so lines from
uvicorn, SQLAlchemy and Alembic get the same treatment as ours.
"""

import logging
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["json", "text"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

# Record attributes that become JSON keys, renamed to the names log tools expect;
# "time" is added as ISO 8601 in UTC (2026-11-28T15:09:49.120000+00:00).
JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(correlation_id)s"
JSON_NAMES = {
    "levelname": "level",
    "name": "logger",
    "correlation_id": "request_id",
}
TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(correlation_id)s] %(name)s: %(message)s"


def json_formatter() -> logging.Formatter:
    # uvicorn passes a `color_message` extra for its own coloured output; the
    # plain message is enough here.
    return JsonFormatter(
        JSON_FIELDS,
        rename_fields=JSON_NAMES,
        timestamp="time",
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        json_ensure_ascii=False,
    )


def logging_config(log_format: LogFormat, level: LogLevel) -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary, given to uvicorn as its
    `log_config` so that every worker process applies it before serving."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            # "-" on lines written outside a request (start-up, shutdown).
            "request_id": {
                "()": "asgi_correlation_id.CorrelationIdFilter",
                "default_value": "-",
            },
        },
        "formatters": {
            "json": {"()": json_formatter},
            "text": {"format": TEXT_FORMAT},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": log_format,
                "filters": ["request_id"],
            },
        },
        # uvicorn's loggers lose their own handlers and reach ours through the root.
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": True},
        },
        "root": {"handlers": ["stderr"], "level": level},
    }
