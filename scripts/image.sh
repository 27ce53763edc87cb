#!/usr/bin/env bash
# `make image`: the portal's OCI image, built from Debian's packages and the pinned wheels
# alone — no base image is pulled from any registry.
#
#   1. wheels: every pinned dependency as a wheel (pip wheel; cached by pyproject + constraints)
#   2. base layer: a minimal Debian bookworm (mmdebstrap, variant essential) with Python and
#      the wheels installed into /opt/portal/venv (scripts/image-rootfs.sh); cached as an OCI
#      layout keyed on the package list, the hook and the wheels
#   3. app layer: the portal's code and its collected static files (umoci)
#   4. the SBOM and the platform-signed release statement (manage.py image_attest)
#   5. var/image/sovereign-portal-TAG.oci.tar, checked with manage.py image_verify
#
# Environment: IMAGE_TAG (default VERSION-gCOMMIT), PLATFORM_SIGNING_KEY_FILE (default the
# quickstart's var/platform-signing-key.pem), DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR;
# IMAGE_PUSH_REPOSITORY (e.g. platform/sovereign-portal) also pushes the image with its SBOM
# and signature to REGISTRY_URL (manage.py image_push).
source "$(dirname "$0")/_common.sh"

IMAGE_NAME=sovereign-portal
SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# Python and the files it needs at run time; python3-venv only builds the venv and is purged.
DEBIAN_PACKAGES="python3,python3-venv,ca-certificates,tzdata"
APP_PATHS=(manage.py portal tenants models_catalog deployments billing audit gateway templates
           static)
OUT="$ROOT/var/image"
CACHE="$OUT/cache"
started=$SECONDS

# mmdebstrap's hooks chroot into the new root filesystem and umoci keeps file owners: root.
[ "$(id -u)" -eq 0 ] || die "make image needs root (mmdebstrap, chroot, umoci): run it with sudo."
for tool in mmdebstrap umoci; do command -v "$tool" >/dev/null || apt_install "$tool"; done
ensure_venv
PY="$VENV/bin/python"

PLATFORM_SIGNING_KEY_FILE="${PLATFORM_SIGNING_KEY_FILE:-$ROOT/var/platform-signing-key.pem}"
[ -f "$PLATFORM_SIGNING_KEY_FILE" ] || die "No platform signing key at $PLATFORM_SIGNING_KEY_FILE:
  set PLATFORM_SIGNING_KEY_FILE to the platform's Ed25519 key (PEM), or create one with
  $PY -c \"from portal.signing import write_new_key; write_new_key('$PLATFORM_SIGNING_KEY_FILE')\""

version="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
dirty=""; git diff --quiet HEAD -- "${APP_PATHS[@]}" 2>/dev/null || dirty="-dirty"
TAG="${IMAGE_TAG:-$version-g${revision:0:12}$dirty}"
mkdir -p "$CACHE"

# --- 1. wheels ----------------------------------------------------------------------------
requirements="$("$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')"
# pip evaluates markers with the Python running it, not the image's: redis needs async-timeout
# on Python < 3.11.3, which bookworm's is (a missing one stops the install in the hook).
requirements+=$'\nasync-timeout'
wheels_key="$( (echo "$requirements"; cat requirements/constraints.txt) | sha256sum | cut -c1-16)"
WHEELS="$CACHE/wheels-$wheels_key"
if [ ! -d "$WHEELS" ]; then
  say "Collecting the pinned wheels"
  rm -rf "$WHEELS.partial" && mkdir -p "$WHEELS.partial"
  echo "$requirements" > "$WHEELS.partial/requirements.txt"
  cp requirements/constraints.txt "$WHEELS.partial/constraints.txt"
  "$PY" -m pip wheel -q -c requirements/constraints.txt -r "$WHEELS.partial/requirements.txt" \
    -w "$WHEELS.partial"
  mv "$WHEELS.partial" "$WHEELS"
fi

# --- 2. base layer ------------------------------------------------------------------------
base_key="$( (echo "$SUITE $DEBIAN_PACKAGES $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR $wheels_key";
              cat scripts/image-rootfs.sh) | sha256sum | cut -c1-16)"
BASE="$CACHE/base-$base_key"
if [ ! -d "$BASE" ]; then
  say "Building the Debian $SUITE base (mmdebstrap)"
  rm -rf "$BASE.partial" "$CACHE/rootfs.tar" "$CACHE/base-bundle"
  WHEELS="$WHEELS" mmdebstrap --quiet --variant=essential --include="$DEBIAN_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook="$ROOT/scripts/image-rootfs.sh \"\$1\"" \
    "$SUITE" "$CACHE/rootfs.tar" \
    "deb $DEBIAN_MIRROR $SUITE main" "deb $DEBIAN_MIRROR $SUITE-updates main" \
    "deb $DEBIAN_SECURITY_MIRROR $SUITE-security main"
  umoci init --layout "$BASE.partial"
  umoci new --image "$BASE.partial:base"
  umoci unpack --image "$BASE.partial:base" "$CACHE/base-bundle" >/dev/null
  tar -xf "$CACHE/rootfs.tar" -C "$CACHE/base-bundle/rootfs"
  umoci repack --image "$BASE.partial:base" \
    --history.created_by "mmdebstrap $SUITE ($DEBIAN_PACKAGES) + pinned wheels" \
    "$CACHE/base-bundle"
  rm -rf "$CACHE/rootfs.tar" "$CACHE/base-bundle"
  mv "$BASE.partial" "$BASE"
fi

# --- 3. app layer -------------------------------------------------------------------------
say "Adding the portal ($TAG)"
BUILD="$OUT/build"
rm -rf "$BUILD" && mkdir -p "$BUILD"
cp -a "$BASE" "$BUILD/layout"
umoci unpack --image "$BUILD/layout:base" "$BUILD/bundle" >/dev/null
rootfs="$BUILD/bundle/rootfs"
git ls-files -z -- "${APP_PATHS[@]}" | tar --null -T - -cf - | tar -xf - -C "$rootfs/opt/portal/app"
chroot "$rootfs" /usr/bin/env -i PATH=/opt/portal/venv/bin:/usr/bin:/bin HOME=/tmp \
  PYTHONDONTWRITEBYTECODE=1 PORTAL_IGNORE_DOTENV=1 DEBUG=true STATIC_MANIFEST=true \
  STATIC_ROOT=/opt/portal/static PORTAL_VAR_DIR=/tmp/portal \
  /opt/portal/venv/bin/python /opt/portal/app/manage.py collectstatic --no-input -v 0
chroot "$rootfs" /opt/portal/venv/bin/python -m compileall -q /opt/portal/app >/dev/null
rm -rf "$rootfs/tmp/portal"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
umoci repack --image "$BUILD/layout:build" --history.created_by "scripts/image.sh: the portal" \
  "$BUILD/bundle"
# Labels: OCI annotations for people and scanners; the rest is how the container runs.
umoci config --image "$BUILD/layout:build" --tag "$TAG" \
  --author "Sovereign Model Portal" --created "$created" \
  --config.user 10001:0 --config.workingdir /opt/portal/app \
  --config.entrypoint /opt/portal/venv/bin/python --config.entrypoint -m \
  --config.entrypoint portal.entrypoint --config.cmd web \
  --config.env PATH=/opt/portal/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env LANG=C.UTF-8 --config.env PYTHONUNBUFFERED=1 \
  --config.env PYTHONDONTWRITEBYTECODE=1 --config.env HOME=/tmp \
  --config.env DJANGO_SETTINGS_MODULE=portal.settings --config.env PORTAL_IGNORE_DOTENV=1 \
  --config.env PORTAL_VAR_DIR=/var/lib/portal --config.env STATIC_ROOT=/opt/portal/static \
  --config.env MODEL_SCAN_WORKDIR=/var/cache/portal/scans --config.env PORT=8000 \
  --config.exposedports 8000/tcp \
  --config.volume /var/lib/portal --config.volume /var/cache/portal --config.volume /tmp \
  --config.label "org.opencontainers.image.title=Sovereign Model Portal" \
  --config.label "org.opencontainers.image.version=$TAG" \
  --config.label "org.opencontainers.image.revision=$revision" \
  --config.label "org.opencontainers.image.created=$created" \
  --manifest.annotation "org.opencontainers.image.version=$TAG" \
  --manifest.annotation "org.opencontainers.image.revision=$revision" \
  --manifest.annotation "org.opencontainers.image.created=$created" \
  --history.created_by "scripts/image.sh: entrypoint and configuration"
umoci rm --image "$BUILD/layout:build"
umoci rm --image "$BUILD/layout:base"
umoci gc --layout "$BUILD/layout"

# --- 4. SBOM and signature ----------------------------------------------------------------
say "Writing the SBOM and signing with the platform key"
# The commands below sign and check files; they decrypt nothing and sign no model, so
# throwaway keys will do for the settings that production requires.
build_fernet_key="$("$PY" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
rm -f "$BUILD/unused-model-signing-key.pem"
"$PY" -c 'import sys; from models_catalog.oms import write_new_key; write_new_key(sys.argv[1])' \
  "$BUILD/unused-model-signing-key.pem"
attest_env=(env PORTAL_IGNORE_DOTENV=1 DEBUG=false SECRET_KEY=image-build-only
            FIELD_ENCRYPTION_KEYS="$build_fernet_key"
            PLATFORM_SIGNING_KEY_FILE="$PLATFORM_SIGNING_KEY_FILE" DATABASE_URL=sqlite://:memory:
            PLATFORM_MODEL_SIGNING_KEY_FILE="$BUILD/unused-model-signing-key.pem")
"${attest_env[@]}" "$PY" manage.py image_attest --layout "$BUILD/layout" --tag "$TAG" \
  --rootfs "$rootfs" --image-name "$IMAGE_NAME" --app-version "$version+${revision:0:12}$dirty"

# --- 5. the archive -----------------------------------------------------------------------
ARCHIVE="$OUT/$IMAGE_NAME-$TAG.oci.tar"
tar -C "$BUILD/layout" --sort=name -cf "$ARCHIVE.partial" oci-layout index.json blobs
mv "$ARCHIVE.partial" "$ARCHIVE"
ln -sfn "$(basename "$ARCHIVE")" "$OUT/$IMAGE_NAME.oci.tar"
"${attest_env[@]}" "$PY" manage.py image_verify "$ARCHIVE"
if [ -n "${IMAGE_PUSH_REPOSITORY:-}" ]; then
  [ -n "${REGISTRY_URL:-}" ] || die "IMAGE_PUSH_REPOSITORY needs REGISTRY_URL (and REGISTRY_USERNAME/REGISTRY_PASSWORD if it asks)."
  "${attest_env[@]}" "$PY" manage.py image_push "$ARCHIVE" --repository "$IMAGE_PUSH_REPOSITORY"
fi
rm -rf "$BUILD"
# Keep only the current wheels and base layer in the cache.
find "$CACHE" -mindepth 1 -maxdepth 1 ! -name "wheels-$wheels_key" ! -name "base-$base_key" \
  -exec rm -rf {} +
say "Built $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1), $((SECONDS - started)) s)"
echo "  Run it:  podman pull oci-archive:$ARCHIVE:$TAG   (roles: web gateway worker beat migrate)"
