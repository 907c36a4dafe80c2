#!/usr/bin/env bash
# Builds a base root filesystem for the container environment driver.
#
#   scripts/build-image.sh [IMAGE_DIR] [NAME]
#
# IMAGE_DIR defaults to $IMAGE_DIR, else $XDG_CACHE_HOME/test-orchestrator/images, else
# /var/cache/test-orchestrator/images when run as root (a root orchestrator starts sandboxes as an
# unprivileged user, which must be able to reach the image: not under /root), else
# $HOME/.cache/test-orchestrator/images: the same default as the program's (src/config/config.ts).
# NAME defaults to debian-bookworm. The result is IMAGE_DIR/NAME/{rootfs/,image.json}.
#
# Debian bookworm minbase via debootstrap (~1m40s, ~200 MB). The build happens in a temporary
# directory next to the target and is renamed into place at the end, so a half-built image is never
# seen by the driver. Idempotent: exits at once if the image already exists.
# Needs: root (debootstrap), the Debian package `debootstrap`, a Debian mirror (taken from the apt
# sources of this machine, default http://deb.debian.org/debian; override with DEBIAN_MIRROR).
set -euo pipefail
# The image is shared and read by the sandbox user: world-readable whatever umask the orchestrator
# runs with (it runs with 077, and this script inherits it).
umask 022

if [[ -n "${XDG_CACHE_HOME:-}" ]]; then
  default_image_dir="$XDG_CACHE_HOME/test-orchestrator/images"
elif [[ "$(id -u)" == 0 ]]; then
  default_image_dir=/var/cache/test-orchestrator/images
else
  default_image_dir="$HOME/.cache/test-orchestrator/images"
fi
image_dir="${1:-${IMAGE_DIR:-$default_image_dir}}"
name="${2:-debian-bookworm}"
suite="bookworm"
target="$image_dir/$name"

log() { printf '[build-image] %s\n' "$*"; }

case "$name" in
  */* | .* | "") echo "build-image: invalid image name '$name'" >&2; exit 2 ;;
esac

# The host user sandboxes run as when the orchestrator runs as root (SANDBOX_USER's default): a system
# user of its own, so that a sandbox shares its uid with no other program (nobody is often taken).
if [[ "$(id -u)" == 0 ]] && ! id orch-sandbox >/dev/null 2>&1; then
  if command -v useradd >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --user-group orch-sandbox \
      && log "created the system user orch-sandbox (sandboxes run as it)"
  else
    log "useradd not found: sandboxes will run as nobody (65534)"
  fi
fi

if [[ -f "$target/image.json" && -x "$target/rootfs/bin/sh" ]]; then
  log "image '$name' already exists at $target"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "build-image: debootstrap not found; install the Debian package: apt-get install -y debootstrap" >&2
  exit 1
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "build-image: debootstrap needs root" >&2
  exit 1
fi

pick_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  # deb822 sources: the first URIs: line that is not the security archive.
  uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk 'tolower($1)=="uris:" { for (i = 2; i <= NF; i++) print $i }' \
    | grep -v -- '-security' | head -n1 || true)"
  if [[ -z "$uri" ]]; then
    # one-line format: deb [opts] URI suite components
    uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | sed -E 's/\[[^]]*\]//' \
      | awk '$1=="deb" { print $2 }' | grep -v -- '-security' | head -n1 || true)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

mirror="$(pick_mirror)"
# Directories created here are 0755 whatever the umask: the image stays root-owned and read-only
# to the sandbox user, which must be able to traverse every parent.
(umask 022 && mkdir -p "$image_dir")
# One builder per image at a time (two workers may ask for a missing image together).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$image_dir/.lock-$name"
  flock 9
  if [[ -f "$target/image.json" && -x "$target/rootfs/bin/sh" ]]; then
    log "image '$name' was built meanwhile at $target"
    exit 0
  fi
fi
tmp="$(mktemp -d "$image_dir/.build-$name.XXXXXX")"
chmod 0755 "$tmp"
cleanup() { rm -rf --one-file-system "$tmp"; }
trap cleanup EXIT

log "building '$name' ($suite minbase) from $mirror into $tmp"
start=$(date +%s)
debootstrap --variant=minbase "$suite" "$tmp/rootfs" "$mirror" 2>&1 \
  | while IFS= read -r line; do
      case "$line" in
        I:\ Retrieving* | I:\ Validating*) ;; # too chatty: one line per package
        *) log "$line" ;;
      esac
    done
status=${PIPESTATUS[0]}
if [[ "$status" != 0 ]]; then
  echo "build-image: debootstrap failed (exit $status)" >&2
  exit 1
fi

for f in /bin/sh /bin/bash /usr/bin/env /bin/cat /bin/sleep; do
  if [[ ! -e "$tmp/rootfs$f" ]]; then
    echo "build-image: the image lacks $f" >&2
    exit 1
  fi
done

# The sandbox user (not root when the orchestrator runs as root) must reach the image: warn early.
if command -v setpriv >/dev/null 2>&1 \
  && ! setpriv --reuid=65534 --regid=65534 --clear-groups -- /bin/sh -c '[ -x "$1" ]' sh "$tmp" 2>/dev/null; then
  log "WARNING: $image_dir is not reachable by uid 65534 (a parent directory is not world-traversable):"
  log "a root orchestrator cannot use this image; prefer IMAGE_DIR=/var/cache/test-orchestrator/images"
fi

# Bind targets must exist in a read-only root.
mkdir -p "$tmp/rootfs/work" "$tmp/rootfs/tmp" "$tmp/rootfs/proc" "$tmp/rootfs/dev"
chmod 0755 "$tmp/rootfs/work"
chmod 1777 "$tmp/rootfs/tmp"
# Keep the image small: the apt cache is of no use in a read-only root.
rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"* 2>/dev/null || true

debian_version="$(cat "$tmp/rootfs/etc/debian_version" 2>/dev/null || echo unknown)"
cat >"$tmp/image.json" <<EOF
{
  "name": "$name",
  "created": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "distribution": "debian",
  "suite": "$suite",
  "variant": "minbase",
  "debianVersion": "$debian_version",
  "mirror": "$mirror"
}
EOF

if [[ -e "$target" ]]; then
  # A leftover without image.json (an interrupted older build): set it aside, then remove it.
  old="$image_dir/.old-$name.$$"
  mv "$target" "$old"
  rm -rf --one-file-system "$old"
fi
mv -T "$tmp" "$target"
trap - EXIT
log "image '$name' ready at $target (debian $debian_version, $(( $(date +%s) - start ))s, $(du -sh "$target" | cut -f1))"
