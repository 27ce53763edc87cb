# Shared helpers for the project's scripts (sourced, not run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
cd "$ROOT"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf '\033[1;31mError:\033[0m %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@";
  else die "need root (or sudo) to run: $*"; fi
}

APT_UPDATED=""
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found: install $* with your system's package manager."
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  say "Installing Debian packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  die "Python 3.11 or newer is required (apt-get install python3)."
}

# Create .venv and install the project with pinned versions; EXTRAS="dev" adds test tools.
# Re-installs only when pyproject.toml or the constraints changed.
ensure_venv() {
  local extras="${1:-}"
  local python; python="$(find_python)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "Creating virtual environment in .venv"
    if ! "$python" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt_install python3-venv
      "$python" -m venv "$VENV"
    fi
  fi
  local spec="."; [ -n "$extras" ] && spec=".[$extras]"
  local stamp="$VENV/.installed-${extras:-base}"
  local digest; digest="$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    say "Installing Python packages ($spec)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c requirements/constraints.txt -e "$spec"
    echo "$digest" > "$stamp"
  fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# wait_port HOST PORT TRIES PAUSE: until something listens there (or the tries run out).
wait_port() { for _ in $(seq 1 "$3"); do port_open "$1" "$2" && return 0; sleep "$4"; done; return 1; }
# A loopback TCP port nothing listens on now.
free_port() { "$(find_python)" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The test suite's own platform key (Ed25519) and model-signing key (EC P-256), created once
# under var/ and exported as the settings name them (unless the caller set them already).
use_test_signing_keys() {
  export PLATFORM_SIGNING_KEY_FILE="${PLATFORM_SIGNING_KEY_FILE:-$ROOT/var/test-platform-signing-key.pem}"
  export PLATFORM_MODEL_SIGNING_KEY_FILE="${PLATFORM_MODEL_SIGNING_KEY_FILE:-$ROOT/var/test-platform-model-signing-key.pem}"
  [ -f "$PLATFORM_SIGNING_KEY_FILE" ] || "$VENV/bin/python" -c \
    'import sys; from portal.signing import write_new_key; write_new_key(sys.argv[1])' \
    "$PLATFORM_SIGNING_KEY_FILE"
  [ -f "$PLATFORM_MODEL_SIGNING_KEY_FILE" ] || "$VENV/bin/python" -c \
    'import sys; from models_catalog.oms import write_new_key; write_new_key(sys.argv[1])' \
    "$PLATFORM_MODEL_SIGNING_KEY_FILE"
}
