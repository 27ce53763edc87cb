#!/usr/bin/env bash
# Make sure the services the test suite talks to are up: PostgreSQL, Redis, Chromium and
# Debian's docker-registry (started per test session),
# and the Node.js test OpenID Provider (tests/oidc) is installed from its lock file.
# Uses what is running; installs missing pieces from Debian's packages and starts them.
source "$(dirname "$0")/_common.sh"

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_PORT=6379

start_postgres() {
  local version
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1 || true)"
  if [ -z "$version" ]; then
    apt_install postgresql
    version="$(ls /etc/postgresql | sort -V | tail -1)"
  fi
  say "Starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null ||
    as_root pg_ctlcluster "$version" main start
  wait_port "$PG_HOST" "$PG_PORT" 30 1 || true
  # A fresh Debian cluster wants a password over TCP: give the postgres role the one the
  # test settings use (a no-op where trust authentication is configured).
  as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
}

start_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  say "Starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/portal-tests.log
  wait_port 127.0.0.1 "$REDIS_PORT" 20 0.5 || true
}

port_open "$PG_HOST" "$PG_PORT" || start_postgres
port_open "$PG_HOST" "$PG_PORT" || die "PostgreSQL is not answering on $PG_HOST:$PG_PORT."
port_open 127.0.0.1 "$REDIS_PORT" || start_redis
port_open 127.0.0.1 "$REDIS_PORT" || die "Redis is not answering on 127.0.0.1:$REDIS_PORT."
command -v chromium >/dev/null || apt_install chromium
# The model catalog's tests push and pull ModelCar images to a private registry on loopback
# (CNCF distribution 2.8; each test session starts its own instance with tmp storage).
command -v docker-registry >/dev/null || apt_install docker-registry

ensure_test_openid_provider() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  local dir="$ROOT/tests/oidc"
  local digest; digest="$(sha256sum "$dir/package-lock.json" | cut -c1-16)"
  local stamp="$dir/node_modules/.portal-lock-digest"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    say "Installing the test OpenID Provider (npm ci in tests/oidc)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$digest" > "$stamp"
  fi
}
ensure_test_openid_provider
say "PostgreSQL, Redis, Chromium, the OCI registry and the test OpenID Provider are ready"
