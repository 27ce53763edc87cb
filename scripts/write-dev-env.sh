#!/usr/bin/env bash
# Called by `make run`: writes the development .env the first time. The file holds
# SECRET_KEY, so it is readable by its owner only (0600); a .env an earlier run wrote with the
# default umask gets that mode too. A .env somebody else wrote is left as it is.
source "$(dirname "$0")/_common.sh"

new_fernet_key() {
  "$VENV/bin/python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'
}

OUTBOUND_COMMENT="# Where external endpoints and clusters may be (CIDRs): this machine, for a local model server or cluster. Empty: public addresses only."
OUTBOUND_LINE="OUTBOUND_ALLOWED_NETWORKS=127.0.0.0/8,::1/128"
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
      echo "# Encrypts stored secrets (upstream API keys, cluster credentials); keep it with backups."
      echo "FIELD_ENCRYPTION_KEYS=$(new_fernet_key)"
      echo "# Where models may run (data residency); empty refuses every deployment."
      echo "ALLOWED_JURISDICTIONS=DE,EU"
      echo "$OUTBOUND_COMMENT"
      echo "$OUTBOUND_LINE"
    } > .env
  )
elif [ "$(head -n 1 .env)" = "$HEADER" ]; then
  chmod 600 .env
  # A .env from before the outbound-URL policy: keep a local model server reachable.
  grep -qs '^OUTBOUND_ALLOWED_NETWORKS=' .env || printf '%s\n%s\n' "$OUTBOUND_COMMENT" "$OUTBOUND_LINE" >> .env
  if ! grep -Eqs '^FIELD_ENCRYPTION_KEYS(_FILE)?=.' .env; then
    # A .env from before FIELD_ENCRYPTION_KEYS: its secrets were encrypted with a key derived
    # from SECRET_KEY. Add a real key and keep the derived one readable; `make run` then
    # re-encrypts them (secrets_rotate) while FIELD_ENCRYPTION_LEGACY_DERIVED_KEY is set.
    say "Adding FIELD_ENCRYPTION_KEYS to .env (stored secrets are re-encrypted under it)"
    {
      echo "FIELD_ENCRYPTION_KEYS=$(new_fernet_key)"
      echo "FIELD_ENCRYPTION_LEGACY_DERIVED_KEY=true"
    } >> .env
  fi
fi
