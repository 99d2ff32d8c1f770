#!/usr/bin/env bash
# Build stand-ins for the two public images the stack starts from, for a machine that reaches no image registry
# (only Debian's and PyPI's mirrors): a Debian base with Python 3.11 for docker/Dockerfile (instead of
# python:3.11-slim), and a PostgreSQL with the official image's conventions (POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB, PGDATA) for the compose file (instead of postgres:16). Needs root, debootstrap and dockerd.
#
#   docker/make-local-base.sh [BASE_TAG] [POSTGRES_TAG]
#
# The host's CA bundle goes into the base (and PIP_CERT points at it), so that pip inside a build trusts what
# the host trusts: a proxy that re-signs TLS, a private package index.
set -euo pipefail
BASE_TAG=${1:-shiftsweep-local-base:bookworm}
POSTGRES_TAG=${2:-shiftsweep-local-postgres:15}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
HERE=$(cd "$(dirname "$0")" && pwd)

command -v debootstrap >/dev/null || { echo "debootstrap not installed (apt-get install debootstrap)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

start=$(date +%s)
echo "== debootstrap $SUITE (python3, python3-venv) into $work/rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$work/rootfs" "$MIRROR" \
  > "$work/debootstrap.log" || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
chroot "$work/rootfs" ln -sf /usr/bin/python3 /usr/local/bin/python
cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
chroot "$work/rootfs" apt-get clean
rm -rf "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' - "$BASE_TAG" >/dev/null
echo "== $BASE_TAG: $(docker run --rm "$BASE_TAG" python --version), $(( $(date +%s) - start )) s"

start=$(date +%s)
docker build -q -t "$POSTGRES_TAG" --build-arg BASE_IMAGE="$BASE_TAG" -f "$HERE/local/postgres.Dockerfile" "$HERE/local" >/dev/null
echo "== $POSTGRES_TAG: $(docker run --rm "$POSTGRES_TAG" psql --version), $(( $(date +%s) - start )) s"
