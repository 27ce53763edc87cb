#!/usr/bin/env bash
# `make run`: install, migrate, seed demo data, then run the web server, a Celery worker and
# Celery beat until Ctrl-C. Uses DATABASE_URL / REDIS_URL when set; otherwise SQLite and the
# embedded filesystem broker under var/.
source "$(dirname "$0")/_common.sh"

ensure_venv
mkdir -p var

if [ ! -f .env ]; then
  say "Writing .env for local development (edit it, or see .env.example)"
  {
    echo "# Written by 'make run' for local development. See .env.example for every setting."
    echo "DEBUG=true"
    echo "SECRET_KEY=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))')"
  } > .env
fi

PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
export PORTAL_BASE_URL="${PORTAL_BASE_URL:-http://$HOST:$PORT}"
PY="$VENV/bin/python"

say "Migrating the database"
"$PY" manage.py migrate --no-input -v 0
"$PY" manage.py seed_demo > var/demo-logins.txt
"$PY" manage.py collectstatic --no-input -v 0

pids=()
stop() {
  trap - INT TERM EXIT
  say "Stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$VENV/bin/celery" -A portal worker --loglevel INFO --concurrency 2 --hostname "worker@%h" \
  > var/celery-worker.log 2>&1 &
pids+=($!)
"$VENV/bin/celery" -A portal beat --loglevel INFO > var/celery-beat.log 2>&1 &
pids+=($!)
"$VENV/bin/uvicorn" portal.asgi:application --host "$HOST" --port "$PORT" \
  --lifespan off --no-access-log &
pids+=($!)

sleep 2
cat <<MSG

  Sovereign Model Portal is running at  http://$HOST:$PORT
  Database: $("$PY" -c 'from django.conf import settings; import django, os; os.environ.setdefault("DJANGO_SETTINGS_MODULE","portal.settings"); django.setup(); print(settings.DATABASES["default"]["ENGINE"].rsplit(".",1)[-1])')   Broker: ${REDIS_URL:+redis}${REDIS_URL:-embedded (filesystem, var/broker)}
  Worker and beat logs: var/celery-worker.log, var/celery-beat.log
  E-mails (invitations, verification) are printed in the worker log unless EMAIL_URL is set.

$(sed -n '2,$p' var/demo-logins.txt)

  Press Ctrl-C to stop everything.
MSG
wait -n "${pids[@]}" || true
