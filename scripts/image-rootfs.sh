#!/bin/sh
# mmdebstrap customize hook of `make image` (scripts/image.sh): turns the minimal Debian root
# filesystem in "$1" into the portal's base — the pinned wheels from "$WHEELS" installed into
# a virtual environment, pip and the venv tooling removed again, the non-root user added and
# the writable paths prepared. Nothing here compiles: every wheel was built before.
set -eu
root="$1"

cp -a "$WHEELS" "$root/tmp/wheels"
chroot "$root" python3 -m venv /opt/portal/venv
chroot "$root" /opt/portal/venv/bin/python -m pip install -q --no-index --no-cache-dir \
  --no-warn-script-location --find-links /tmp/wheels \
  -c /tmp/wheels/constraints.txt -r /tmp/wheels/requirements.txt
chroot "$root" /opt/portal/venv/bin/python -m pip uninstall -q -y pip setuptools
chroot "$root" dpkg --purge python3-venv python3.11-venv python3-pip-whl \
  python3-setuptools-whl >/dev/null
rm -rf "$root/tmp/wheels"

# The portal runs as uid 10001 with group 0, and every writable path is group-0 writable:
# OpenShift's restricted SCC runs the same image under a random uid that is in group 0.
echo 'portal:x:10001:0:Sovereign Model Portal:/var/lib/portal:/usr/sbin/nologin' >> "$root/etc/passwd"
mkdir -p "$root/var/lib/portal" "$root/var/cache/portal" "$root/opt/portal/app" \
  "$root/opt/portal/static"
chown 10001:0 "$root/var/lib/portal" "$root/var/cache/portal"
chmod 0775 "$root/var/lib/portal" "$root/var/cache/portal"

# Leftovers a read-only container never uses.
rm -rf "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/log/* \
  "$root"/var/cache/ldconfig/aux-cache
