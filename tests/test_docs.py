"""docs/api.md documents every endpoint the API serves, and the Prefect webhook.

An endpoint counts as documented when api.md names it as "`METHOD /api/path`" (a heading or a table row),
path parameters written in braces; a query string after the path is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.test import Client

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
METHODS = ("get", "post", "put", "patch", "delete")
DOCUMENTED = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]+)")
PARAMETER = re.compile(r"\{[^}/]+\}")


def _normalized(method: str, path: str) -> str:
    return f"{method.upper()} {PARAMETER.sub('{}', path)}"


def documented_endpoints() -> set[str]:
    return {_normalized(method, path) for method, path in DOCUMENTED.findall(API_DOC.read_text())}


def served_endpoints() -> set[str]:
    response = Client().get("/api/openapi.json")
    assert response.status_code == 200, response.content[:300]
    paths = response.json()["paths"]
    return {
        _normalized(method, path) for path, operations in paths.items() for method in operations if method in METHODS
    }


def test_every_api_endpoint_is_documented_in_api_md():
    served = served_endpoints()
    assert len(served) > 30  # the schema really was read
    missing = sorted(served - documented_endpoints())
    assert missing == [], f"add these to docs/api.md as '`METHOD /api/...`': {missing}"


def test_api_md_documents_no_endpoint_that_does_not_exist():
    served = served_endpoints()
    stale = sorted(e for e in documented_endpoints() if e.split(" ", 1)[1].startswith("/api/") and e not in served)
    assert stale == [], f"docs/api.md documents endpoints the API does not serve: {stale}"


def test_the_prefect_webhook_is_documented():
    assert "POST /webhooks/v1/notification/" in documented_endpoints()
