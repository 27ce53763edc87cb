#!/usr/bin/env bash
# Called by `make run`: writes the development .env the first time. The file holds
# SECRET_KEY, so it is readable by its owner only (0600); a .env an earlier run wrote with the
# default umask gets that mode too. A .env somebody else wrote is left as it is.
source "$(dirname "$0")/_common.sh"

HEADER="# Written by 'make run' for local development. See .env.example for every setting."
if [ ! -f .env ]; then
  say "Writing .env for local development (edit it, or see .env.example)"
  secret="$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))')"
  (
    umask 077
    {
      echo "$HEADER"
      echo "DEBUG=true"
      echo "SECRET_KEY=$secret"
      echo "# Where models may run (data residency); empty refuses every deployment."
      echo "ALLOWED_JURISDICTIONS=DE,EU"
    } > .env
  )
elif [ "$(head -n 1 .env)" = "$HEADER" ]; then
  chmod 600 .env
fi
