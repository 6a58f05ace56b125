"""`python -m proxy --host 127.0.0.1 --port 8085`: serve the proxy with uvicorn."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from proxy.settings import ProxySettings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy", description="Serve the ddpui Prefect proxy.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (the proxy is stateless)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        settings = ProxySettings.from_env()
    except SettingsError as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 2
    if settings.token is None:
        print("proxy: PROXY_TOKEN is not set; every call except /proxy/health will be refused (401)", file=sys.stderr)
    # Prefect's logging set-up (on import) quiets uvicorn's own start-up lines, so say where we listen
    address = f"http://{args.host}:{args.port}"
    print(f"proxy: serving on {address} for Prefect at {settings.prefect_api_url}", file=sys.stderr)
    uvicorn.run(
        "proxy.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        # the C parser and event loop (requirements.txt pins both): with them the proxy adds about half a
        # millisecond less per call than with uvicorn's pure-Python h11 and asyncio's loop (docs/proxy.md)
        http="httptools",
        loop="uvloop",
        # Django calls it directly: no reverse proxy's X-Forwarded-* headers to trust (and none to parse)
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
