#!/usr/bin/env bash
# `make test`: the whole suite against PostgreSQL and Redis, browser tests included.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/audit -x
source "$(dirname "$0")/_common.sh"

"$ROOT/scripts/ensure-services.sh"
ensure_venv dev
# The real-model tests (tests/demo, marker `engine`) serve Gemma 3 270M with llama-cpp-python
# from var/engine: built once from source (about 10 minutes), then from pip's wheel cache.
ENGINE_INSTALL_TOOLS=1 "$ROOT/scripts/ensure-engine.sh"

export PORTAL_IGNORE_DOTENV=1
export DEBUG=false
export SECRET_KEY="test-only-secret-key-not-for-production"
# Fernet key for secrets at rest: base64 of "test-only-field-encryption-key!!".
export FIELD_ENCRYPTION_KEYS="dGVzdC1vbmx5LWZpZWxkLWVuY3J5cHRpb24ta2V5ISE="
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/portal}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
export STATIC_MANIFEST=false
export SECURE_COOKIES=false
# The suite signs checkpoints and bundles with a key of its own, created once.
export PLATFORM_SIGNING_KEY_FILE="${PLATFORM_SIGNING_KEY_FILE:-$ROOT/var/test-platform-signing-key.pem}"
[ -f "$PLATFORM_SIGNING_KEY_FILE" ] || "$VENV/bin/python" -c \
  'import sys; from portal.signing import write_new_key; write_new_key(sys.argv[1])' \
  "$PLATFORM_SIGNING_KEY_FILE"
export COMPLIANCE_REPORTS_DIR="$ROOT/var/test-reports"
# Manifests are checked against KServe's own API types, from its SDK wheel (only the wheel:
# its runtime dependencies are not needed to read the types).
export KSERVE_SDK_WHEEL="$ROOT/var/kserve-sdk/kserve-0.20.0-py3-none-any.whl"
[ -f "$KSERVE_SDK_WHEEL" ] || "$VENV/bin/python" -m pip download -q --no-deps \
  --only-binary=:all: -c requirements/constraints.txt -d "$ROOT/var/kserve-sdk" kserve==0.20.0
"$VENV/bin/python" manage.py collectstatic --no-input -v 0
export CHROMIUM_PATH="${CHROMIUM_PATH:-$(command -v chromium)}"

exec "$VENV/bin/python" -m pytest "$@"
