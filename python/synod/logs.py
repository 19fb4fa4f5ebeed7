"""Structured JSON logs (structlog), one object per line on stderr.

Bind context where it is known — `withdraw_id`, `session_id`, `node_id` — with
`structlog.contextvars.bind_contextvars` or a bound logger. A last processor removes any field
whose name says it holds a secret, so a careless `log.info(..., token=...)` never reaches disk.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_FIELDS = frozenset(
    {
        "token",
        "authorization",
        "secret",
        "password",
        "share",
        "key_share",
        "nonce",
        "presignature",
        "private_key",
        "storage_key",
    }
)


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for name in list(event):
        if name.lower() in SECRET_FIELDS:
            event[name] = "[redacted]"
    return event


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)  # looked up per logger: stderr may be replaced


def configure(level: int = logging.INFO, node_id: str | None = None) -> None:
    """JSON lines on stderr at `level`, every line carrying `node_id` when given."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    if node_id:
        structlog.contextvars.bind_contextvars(node_id=node_id)
