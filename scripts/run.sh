#!/usr/bin/env bash
# `make run`: install, migrate, seed demo data, then run the web server, a Celery worker and
# Celery beat until Ctrl-C. Uses DATABASE_URL / REDIS_URL when set; otherwise SQLite and the
# embedded filesystem broker under var/.
source "$(dirname "$0")/_common.sh"

ensure_venv
mkdir -p var

"$ROOT/scripts/write-dev-env.sh"

pids=()
demo_pid=""
stop() {
  trap - INT TERM EXIT
  say "Stopping"
  # The demo first: it stops its llama.cpp server (and an unfinished engine build) with their
  # process groups before the portal goes away.
  if [ -n "$demo_pid" ]; then kill -TERM "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# Neither the environment nor .env sets $1.
unset_here() { [ -z "${!1:-}" ] && ! grep -qs "^$1=." .env; }
# The service just started in the background listens on loopback port $1: stop it on exit.
started_on() { pids+=($!); wait_port 127.0.0.1 "$1" 20 0.2 || true; }

# The /v1 gateway needs Redis (rate limits, usage stream). Without REDIS_URL, start a private
# Redis for this session when the machine has redis-server; otherwise run without the gateway.
if unset_here REDIS_URL; then
  if command -v redis-server >/dev/null; then
    REDIS_PORT="$(free_port)"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir "$ROOT/var" --logfile "$ROOT/var/redis.log" &
    started_on "$REDIS_PORT"
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    BROKER_NOTE="private Redis on 127.0.0.1:$REDIS_PORT (this session only)"
  else
    BROKER_NOTE="embedded (filesystem, var/broker) — the /v1 gateway needs Redis: install redis-server or set REDIS_URL"
  fi
else
  BROKER_NOTE="Redis (REDIS_URL)"
fi

# The model catalog's supply-chain gate needs an OCI registry. Without REGISTRY_URL, start a
# private one (Debian's docker-registry) on loopback with its storage under var/registry;
# without either, the catalog works but the upload wizard explains that none is configured.
if unset_here REGISTRY_URL; then
  if command -v docker-registry >/dev/null; then
    REGISTRY_PORT="$(free_port)"
    mkdir -p var/registry/storage
    cat > var/registry/config.yml <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $ROOT/var/registry/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
YAML
    docker-registry serve var/registry/config.yml > var/registry.log 2>&1 &
    started_on "$REGISTRY_PORT"
    export REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT"
    REGISTRY_NOTE="private registry at $REGISTRY_URL (storage in var/registry)"
  else
    REGISTRY_NOTE="none — model uploads need one: apt-get install docker-registry, or set REGISTRY_URL"
  fi
else
  REGISTRY_NOTE="${REGISTRY_URL:-from .env}"
fi

PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
export PORTAL_BASE_URL="${PORTAL_BASE_URL:-http://$HOST:$PORT}"
PY="$VENV/bin/python"

say "Migrating the database"
"$PY" manage.py migrate --no-input -v 0
if grep -qs '^FIELD_ENCRYPTION_LEGACY_DERIVED_KEY=true' .env; then
  "$PY" manage.py secrets_rotate || say "Some stored secrets could not be re-encrypted (above)"
fi
"$PY" manage.py seed_demo > var/demo-logins.txt
"$PY" manage.py collectstatic --no-input -v 0

"$VENV/bin/celery" -A portal worker --loglevel INFO --concurrency 2 --hostname "worker@%h" \
  > var/celery-worker.log 2>&1 &
pids+=($!)
"$VENV/bin/celery" -A portal beat --loglevel INFO > var/celery-beat.log 2>&1 &
pids+=($!)
# The portal's HTTP protocol adds header limits; TRUSTED_PROXIES (not uvicorn) decides whose
# forwarded headers count, hence --no-proxy-headers.
"$VENV/bin/uvicorn" portal.asgi:application --host "$HOST" --port "$PORT" \
  --lifespan on --no-access-log --http portal.server:HttpProtocol --no-proxy-headers &
pids+=($!)

# The demo model (DEBUG only): packed, uploaded, scanned, approved and served in the
# background while the portal is already usable; its progress shows on the catalog and
# playground pages. Its failure never stops the portal (it is not waited on below).
DEMO_NOTE="off (DEBUG is not true in .env)"
if grep -qs '^DEBUG=true' .env || [ "${DEBUG:-}" = "true" ]; then
  "$PY" manage.py demo_model > var/demo-model.log 2>&1 &
  demo_pid=$!
  DEMO_NOTE="Gemma 3 270M on a local llama.cpp server, being prepared (progress on the
  catalog and playground pages; log in var/demo-model.log)"
fi

sleep 2
cat <<MSG

  Sovereign Model Portal is running at  http://$HOST:$PORT
  OpenAI-compatible API (gateway):       http://$HOST:$PORT/v1
  Database: $("$PY" -c 'from django.conf import settings; import django, os; os.environ.setdefault("DJANGO_SETTINGS_MODULE","portal.settings"); django.setup(); print(settings.DATABASES["default"]["ENGINE"].rsplit(".",1)[-1])')   Broker: $BROKER_NOTE
  OCI registry: $REGISTRY_NOTE
  Demo model: $DEMO_NOTE
  Worker and beat logs: var/celery-worker.log, var/celery-beat.log
  E-mails (invitations, verification) are printed in the worker log unless EMAIL_URL is set.
${REDIS_URL:+  manage.py commands in another shell (endpoint_register, apikey_create, …) reach the
  running gateway at once with:  export REDIS_URL=$REDIS_URL}

$(sed -n '2,$p' var/demo-logins.txt)

  Press Ctrl-C to stop everything.
MSG
wait -n "${pids[@]}" || true
