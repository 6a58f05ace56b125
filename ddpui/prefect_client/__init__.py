"""Client for the proxy service, in OBJECT.ACTION style: nouns are cheap handles, verbs do one request."""

from ddpui.prefect_client.client import (
    LOG_PAGE_LIMIT,
    UNSET,
    Deployment,
    FlowRun,
    PrefectProxy,
    ProxyConflict,
    ProxyError,
    ProxyNotFound,
    ProxyUnavailable,
    get_proxy,
    meanwhile,
)

__all__ = [
    "LOG_PAGE_LIMIT",
    "UNSET",
    "Deployment",
    "FlowRun",
    "PrefectProxy",
    "ProxyConflict",
    "ProxyError",
    "ProxyNotFound",
    "ProxyUnavailable",
    "get_proxy",
    "meanwhile",
]
