"""Django settings. Every value comes from an environment variable with a working local default;
docs/configuration.md lists them all."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dj_database_url
from corsheaders.defaults import default_headers

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DATA_DIR = Path(os.environ.get("DDPUI_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-local-development-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

# CORS for the web app (a browser on another origin calls /api/ with a bearer token and x-dalgo-org): only the
# listed origins get Access-Control-* headers; no cookies are involved, so credentials are not allowed.
CORS_ALLOWED_ORIGINS = [
    o.strip()
    for o in os.environ.get("DDPUI_CORS_ALLOWED_ORIGINS", "http://localhost:3000,http://127.0.0.1:3000").split(",")
    if o.strip()
]
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = (*default_headers, "x-dalgo-org")
CORS_ALLOW_CREDENTIALS = False

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "corsheaders",
    "ninja",
    "ddpui",
]

MIDDLEWARE = [
    # first: answers preflights before anything can redirect or refuse them, and adds its headers to every answer
    # (the JSON error answers made below included), so the web app can read each error's detail
    "corsheaders.middleware.CorsMiddleware",
    # next: turns any error answer under /api/ and /webhooks/ into JSON, even one from a middleware below
    "ddpui.middleware.JsonErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ddpui.urls"
WSGI_APPLICATION = "ddpui.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite in the data directory unless DATABASE_URL is set (PostgreSQL through psycopg 3).
_database_url = os.environ.get("DATABASE_URL", "").strip()
if _database_url:
    DATABASES = {
        "default": dj_database_url.parse(_database_url, conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")))
    }
else:
    # SQLite for concurrent use (the webhook, API reads that record run states, triggers and the reconciler
    # all write at once): write-ahead log, so readers never wait for a writer; every transaction takes the
    # write lock when it begins (IMMEDIATE), so one that reads and then writes waits its turn instead of
    # failing at once with "database is locked" when another writer got there first; and a busy timeout,
    # so a writer waits up to DATABASE_SQLITE_TIMEOUT seconds for the lock. Tests use a file too (an
    # in-memory shared-cache database answers "table is locked" at once instead of waiting).
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "ddpui.sqlite3"),
            "OPTIONS": {
                "timeout": float(os.environ.get("DATABASE_SQLITE_TIMEOUT", "30")),
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
            },
            "TEST": {"NAME": str(DATA_DIR / f"test-ddpui-{os.getpid()}.sqlite3")},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

# The proxy service: the only way to Prefect.
PROXY_URL = os.environ.get("PROXY_URL", "http://127.0.0.1:8085")
PROXY_TOKEN = os.environ.get("PROXY_TOKEN", "local-proxy-token")
PREFECT_WORK_POOL = os.environ.get("PREFECT_WORK_POOL", "ddpui")
# how long POST /api/prefect/tasks/{uuid}/run/ waits for the task's run to end (it runs on a worker) so that
# the web app can show its output; 0 answers at once. Below the 60 s a reverse proxy (nginx) waits by default.
TASK_RUN_WAIT_SECONDS = float(os.environ.get("DDPUI_TASK_RUN_WAIT_SECONDS", "55"))

# Airbyte config API (/api/v1), HTTP basic auth.
AIRBYTE_SERVER_HOST = os.environ.get("AIRBYTE_SERVER_HOST", "127.0.0.1")
AIRBYTE_SERVER_PORT = int(os.environ.get("AIRBYTE_SERVER_PORT", "8001"))
AIRBYTE_USERNAME = os.environ.get("AIRBYTE_USERNAME", "airbyte")
AIRBYTE_PASSWORD = os.environ.get("AIRBYTE_PASSWORD", "password")
AIRBYTE_API_VERSION = os.environ.get("AIRBYTE_API_VERSION", "v1")
AIRBYTE_SYNC_TIMEOUT_SECONDS = int(os.environ.get("AIRBYTE_SYNC_TIMEOUT_SECONDS", "3600"))

# Where each org's dbt project is cloned (<root>/<org slug>/dbtrepo) and the dbt that runs it.
CLIENT_DBT_ROOT = Path(os.environ.get("CLIENT_DBT_ROOT", DATA_DIR / "clients")).resolve()
DBT_VENV = Path(os.environ.get("DBT_VENV", Path(sys.prefix))).resolve()

# Shared secret of the Prefect notification webhook; with none set, every notification is refused.
WEBHOOK_SECRET = os.environ.get("WEBHOOK_SECRET", "")

# Outgoing e-mail (alerts). Console backend by default: nothing leaves the machine.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "ddpui@localhost")

# Alerts (services/alerts; docs/operations.md "Alerts"). Links in alerts point at the web app and the admin.
DDPUI_WEBAPP_URL = os.environ.get("DDPUI_WEBAPP_URL", "http://localhost:3000").rstrip("/")
DDPUI_ADMIN_URL = os.environ.get("DDPUI_ADMIN_URL", "http://127.0.0.1:8000/admin").rstrip("/")
# a run that has not started this long after its expected start is late; a cron slot without any run this
# long after its time is missed (checked up to ALERTS_MISSED_LOOKBACK_HOURS back)
ALERTS_LATE_AFTER_MINUTES = float(os.environ.get("ALERTS_LATE_AFTER_MINUTES", "10"))
ALERTS_MISSED_LOOKBACK_HOURS = float(os.environ.get("ALERTS_MISSED_LOOKBACK_HOURS", "6"))
# deliveries: the first attempt right after the commit, then retries by the reconciler loop, backing off
# ALERTS_RETRY_BASE_SECONDS x 2^n, until ALERTS_MAX_ATTEMPTS attempts
ALERTS_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("ALERTS_WEBHOOK_TIMEOUT_SECONDS", "5"))
ALERTS_RETRY_BASE_SECONDS = float(os.environ.get("ALERTS_RETRY_BASE_SECONDS", "30"))
ALERTS_MAX_ATTEMPTS = int(os.environ.get("ALERTS_MAX_ATTEMPTS", "8"))
# webhook URLs on loopback, private or link-local addresses are refused unless this is true (local stacks, tests)
ALERTS_WEBHOOK_ALLOW_PRIVATE_HOSTS = env_bool("ALERTS_WEBHOOK_ALLOW_PRIVATE_HOSTS", False)
# SMTP (with EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend); a server that does not answer within
# EMAIL_TIMEOUT seconds fails the attempt, which is retried like any failed delivery
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = float(os.environ.get("EMAIL_TIMEOUT", "10"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DDPUI_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
