#!/usr/bin/env bash
# Builds environment images: a thin wrapper, kept for older callers, around the builder of
# src/images/ (`node dist/src/main.js images`, what `npm run images` runs).
#
#   scripts/build-image.sh [IMAGE_DIR] [NAME...]
#
# IMAGE_DIR defaults to the program's own default (src/config/config.ts); NAME to every configured
# image (IMAGES / IMAGES_FILE, else debian-bookworm and debian-bookworm-services). Needs root to build,
# and the project built (npm ci builds it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -ge 1 ]]; then
  export IMAGE_DIR="$1"
  shift
fi
if [[ ! -f "$root/dist/src/main.js" ]]; then
  echo "build-image: $root/dist/src/main.js is missing: build the project first (npm ci, or npm run build)" >&2
  exit 2
fi
exec "${NODE:-node}" "$root/dist/src/main.js" images "$@"
