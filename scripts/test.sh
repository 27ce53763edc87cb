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
# The suite's model servers, Kubernetes API emulator and registry listen on loopback: allow
# loopback (and only loopback) for the portal's calls to endpoints and clusters. Tests of the
# outbound policy itself set the allow-list they need.
export OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8,::1/128"
# The suite signs checkpoints, bundles and model files with keys of its own, created once.
use_test_signing_keys
export COMPLIANCE_REPORTS_DIR="$ROOT/var/test-reports"
# Manifests are checked against KServe's own API types, from its SDK wheel (only the wheel:
# its runtime dependencies are not needed to read the types).
export KSERVE_SDK_WHEEL="$ROOT/var/kserve-sdk/kserve-0.20.0-py3-none-any.whl"
[ -f "$KSERVE_SDK_WHEEL" ] || "$VENV/bin/python" -m pip download -q --no-deps \
  --only-binary=:all: -c requirements/constraints.txt -d "$ROOT/var/kserve-sdk" kserve==0.20.0
# The Helm chart's policy lint: checkov in a venv of its own (its pins clash with the portal's).
CHECKOV_VENV="$ROOT/var/tools/checkov"
checkov_digest="$(sha256sum requirements/checkov.txt | cut -c1-16)"
if [ "$(cat "$CHECKOV_VENV/.installed" 2>/dev/null)" != "$checkov_digest" ]; then
  say "Installing checkov (requirements/checkov.txt) into var/tools/checkov"
  rm -rf "$CHECKOV_VENV" && "$(find_python)" -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip install -q --no-deps -r requirements/checkov.txt
  echo "$checkov_digest" > "$CHECKOV_VENV/.installed"
fi
export CHECKOV_BIN="$CHECKOV_VENV/bin/checkov"
"$VENV/bin/python" manage.py collectstatic --no-input -v 0
export CHROMIUM_PATH="${CHROMIUM_PATH:-$(command -v chromium)}"

exec "$VENV/bin/python" -m pytest "$@"
