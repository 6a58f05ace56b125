"""Schemas shared by several routers."""

from ninja import Schema

# the largest page offset accepted: far past any real list, and within the databases' integer types
# (a larger one made SQLite/PostgreSQL fail with a 500)
MAX_OFFSET = 2**31 - 1


class ErrorOut(Schema):
    detail: str


class OkOut(Schema):
    success: bool = True


ERRORS = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    422: ErrorOut,
    502: ErrorOut,
    503: ErrorOut,
}
