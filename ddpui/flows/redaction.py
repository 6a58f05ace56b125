"""Secrets: every secret value the flow touches is registered here and removed from logs, messages, results."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ddpcontract.warehouses import SECRET_FIELDS

REDACTED = "***"

# the secret fields of every warehouse type (the registry's), and the usual names of secrets in other credentials
_SENSITIVE_CREDENTIAL_KEYS = SECRET_FIELDS | {
    "pass",
    "private_key_id",
    "token",
    "refresh_token",
    "client_secret",
    "secret",
}


class _SecretRegistry:
    """The secret strings of the current process's flow run, replaced by *** wherever they would leak."""

    _MIN_LENGTH = 4  # shorter values would shred ordinary log text; they are no real secret either

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: Any) -> None:
        with self._lock:
            for value in values:
                if isinstance(value, str) and len(value) >= self._MIN_LENGTH:
                    self._values.add(value)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def redact(self, value: Any) -> Any:
        """`value` with every registered secret replaced; walks lists, tuples and dicts."""
        if isinstance(value, str):
            with self._lock:
                secrets = sorted(self._values, key=len, reverse=True)
            for secret in secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {self.redact(key): self.redact(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.redact(item) for item in value)
        return value


_registry = _SecretRegistry()


def add_secret(*values: Any) -> None:
    """Register secret strings (non-strings and very short strings are ignored)."""
    _registry.add(*values)


def redact(value: Any) -> Any:
    """`value` with every registered secret replaced by ***; walks lists, tuples and dicts."""
    return _registry.redact(value)


class _RedactingFilter(logging.Filter):
    """Rewrites each log record with secrets removed, before any handler formats or ships it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        record.msg = _registry.redact(message)
        record.args = None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = _registry.redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = _registry.redact(record.exc_text)
        return True


@contextmanager
def redacted_logging() -> Iterator[None]:
    """Install the redacting filter on every handler that run logs can reach, for one flow run."""
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs", "prefect")]
    loggers.append(logging.getLogger())
    handlers = {handler for logger in loggers for handler in logger.handlers}
    redacting_filter = _RedactingFilter()
    for logger in loggers:
        logger.addFilter(redacting_filter)
    for handler in handlers:
        handler.addFilter(redacting_filter)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redacting_filter)
        for handler in handlers:
            handler.removeFilter(redacting_filter)
        _registry.clear()


def register_url_secret(url: str) -> None:
    """Register a git remote URL with every form git may print it in ("From <url>" drops ".git")."""
    forms = {url, url.rstrip("/")}
    parts = urlsplit(url)
    if parts.password:
        _registry.add(parts.password)
    if parts.username and parts.password:
        _registry.add(f"{parts.username}:{parts.password}")
    if parts.scheme and parts.hostname:
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        forms.add(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
    if parts.scheme == "file":
        forms.add(parts.path)
    for form in list(forms):
        forms.add(form.rstrip("/").removesuffix(".git"))
    _registry.add(*forms)


def register_credential_secrets(credentials: dict) -> None:
    """Register the sensitive values of warehouse credentials (nested ones too, e.g. a keyfile's key)."""
    for key, value in credentials.items():
        if isinstance(value, dict):
            if key in _SENSITIVE_CREDENTIAL_KEYS:
                _registry.add(json.dumps(value))
            register_credential_secrets(value)
        elif key in _SENSITIVE_CREDENTIAL_KEYS and value is not None:
            _registry.add(str(value))
