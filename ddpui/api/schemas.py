"""Schemas shared by several routers."""

from ninja import Schema

from ddpcontract.proxy_api import MAX_OFFSET  # noqa: F401  (the largest page offset accepted; re-exported)


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
