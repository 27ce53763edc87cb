"""Settings of the Sovereign Model Portal.

Every value comes from the environment (or a `.env` file beside `manage.py`), read here and
nowhere else. Secrets may also come from a file named by `<NAME>_FILE`, as container
orchestrators mount them. A wrong or missing value stops the process at start-up with an
`ImproperlyConfigured` error that names the variable.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from portal.env import (
    check_tsa_files,
    database,
    env_bool,
    env_directory,
    env_http_url,
    env_int,
    env_key_file,
    env_list,
    env_networks,
    env_oid,
    env_origins,
    env_retention_classes,
    env_secret,
    fernet_keys,
)
from portal.logs import logging_config
from portal.oidc_settings import parse_providers

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))

if (BASE_DIR / ".env").is_file() and not os.environ.get("PORTAL_IGNORE_DOTENV"):
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Core -------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: set SECRET_KEY (or SECRET_KEY_FILE) to a long random "
            "string. Only a DEBUG=true development server may start without one."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-true"

# Keys for secrets stored encrypted (Fernet: 32 url-safe base64 bytes each), comma-separated:
# the first encrypts, every one decrypts. See portal/crypto.py and README "Secrets at rest".
FIELD_ENCRYPTION_KEYS = fernet_keys(debug=DEBUG)
# Also decrypt (never encrypt) with the key derived from SECRET_KEY, which the portal used
# before FIELD_ENCRYPTION_KEYS: on while `manage.py secrets_rotate` moves such values over.
FIELD_ENCRYPTION_LEGACY_DERIVED_KEY = env_bool("FIELD_ENCRYPTION_LEGACY_DERIVED_KEY", False)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS")

SITE_NAME = os.environ.get("SITE_NAME", "Sovereign Model Portal")
PORTAL_BASE_URL = os.environ.get("PORTAL_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
if not PORTAL_BASE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"PORTAL_BASE_URL={PORTAL_BASE_URL!r} must be an http(s) URL.")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "django_htmx",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "portal",
    "audit",
    "tenants",
    "models_catalog",
    "portal.demo",
    "deployments",
    "gateway",
    "billing",
]

MIDDLEWARE = [
    "portal.middleware.ForwardedHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.middleware.RequestContextMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    "portal.middleware.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "portal.middleware.RequestActorMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tenants.middleware.MfaRequiredMiddleware",
    "portal.middleware.MethodNotAllowedPageMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.navigation",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------

DATABASES = {"default": database(f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, Celery ---------------------------------------------------------------

REDIS_URL = env_secret("REDIS_URL", "")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis:// or rediss://.")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "portal",
        }
    }
else:
    # Shared by the web server and the worker processes of the quickstart.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

CELERY_BROKER_URL = env_secret("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL == "filesystem://":
    # The quickstart's embedded broker: messages are files that a real worker process reads.
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# With Redis, any number of beat processes may run: one holds a lock in Redis and sends the
# periodic tasks, the others take over within this many seconds of it stopping
# (portal/beat_scheduler.py). The quickstart without Redis runs one beat with a file.
BEAT_LEADER_LOCK_SECONDS = env_int("BEAT_LEADER_LOCK_SECONDS", 30, minimum=3)
if REDIS_URL:
    CELERY_BEAT_SCHEDULER = "portal.beat_scheduler:LeaderScheduler"

# --- Auth: allauth (local accounts + MFA) ----------------------------------------------

AUTH_USER_MODEL = "tenants.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_ADAPTER = "tenants.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
# Every session comes from the sign-in with its second factor: a password reset never signs
# anybody in, and there is no sign-in by e-mailed code.
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_LOGIN_BY_CODE_ENABLED = False
# Failed sign-ins are throttled per (account, client address) with a growing wait
# (tenants.sign_in_throttle); besides that, one client address may fail at most 20 times in
# 10 minutes across all accounts (allauth's "login" limit of 30 attempts a minute stays).
# Nothing counts per account alone, so nobody can lock somebody else out.
ACCOUNT_RATE_LIMITS = {"login_failed": "20/10m/ip"}
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = f"[{SITE_NAME}] "
# Self-service sign-up is only for people holding an invitation (see tenants.adapters).
PORTAL_OPEN_SIGNUP = env_bool("PORTAL_OPEN_SIGNUP", False)
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = False
# Seeds of authenticator apps and recovery codes are sealed under FIELD_ENCRYPTION_KEYS.
MFA_ADAPTER = "tenants.mfa.MFAAdapter"
MFA_FORMS = {"authenticate": "tenants.mfa_forms.ThrottledAuthenticateForm",
             "reauthenticate": "tenants.mfa_forms.ThrottledReauthenticateForm"}
MFA_TOTP_ISSUER = SITE_NAME
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = DEBUG
INVITATION_VALID_DAYS = env_int("INVITATION_VALID_DAYS", 7, minimum=1)

# --- Auth: single sign-on (OpenID Connect) ----------------------------------------------

# A JSON list of identity providers (README, "Connect Keycloak"), inline or in a file.
OIDC_PROVIDERS = parse_providers(
    env_secret("OIDC_PROVIDERS"),
    "OIDC_PROVIDERS_FILE" if os.environ.get("OIDC_PROVIDERS_FILE") else "OIDC_PROVIDERS",
)
LOCAL_LOGIN = os.environ.get("LOCAL_LOGIN", "enabled").strip().lower()
if LOCAL_LOGIN not in {"enabled", "hidden", "disabled"}:
    raise ImproperlyConfigured(
        f"LOCAL_LOGIN={LOCAL_LOGIN!r} must be enabled, hidden or disabled.")
if LOCAL_LOGIN == "disabled" and not OIDC_PROVIDERS:
    raise ImproperlyConfigured(
        "LOCAL_LOGIN=disabled needs at least one provider in OIDC_PROVIDERS.")
# Seconds a provider's discovery document and signing keys are reused by the API's
# bearer-token check before they are fetched again.
OIDC_KEYS_CACHE_SECONDS = env_int("OIDC_KEYS_CACHE_SECONDS", 600, minimum=30)
# Audit at most this many rejected bearer tokens a minute (each distinct token once).
OIDC_REJECTIONS_AUDITED_PER_MINUTE = env_int(
    "OIDC_REJECTIONS_AUDITED_PER_MINUTE", 60, minimum=0)
SOCIALACCOUNT_ADAPTER = "tenants.social.SocialAccountAdapter"
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {"APPS": [provider.allauth_app() for provider in OIDC_PROVIDERS]},
}
# People are matched by (provider, sub) only: an e-mail address never links two identities.
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_EMAIL_REQUIRED = True
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = 5

# --- E-mail -----------------------------------------------------------------------------

_email_url = env_secret("EMAIL_URL", "consolemail://")
try:
    vars().update(environ.Env.email_url_config(_email_url))
except Exception as exc:
    raise ImproperlyConfigured(f"EMAIL_URL is not a valid e-mail URL ({exc}).") from exc
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "portal@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Where tenants reach the platform operator (shown where they are told to ask the operator).
SUPPORT_EMAIL = os.environ.get("SUPPORT_EMAIL", "")

# --- Security ---------------------------------------------------------------------------

SECURE_COOKIES = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600, minimum=300)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# With TLS in front (a TLS proxy, or secure-only cookies, which only work over HTTPS), browsers
# are told to use HTTPS for a year and plain-HTTP requests are redirected to it. The health
# probes stay reachable over plain HTTP: orchestrators call them on the pod's address.
_TLS_IN_FRONT = BEHIND_TLS_PROXY or SECURE_COOKIES
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if _TLS_IN_FRONT else 0,
                              minimum=0)
# Covers the portal's own host name's subdomains (not its parent domain's other hosts).
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _TLS_IN_FRONT)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# The only peers whose forwarded headers (X-Forwarded-For, X-Forwarded-Proto, …) are believed,
# by Django, the gateway and the HTTP server alike (portal.request_context); from anyone else
# they are dropped. Empty: the peer's own address is the client's.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")
if env_bool("BEHIND_TLS_PROXY", False) and not TRUSTED_PROXIES:
    raise ImproperlyConfigured(
        "BEHIND_TLS_PROXY=true needs TRUSTED_PROXIES: the address(es) of the proxy that "
        "terminates TLS, the only peers whose X-Forwarded-Proto is believed.")
# Seconds a client may take to send a request's line and headers, and their largest size
# (enforced by portal.server.HttpProtocol, the protocol uvicorn runs).
HTTP_HEADER_TIMEOUT = env_int("HTTP_HEADER_TIMEOUT", 10, minimum=1)
HTTP_MAX_HEADER_BYTES = env_int("HTTP_MAX_HEADER_BYTES", 64 * 1024, minimum=4096)

# --- Gateway (/v1/*) --------------------------------------------------------------------

GATEWAY_KEY_EXPIRY_REQUIRED = env_bool("GATEWAY_KEY_EXPIRY_REQUIRED", False)
GATEWAY_KEY_MAX_DAYS = env_int("GATEWAY_KEY_MAX_DAYS", 0, minimum=0)
if GATEWAY_KEY_EXPIRY_REQUIRED and not GATEWAY_KEY_MAX_DAYS:
    raise ImproperlyConfigured(
        "GATEWAY_KEY_EXPIRY_REQUIRED=true needs GATEWAY_KEY_MAX_DAYS (the longest allowed life)."
    )
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024)
GATEWAY_BODY_TIMEOUT = env_int("GATEWAY_BODY_TIMEOUT", 30, minimum=1)
GATEWAY_CONNECT_TIMEOUT = env_int("GATEWAY_CONNECT_TIMEOUT", 5, minimum=1)
GATEWAY_UPSTREAM_TIMEOUT = env_int("GATEWAY_UPSTREAM_TIMEOUT", 600, minimum=1)
GATEWAY_STREAM_IDLE_TIMEOUT = env_int("GATEWAY_STREAM_IDLE_TIMEOUT", 120, minimum=1)
GATEWAY_MAX_UPSTREAM_BODY_BYTES = env_int("GATEWAY_MAX_UPSTREAM_BODY_BYTES", 64 * 1024 * 1024,
                                          minimum=1024)
GATEWAY_MAX_STREAM_EVENT_BYTES = env_int("GATEWAY_MAX_STREAM_EVENT_BYTES", 1024 * 1024,
                                         minimum=1024)
GATEWAY_CACHE_TTL = env_int("GATEWAY_CACHE_TTL", 60, minimum=1)
GATEWAY_KEY_CACHE_SIZE = env_int("GATEWAY_KEY_CACHE_SIZE", 100_000, minimum=100)
GATEWAY_AUTH_FAILURES_PER_MINUTE = env_int("GATEWAY_AUTH_FAILURES_PER_MINUTE", 30, minimum=1)

# --- Budgets and budget webhooks --------------------------------------------------------

# Networks a budget webhook may point at although they are private or loopback addresses
# (comma-separated CIDRs). Everything else non-public is refused: no SSRF through webhooks.
BUDGET_WEBHOOK_ALLOWED_NETWORKS = env_networks("BUDGET_WEBHOOK_ALLOWED_NETWORKS")
BUDGET_WEBHOOK_TIMEOUT = env_int("BUDGET_WEBHOOK_TIMEOUT", 10, minimum=1)
BUDGET_WEBHOOK_MAX_ATTEMPTS = env_int("BUDGET_WEBHOOK_MAX_ATTEMPTS", 10, minimum=1)
BUDGET_WEBHOOK_RETRY_BASE_SECONDS = env_int("BUDGET_WEBHOOK_RETRY_BASE_SECONDS", 30, minimum=1)

# --- Outbound calls (portal/outbound.py) ------------------------------------------------

# Networks external endpoints, clusters' API servers and the model servers behind them may
# be in (comma-separated CIDRs). Empty: public addresses only. Set: only these networks —
# private ones included (a cluster on the operator's own network), public ones only if listed.
OUTBOUND_ALLOWED_NETWORKS = env_networks("OUTBOUND_ALLOWED_NETWORKS")

# --- Internationalisation ---------------------------------------------------------------

LANGUAGE_CODE = "en"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files (served by WhiteNoise: no CDN, ever) ----------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "portal.staticfinders.PackageAssetsFinder",  # plotly.js from the plotly package
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env_bool("STATIC_MANIFEST", not DEBUG)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- REST API ---------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so that an unauthenticated request is answered 401 with a Bearer challenge.
        "tenants.bearer.OidcBearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["portal.parsers.JSONParser", "portal.parsers.FormParser",
                               "portal.parsers.MultiPartParser"],
    "DEFAULT_SCHEMA_CLASS": "portal.openapi.PortalAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "portal.api.PortalPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "portal.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# The OpenAPI schema and the interactive docs describe every endpoint: in production only
# signed-in people and API clients (bearer token) read them, unless opened on purpose.
API_DOCS_PUBLIC = env_bool("API_DOCS_PUBLIC", DEBUG)
SPECTACULAR_SETTINGS = {
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny" if API_DOCS_PUBLIC
                          else "rest_framework.permissions.IsAuthenticated"],
    "TITLE": f"{SITE_NAME} API",
    "DESCRIPTION": "Management API of the Sovereign Model Portal.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Bodies are documented as JSON; the form encodings stay accepted, undocumented.
    "PARSER_WHITELIST": ["portal.parsers.JSONParser"],
    # /v1 is the gateway's ASGI app, not DRF: its documented paths are added by a hook.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "gateway.openapi.add_gateway_paths"],
    "ENUM_NAME_OVERRIDES": {
        "DeploymentStatusEnum": "deployments.models.DeploymentStatus",
        "DeploymentModeEnum": "deployments.models.DeploymentMode",
    },
}

# --- Model catalog: OCI registry, uploads, scans -----------------------------------------

# Any OCI distribution registry (Quay, Harbor, CNCF distribution). Empty: the catalog works,
# but the upload wizard says the registry is not configured.
REGISTRY_URL = os.environ.get("REGISTRY_URL", "").rstrip("/")
if REGISTRY_URL and not REGISTRY_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"REGISTRY_URL={REGISTRY_URL!r} must start with https:// "
                               "(or http:// for a registry on loopback).")
REGISTRY_USERNAME = os.environ.get("REGISTRY_USERNAME", "")
REGISTRY_PASSWORD = env_secret("REGISTRY_PASSWORD", "")
# Uploads land (quarantined) under this namespace; approved images are copied by digest to
# the trusted one, which is what clusters pull from.
REGISTRY_LANDING_NAMESPACE = os.environ.get("REGISTRY_LANDING_NAMESPACE", "landing").strip("/")
REGISTRY_TRUSTED_NAMESPACE = os.environ.get("REGISTRY_TRUSTED_NAMESPACE", "trusted").strip("/")
if REGISTRY_LANDING_NAMESPACE == REGISTRY_TRUSTED_NAMESPACE:
    raise ImproperlyConfigured("REGISTRY_LANDING_NAMESPACE and REGISTRY_TRUSTED_NAMESPACE must "
                               "differ: quarantined images never share a namespace with "
                               "trusted ones.")
REGISTRY_TLS_VERIFY = env_bool("REGISTRY_TLS_VERIFY", True)
REGISTRY_CA_BUNDLE = os.environ.get("REGISTRY_CA_BUNDLE", "")
if REGISTRY_CA_BUNDLE and not Path(REGISTRY_CA_BUNDLE).is_file():
    raise ImproperlyConfigured(f"REGISTRY_CA_BUNDLE={REGISTRY_CA_BUNDLE!r} is not a file.")
REGISTRY_TIMEOUT_SECONDS = env_int("REGISTRY_TIMEOUT_SECONDS", 60, minimum=1)

# Browser uploads of ModelCar archives are appended chunk by chunk to files here.
MODEL_UPLOAD_DIR = Path(os.environ.get("MODEL_UPLOAD_DIR", VAR_DIR / "uploads"))
MODEL_UPLOAD_MAX_BYTES = env_int("MODEL_UPLOAD_MAX_BYTES", 100 * 1024**3, minimum=1)
MODEL_UPLOAD_CHUNK_BYTES = env_int("MODEL_UPLOAD_CHUNK_BYTES", 8 * 1024**2, minimum=64 * 1024)
# Scratch space for scans (layers are downloaded and extracted here, then removed).
MODEL_SCAN_WORKDIR = Path(os.environ.get("MODEL_SCAN_WORKDIR", VAR_DIR / "scans"))
# A scan or push whose worker has not reported progress for this long is taken over by beat.
MODEL_SCAN_STALE_MINUTES = env_int("MODEL_SCAN_STALE_MINUTES", 30, minimum=1)

# --- Audit: signing key, checkpoints, reports, retention --------------------------------

# The platform's Ed25519 private key (PEM), kept outside the database: it signs audit
# checkpoints, evidence bundles and model statements. The quickstart (DEBUG) creates one
# under var/ on first use; production refuses to start without it.
PLATFORM_SIGNING_KEY_FILE = env_key_file(
    "PLATFORM_SIGNING_KEY_FILE", debug_default=VAR_DIR / "platform-signing-key.pem" if DEBUG
    else None, what="the platform's Ed25519 private key (PEM)", created_by="portal.signing")

# The platform's EC P-256 private key (PEM) for OpenSSF Model Signing: it signs the files of
# each approved model version. A key of its own because the OMS format's key signer supports
# only ECDSA (P-256/384/521), not the Ed25519 platform key above. Same rules as that key.
PLATFORM_MODEL_SIGNING_KEY_FILE = env_key_file(
    "PLATFORM_MODEL_SIGNING_KEY_FILE",
    debug_default=VAR_DIR / "platform-model-signing-key.pem" if DEBUG else None,
    what="the platform's EC P-256 model-signing key (PEM)", created_by="models_catalog.oms")

AUDIT_CHECKPOINT_INTERVAL_MINUTES = env_int("AUDIT_CHECKPOINT_INTERVAL_MINUTES", 15, minimum=1)
# Events anyone on the network can cause (failed sign-ins, rejected tokens) are recorded up to
# these budgets per client (IPv6: per /64) and for all clients together, per minute; the first
# event over a budget is recorded as `audit.anonymous_throttled` (see audit.limits).
AUDIT_ANONYMOUS_EVENTS_PER_CLIENT_PER_MINUTE = env_int(
    "AUDIT_ANONYMOUS_EVENTS_PER_CLIENT_PER_MINUTE", 10, minimum=1)
AUDIT_ANONYMOUS_EVENTS_PER_MINUTE = env_int("AUDIT_ANONYMOUS_EVENTS_PER_MINUTE", 60, minimum=1)
COMPLIANCE_REPORTS_DIR = Path(os.environ.get("COMPLIANCE_REPORTS_DIR", VAR_DIR / "reports"))

# Retention of audit events: days per event class (action prefix), the rest by default.
# Purging removes the oldest events up to a signed checkpoint, and only while every event in
# that prefix is past its class's retention (see audit.services.audit_purge).
AUDIT_RETENTION_DEFAULT_DAYS = env_int("AUDIT_RETENTION_DEFAULT_DAYS", 7 * 365, minimum=1)
AUDIT_RETENTION_CLASSES = {"inference.": 183, **env_retention_classes("AUDIT_RETENTION_CLASSES")}

# Trusted timestamps (RFC 3161) on checkpoints and evidence bundles, from the operator's own
# time-stamping authority (TSA); off while TSA_URL is empty. TSA_CA_FILE holds the PEM
# certificate(s) the TSA's signing certificate must chain to (its root CA and intermediates,
# or the TSA certificate itself if self-signed); without TSA_URL it still serves to verify
# timestamps already stored. TSA_CERT_FILE optionally pins the one signing certificate,
# TSA_POLICY_OID the policy every timestamp must carry. See audit/timestamps.py.
TSA_URL = env_http_url("TSA_URL", what="the time-stamping authority",
                       credentials_allowed=False)
TSA_CA_FILE = os.environ.get("TSA_CA_FILE", "").strip()
TSA_CERT_FILE = os.environ.get("TSA_CERT_FILE", "").strip()
check_tsa_files(url=TSA_URL, ca_file=TSA_CA_FILE, cert_file=TSA_CERT_FILE)
TSA_POLICY_OID = env_oid("TSA_POLICY_OID")
TSA_HASH_ALGORITHM = os.environ.get("TSA_HASH_ALGORITHM", "sha256").strip().lower()
if TSA_HASH_ALGORITHM not in {"sha256", "sha512"}:
    raise ImproperlyConfigured(
        f"TSA_HASH_ALGORITHM={TSA_HASH_ALGORITHM!r} must be sha256 or sha512.")
TSA_TIMEOUT_SECONDS = env_int("TSA_TIMEOUT_SECONDS", 10, minimum=1)

# --- Model scanning (the catalog's supply-chain gate) -----------------------------------

# safetensors_gguf_only: weights must be safetensors or GGUF; any pickle-based file is refused
# even when clean. pickle_allowed_when_clean: pickles pass when picklescan finds nothing.
MODEL_SCAN_POLICY = os.environ.get("MODEL_SCAN_POLICY", "safetensors_gguf_only")
if MODEL_SCAN_POLICY not in {"safetensors_gguf_only", "pickle_allowed_when_clean"}:
    raise ImproperlyConfigured(
        f"MODEL_SCAN_POLICY={MODEL_SCAN_POLICY!r} must be safetensors_gguf_only or "
        "pickle_allowed_when_clean.")
# Caps on what one image may unpack to under /models (archive bombs stop at the cap).
MODEL_SCAN_MAX_BYTES = env_int("MODEL_SCAN_MAX_BYTES", 200 * 1024**3, minimum=1)
MODEL_SCAN_MAX_FILES = env_int("MODEL_SCAN_MAX_FILES", 10_000, minimum=1)
# Bytes one scan may write to its scratch space under MODEL_SCAN_WORKDIR (downloaded layers
# plus unpacked files); past it the scan stops and cleans up. Default: twice the /models cap.
MODEL_SCAN_DISK_QUOTA_BYTES = env_int("MODEL_SCAN_DISK_QUOTA_BYTES", 2 * MODEL_SCAN_MAX_BYTES,
                                      minimum=1)

# --- Deployments ------------------------------------------------------------------------
# Clusters pull ModelCars from the registry's trusted namespace (REGISTRY_URL, above) as
# `oci://<host>/<repository>@sha256:<digest>`.

# Data residency: the jurisdictions (ISO 3166 codes, optionally with a region, or EU) where
# models may run. A deployment to a cluster outside them is refused and audited. Empty: no
# deployment is allowed until the operator says where.
ALLOWED_JURISDICTIONS = env_list("ALLOWED_JURISDICTIONS", [])
for _code in ALLOWED_JURISDICTIONS:
    if not re.fullmatch(r"[A-Z]{2}(?:-[A-Z0-9]{1,3})?", _code):
        raise ImproperlyConfigured(
            f"ALLOWED_JURISDICTIONS: {_code!r} is not a code such as DE, EU or DE-BY.")
# Namespace of shared deployments (serving every entitled tenant) on each cluster.
DEPLOYMENTS_SHARED_NAMESPACE = os.environ.get("DEPLOYMENTS_SHARED_NAMESPACE", "models-shared")
# Where KServe keeps its inferenceservice-config ConfigMap on the clusters (the cluster check
# reads whether OCI model support is on there).
KSERVE_NAMESPACE = os.environ.get("KSERVE_NAMESPACE", "kserve")
# Kubernetes API calls: seconds per request, attempts on 5xx/timeouts, first backoff (doubles).
KUBE_REQUEST_TIMEOUT_SECONDS = env_int("KUBE_REQUEST_TIMEOUT_SECONDS", 10, minimum=1)
KUBE_API_ATTEMPTS = env_int("KUBE_API_ATTEMPTS", 4, minimum=1)
KUBE_RETRY_BACKOFF_MS = env_int("KUBE_RETRY_BACKOFF_MS", 500, minimum=0)
# A deployment not ready this many minutes after it was applied is marked failed.
DEPLOYMENT_PROGRESS_TIMEOUT_MINUTES = env_int("DEPLOYMENT_PROGRESS_TIMEOUT_MINUTES", 30,
                                              minimum=1)
# A deployment "applying" longer than this (its worker died) is marked failed, to be retried.
DEPLOYMENT_APPLYING_STALE_MINUTES = env_int("DEPLOYMENT_APPLYING_STALE_MINUTES", 10, minimum=1)

from portal.beat import build_schedule  # noqa: E402  (needs the intervals above)

CELERY_BEAT_SCHEDULE = build_schedule(
    checkpoint_interval_minutes=AUDIT_CHECKPOINT_INTERVAL_MINUTES)

# --- Metrics and tracing (README "Metrics, logs and traces") ---------------------------

# What this process is, as the container's entrypoint started it (web, gateway, worker,
# beat); empty for a server run by hand, which serves everything.
PORTAL_ROLE = os.environ.get("PORTAL_ROLE", "").strip()
# Prometheus metrics on their own port (never the public one); 0: off.
METRICS_PORT = env_int("METRICS_PORT", 0, minimum=0)
METRICS_HOST = os.environ.get("METRICS_HOST", "127.0.0.1").strip()
# Where the processes of one server (uvicorn's workers, Celery's pool) leave what they
# counted for whichever of them is scraped. One empty directory per server: the entrypoint
# empties it at start.
PROMETHEUS_MULTIPROC_DIR = env_directory("PROMETHEUS_MULTIPROC_DIR",
                                         needed_for="METRICS_PORT" if METRICS_PORT else "")
# OpenTelemetry traces, sent by OTLP over HTTP to this collector (e.g.
# http://otel-collector:4318); empty: tracing is off and nothing is sent anywhere.
OTEL_EXPORTER_OTLP_ENDPOINT = env_http_url(
    "OTEL_EXPORTER_OTLP_ENDPOINT", what="an OTLP/HTTP collector, e.g. http://otel-collector:4318")
OTEL_SERVICE_NAME = os.environ.get("OTEL_SERVICE_NAME", "").strip() or (
    f"sovereign-portal-{PORTAL_ROLE}" if PORTAL_ROLE else "sovereign-portal")

# --- Logging ----------------------------------------------------------------------------

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} must be DEBUG, INFO, WARNING or ERROR.")
# json: one JSON object per line (request id, tenant, actor in each), for log collectors;
# text: for a terminal. Default json, text with DEBUG.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text" if DEBUG else "json").strip().lower()
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be json or text.")
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
# Celery logs through the same handler (portal.celery connects its setup_logging signal).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
