"""Typed domain errors. Services raise these; the API maps each to one status code, once (api/core.py)."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: `str(error)` is a message that tells the caller what went wrong and what to do."""

    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    status_code = 400


class NotAuthenticated(DomainError):
    status_code = 401


class PermissionDenied(DomainError):
    status_code = 403


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class UpstreamError(DomainError):
    """An external service (proxy, Prefect, Airbyte) rejected the call."""

    status_code = 502


class UpstreamUnavailable(DomainError):
    """An external service (proxy, Prefect, Airbyte) could not be reached."""

    status_code = 503
