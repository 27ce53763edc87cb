#!/usr/bin/env bash
# `make image-test`: build the image (make image) with the test suite's platform key, then run
# it with rootful podman against the local PostgreSQL and Redis (tests/deploy/test_image.py).
source "$(dirname "$0")/_common.sh"

for tool in podman runc; do command -v "$tool" >/dev/null || apt_install "$tool"; done
ensure_venv dev
use_test_signing_keys
started=$SECONDS
"$ROOT/scripts/image.sh"
built=$SECONDS
export PORTAL_IMAGE_ARCHIVE="$ROOT/var/image/$(readlink "$ROOT/var/image/sovereign-portal.oci.tar")"
"$ROOT/scripts/test.sh" tests/deploy/test_image.py "$@"
say "Image built in $((built - started)) s, tested in $((SECONDS - built)) s"
