"""Django settings for Chengyun.

Everything that differs between machines comes from environment variables with
safe defaults, so `chengyun serve` works with zero configuration:

- ``DATABASE_URL``            default ``sqlite:///<data dir>/chengyun.sqlite3``
- ``CHENGYUN_DATA_DIR``       default ``<project>/var`` (secret key, SQLite file, uploads)
- ``CHENGYUN_SECRET_KEY``     default: generated on first run and kept in the data dir
- ``CHENGYUN_DEBUG``          default off
- ``CHENGYUN_ALLOWED_HOSTS``  default ``127.0.0.1,localhost``
- ``CHENGYUN_TIME_ZONE``      default ``Asia/Shanghai`` (the city's time zone)
- ``CHENGYUN_HOLIDAY_COUNTRY`` default ``CN`` (working calendar)
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _

PACKAGE_DIR = Path(__file__).resolve().parent
_checkout = PACKAGE_DIR.parent.parent
PROJECT_DIR = _checkout if (_checkout / "pyproject.toml").exists() else Path.cwd()
DATA_DIR = Path(os.environ.get("CHENGYUN_DATA_DIR", PROJECT_DIR / "var"))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    if key := os.environ.get("CHENGYUN_SECRET_KEY"):
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("CHENGYUN_DEBUG")
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("CHENGYUN_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()
]
if "testserver" not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append("testserver")
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CHENGYUN_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks",
    "django_tasks_db",
    "ninja",  # the API docs page from ninja's own static files, not from a CDN (deployments may be offline)
    "chengyun.audit",
    "chengyun.areas",
    "chengyun.org",
    "chengyun.taxonomy",
    "chengyun.cases",
    "chengyun.intake",
    "chengyun.open311",
    "chengyun.portal",
    "chengyun.signs",
    "chengyun.console",
    "chengyun.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "chengyun.api_paths.ApiTrailingSlashMiddleware",  # /api/v1/reports as /api/v1/reports/, never a redirect
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "chengyun.messages.LazyMessageMiddleware",  # the storage made on first use (see chengyun/messages.py)
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Partner systems' API (Open311: an API key, no cookies) is served with only
# the middleware that applies to it; see chengyun/wsgi.py.
MACHINE_API_PREFIXES = ["/open311/"]
MACHINE_API_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chengyun.urls"
WSGI_APPLICATION = "chengyun.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [PACKAGE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'chengyun.sqlite3'}"),
        conn_max_age=int(os.environ.get("CHENGYUN_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend with a finer wait for the write lock (see chengyun/sqlite/base.py).
    DATABASES["default"]["ENGINE"] = "chengyun.sqlite"
    # WAL lets readers and the writer work at once; a generous timeout turns
    # short write contention into waiting instead of "database is locked".
    # A checkpoint every 10,000 WAL pages (40 MB) rather than SQLite's 1,000:
    # hot index pages are then copied back once instead of ten times (measured
    # on the Open311 receive path: 1.1 instead of 1.7-2.1 ms per request). The
    # worker checkpoints every second (intake.received.checkpoint), so a web
    # request rarely has to.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=10000;",
    }
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("CHENGYUN_TEST_DB_NAME") or None}
if DATABASES["default"]["ENGINE"] == "chengyun.sqlite" and not DATABASES["default"]["TEST"]["NAME"]:
    # A file, not the in-memory default, so that tests can run real concurrent
    # writers (threads) against SQLite too; pytest-xdist adds a suffix per worker.
    # The process id keeps two test runs at once (two terminals) apart.
    DATABASES["default"]["TEST"]["NAME"] = str(DATA_DIR / f"test-chengyun-{os.getpid()}.sqlite3")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "org.User"
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:queue"
LOGOUT_REDIRECT_URL = "console:login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [PACKAGE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = os.environ.get("CHENGYUN_TIME_ZONE", "Asia/Shanghai")
HOLIDAY_COUNTRY = os.environ.get("CHENGYUN_HOLIDAY_COUNTRY", "CN")
HOLIDAY_SUBDIVISION = os.environ.get("CHENGYUN_HOLIDAY_SUBDIVISION") or None
# Working hours of the city's offices, local time: (start, end) pairs as "HH:MM".
WORKING_HOURS = [("09:00", "12:00"), ("13:00", "18:00")]
# The login page lists the demo logins that still have the demo's published password
# (`make demo` turns it on; never on a server people outside may reach).
SHOW_DEMO_LOGINS = os.environ.get("CHENGYUN_SHOW_DEMO_LOGINS", "0").lower() in ("1", "true", "yes", "on")
# 派单时限: hours (calendar: the operations centre works round the clock) within which a case
# waiting for a dispatcher (new, accepted, returned, recalled, reopened, unmerged) is to be sent on.
DISPATCH_HOURS = float(os.environ.get("CHENGYUN_DISPATCH_HOURS", "2"))
# A case whose deadline is this close (share of its allowed time left) is "near due".
NEAR_DUE_SHARE = float(os.environ.get("CHENGYUN_NEAR_DUE_SHARE", "0.2"))
DEADLINE_SWEEP_SECONDS = int(os.environ.get("CHENGYUN_DEADLINE_SWEEP_SECONDS", "60"))

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("CHENGYUN_STATIC_ROOT", DATA_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "media/"

TASKS = {
    "default": {
        "BACKEND": os.environ.get("CHENGYUN_TASK_BACKEND", "django_tasks_db.DatabaseBackend"),
    }
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
CSRF_FAILURE_VIEW = "chengyun.portal.views.csrf_failure"  # a plain page that keeps the citizen's text
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("CHENGYUN_LOG_LEVEL", "WARNING")},
}

# Intake (issue #3): classification, duplicates, photos, Open311.
# Below this confidence a report waits in the manual dispatch queue.
INTAKE_CONFIDENCE_THRESHOLD = float(os.environ.get("CHENGYUN_INTAKE_CONFIDENCE", "0.5"))
DUPLICATE_ATTACH_SCORE = float(os.environ.get("CHENGYUN_DUPLICATE_ATTACH", "0.72"))
DUPLICATE_ASK_SCORE = float(os.environ.get("CHENGYUN_DUPLICATE_ASK", "0.5"))
PHOTO_MAX_BYTES = int(os.environ.get("CHENGYUN_PHOTO_MAX_BYTES", str(10 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = PHOTO_MAX_BYTES * 3
OPEN311_JURISDICTION = os.environ.get("CHENGYUN_OPEN311_JURISDICTION", "")
# Machine channels (Open311, /api/v1/reports): "worker" stores a report and
# answers at once; the worker's batch pipeline classifies, checks duplicates
# and routes it, usually within a second. "inline" runs that pipeline for the
# report before answering (slower; the tests use it).
INTAKE_QUEUE = os.environ.get("CHENGYUN_INTAKE_QUEUE", "worker")
if INTAKE_QUEUE not in ("worker", "inline"):
    raise ValueError(f"CHENGYUN_INTAKE_QUEUE must be 'worker' or 'inline', not {INTAKE_QUEUE!r}")
# The worker rebuilds its routing tables and reloads the classifier this often
# (a change to routing rules reaches queued reports within this time).
INTAKE_PIPELINE_REFRESH_SECONDS = int(os.environ.get("CHENGYUN_INTAKE_PIPELINE_REFRESH", "60"))

# Messages to reporters who asked for them (chengyun.intake.notify), sent by the worker.
# The address in links (tracking page, stop link): how the public reaches this server.
PUBLIC_URL = os.environ.get("CHENGYUN_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# Open311 discovery's "contact": who partners call about the API (default: the centre, at PUBLIC_URL).
OPEN311_CONTACT = os.environ.get("CHENGYUN_OPEN311_CONTACT", "")
# Email: SMTP when CHENGYUN_EMAIL_HOST is set; else each message is written to a
# file in <data dir>/mail (nothing leaves the machine; the demo's mail is there).
if os.environ.get("CHENGYUN_EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = os.environ["CHENGYUN_EMAIL_HOST"]
    EMAIL_PORT = int(os.environ.get("CHENGYUN_EMAIL_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("CHENGYUN_EMAIL_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("CHENGYUN_EMAIL_PASSWORD", "")
    EMAIL_USE_TLS = os.environ.get("CHENGYUN_EMAIL_TLS", "1") not in ("0", "false", "no")
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = DATA_DIR / "mail"
DEFAULT_FROM_EMAIL = os.environ.get("CHENGYUN_EMAIL_FROM", "城运 Chengyun <noreply@localhost>")
# SMS through the city's gateway: each message is POSTed there as JSON
# {"id", "to", "text"} (with "Authorization: Bearer <token>" if a token is set).
# Unset: nobody is offered SMS, and phone-only reporters get no messages.
SMS_WEBHOOK_URL = os.environ.get("CHENGYUN_SMS_WEBHOOK_URL", "")
SMS_WEBHOOK_TOKEN = os.environ.get("CHENGYUN_SMS_WEBHOOK_TOKEN", "")
# Who the messages come from, by language (the sign-off of an email); unset: "City
# operations centre (Chengyun)" in the reporter's language. The SMS signature is
# put in 【】 at the start of every text message, as Chinese carriers require; it
# must be the one registered with the gateway. Unset: 城运 / Chengyun.
SENDER_NAMES = {code: os.environ.get("CHENGYUN_SENDER_NAME_" + code.upper().replace("-", "_"), "").strip()
                for code in ("zh-hans", "en")}
SMS_SIGNATURE = os.environ.get("CHENGYUN_SMS_SIGNATURE", "").strip().strip("【】[]")

# City vital signs (issue #4).
SIGNS_MAX_FUTURE_SECONDS = int(os.environ.get("CHENGYUN_SIGNS_MAX_FUTURE_SECONDS", "300"))
# Working and rest days for the anomaly baselines: "working" = the working
# calendar (public holidays and 调休, as for deadlines); "week" = Monday to Friday.
SIGNS_CALENDAR = os.environ.get("CHENGYUN_SIGNS_CALENDAR", "working")
if SIGNS_CALENDAR not in ("working", "week"):
    raise ValueError(f"CHENGYUN_SIGNS_CALENDAR must be 'working' or 'week', not {SIGNS_CALENDAR!r}")
SIGNS_MAX_AGE_DAYS = int(os.environ.get("CHENGYUN_SIGNS_MAX_AGE_DAYS", "45"))
SIGNS_RAW_DAYS = int(os.environ.get("CHENGYUN_SIGNS_RAW_DAYS", "60"))
SIGNS_MINUTE_DAYS = int(os.environ.get("CHENGYUN_SIGNS_MINUTE_DAYS", "180"))
SIGNS_HOUR_DAYS = int(os.environ.get("CHENGYUN_SIGNS_HOUR_DAYS", "1830"))
MQTT_URL = os.environ.get("CHENGYUN_MQTT_URL", "mqtt://127.0.0.1:1883")
