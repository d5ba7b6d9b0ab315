"""Django settings built from cpchain.toml ([market], [market.mysql], [logging]).

No secret lives in the repository: the secret key comes from PDASH_MARKET_SECRET_KEY or a
0600 file created at first start, and the MySQL password from a 0600 password file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from cpchain.config import ConfigError, load_config
from cpchain.crypto.keystore import read_password_file
from cpchain.fsutil import atomic_write_text

CONFIG = load_config()
MARKET = CONFIG.section("market")
MYSQL = CONFIG.section("market.mysql")


def _secret_key() -> str:
    from_env = os.environ.get("PDASH_MARKET_SECRET_KEY", "")
    if from_env:
        return from_env
    path = CONFIG.path("market.secret_key_file")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        atomic_write_text(tmp, secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)  # never replaces a key another worker created first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return read_password_file(path)


def _databases() -> dict[str, Any]:
    if MYSQL["enabled"]:
        password = read_password_file(CONFIG.path("market.mysql.password_file")) if MYSQL["password_file"] else ""
        return {
            "default": {
                "ENGINE": "django.db.backends.mysql",
                "NAME": MYSQL["database"],
                "USER": MYSQL["user"],
                "PASSWORD": password,
                "HOST": MYSQL["host"],
                "PORT": str(MYSQL["port"]),
                "CONN_MAX_AGE": 60,
                "OPTIONS": {"charset": "utf8mb4", "isolation_level": "read committed"},
                "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
            }
        }
    db_path = CONFIG.path("market.dbpath")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(db_path),
            "CONN_MAX_AGE": 600,
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA mmap_size=268435456;",
            },
        }
    }


if not isinstance(MARKET["login_rate"], str) or "/" not in MARKET["login_rate"]:
    raise ConfigError(f"{CONFIG.where}: key 'market.login_rate' must look like '30/min'")

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = _secret_key()
DEBUG = bool(MARKET["debug"])
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver", MARKET["host"], *MARKET["allowed_hosts"]]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "cpchain.market.account",
    "cpchain.market.product",
    "cpchain.market.comment",
    "cpchain.market.user_data",
    "cpchain.market.main",
    "cpchain.market.records",
    "cpchain.market.proxy",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cpchain.market.urls"
WSGI_APPLICATION = "cpchain.market.wsgi.application"
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
            ]
        },
    }
]

DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Shared by every worker, so the login rate limit holds across processes.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "market_cache"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = CONFIG.rc_dir / "market" / "static"
MEDIA_ROOT = CONFIG.path("market.media_dir")
# Request bodies: JSON APIs are small; cover uploads have their own limit (max_cover_bytes).
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = int(MARKET["max_cover_bytes"]) + 65536
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["cpchain.market.api.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "cpchain.market.api.Pagination",
    "EXCEPTION_HANDLER": "cpchain.market.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"login": MARKET["login_rate"]},
    "UNAUTHENTICATED_USER": None,
    "PAGE_SIZE": int(MARKET["page_size"]),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PDash market API",
    "DESCRIPTION": "Products, accounts, reviews, user data, chain records and the proxy registry.",
    "VERSION": "2.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

PDASH = {
    "TOKEN_TTL": int(MARKET["token_ttl"]),
    "NONCE_TTL": int(MARKET["nonce_ttl"]),
    "MAX_PAGE_SIZE": int(MARKET["max_page_size"]),
    "MAX_COVER_BYTES": int(MARKET["max_cover_bytes"]),
    "ES_HOSTS": list(MARKET["es_hosts"]),
    "ES_INDEX": str(MARKET["es_index"]),
    "MARKET_URL": str(MARKET["market_url"]),
    "REGISTRAR": CONFIG.path("chain.registrar_json"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": CONFIG.get("logging.format")}},
    "handlers": {
        "main": (
            {"class": "logging.FileHandler", "filename": str(CONFIG.path("logging.file")), "formatter": "plain"}
            if CONFIG.get("logging.file")
            else {"class": "logging.StreamHandler", "formatter": "plain"}
        )
    },
    "root": {"handlers": ["main"], "level": str(CONFIG.get("logging.level")).upper()},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
