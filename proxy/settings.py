"""The proxy's configuration, read from environment variables once per app instance."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(RuntimeError):
    """The environment does not describe a usable proxy (e.g. PREFECT_API_URL is missing)."""


@dataclass(frozen=True)
class ProxySettings:
    prefect_api_url: str
    token: str | None = None
    work_pool: str = "ddpui"
    work_queue: str | None = None
    flows_dir: Path = REPO_ROOT
    # How often the Prefect client retries a call that failed with 429/502/503 (e.g. SQLite busy under load) or,
    # once it has connected, a connection error; it backs off 2, 4, 8 ... s. Prefect's default (5) makes an
    # outage take about a minute to surface as a 503; 3 absorbs a busy server and answers within ~15 s.
    prefect_client_retries: int = 3

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ProxySettings:
        env = os.environ if environ is None else environ
        api_url = env.get("PREFECT_API_URL", "").strip()
        if not api_url:
            raise SettingsError(
                "PREFECT_API_URL is not set: point it at the Prefect server's API, e.g. http://127.0.0.1:4200/api"
            )
        retries = env.get("PROXY_PREFECT_RETRIES", "3").strip()
        if not retries.isdigit():
            raise SettingsError(f"PROXY_PREFECT_RETRIES must be a non-negative integer, got {retries!r}")
        return cls(
            prefect_api_url=api_url.rstrip("/"),
            token=env.get("PROXY_TOKEN", "").strip() or None,
            work_pool=env.get("PROXY_WORK_POOL", "").strip() or "ddpui",
            work_queue=env.get("PROXY_WORK_QUEUE", "").strip() or None,
            flows_dir=Path(env.get("PROXY_FLOWS_DIR", "").strip() or REPO_ROOT).resolve(),
            prefect_client_retries=int(retries),
        )
