#!/usr/bin/env bash
# Generate the next Prisma migration's SQL offline.
#
#   scripts/db-diff.sh NAME        e.g. scripts/db-diff.sh add_test_attempts
#
# Why not `prisma migrate dev`: Prisma 7's CLI cannot download its schema engine here, so every
# `prisma migrate …` fails. The Prisma 6.19.3 CLI in tools/prisma6 can diff two schemas with its
# JS engine and an in-memory PGlite (see shared/design/PROBES.md). `--from-migrations` does not
# work there, so we diff the schema as of the last migration (kept as
# $MIGRATIONS_DIR/schema.snapshot.prisma, updated by this script) against the current schema.
#
# Writes  $MIGRATIONS_DIR/<UTC YYYYMMDDHHMMSS>_<NAME>/migration.sql  (Prisma's layout) and makes
# sure $MIGRATIONS_DIR/migration_lock.toml exists. Does nothing (exit 0) when there is no change.
#
# Environment (all optional):
#   SCHEMA          schema to migrate to        default: <repo>/prisma/schema.prisma
#   MIGRATIONS_DIR  migrations folder           default: <repo>/prisma/migrations
#   PRISMA6_DIR     the Prisma 6 tools folder   default: <repo>/tools/prisma6 (deps installed
#                   with `npm ci` on first use; its node_modules is git-ignored)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCHEMA="${SCHEMA:-$ROOT/prisma/schema.prisma}"
MIGRATIONS_DIR="${MIGRATIONS_DIR:-$ROOT/prisma/migrations}"
PRISMA6_DIR="${PRISMA6_DIR:-$ROOT/tools/prisma6}"

die() { echo "db-diff: $*" >&2; exit 1; }
[ -d "$PRISMA6_DIR" ] || die "tools folder not found: $PRISMA6_DIR"
PRISMA6_DIR="$(cd "$PRISMA6_DIR" && pwd)"

[ $# -eq 1 ] || die "usage: scripts/db-diff.sh NAME   (NAME: letters, digits, _ or -, e.g. add_test_attempts)"
NAME="$1"
[[ "$NAME" =~ ^[A-Za-z0-9_-]+$ ]] || die "invalid migration name '$NAME': use letters, digits, _ or -"
NAME="$(printf '%s' "$NAME" | tr 'A-Z-' 'a-z_')"
[ -f "$SCHEMA" ] || die "schema not found: $SCHEMA"

SNAPSHOT="$MIGRATIONS_DIR/schema.snapshot.prisma"
mkdir -p "$MIGRATIONS_DIR"

# An existing migration history without a snapshot cannot be diffed from: refuse rather than emit
# a migration that re-creates every table.
if [ ! -f "$SNAPSHOT" ] && compgen -G "$MIGRATIONS_DIR/*/migration.sql" >/dev/null; then
  die "$MIGRATIONS_DIR has migrations but no schema.snapshot.prisma. Put a copy of the schema as of the last migration there, then run again."
fi

PRISMA="$PRISMA6_DIR/node_modules/.bin/prisma"
if [ ! -x "$PRISMA" ]; then
  echo "db-diff: installing the Prisma 6 CLI into $PRISMA6_DIR (npm ci)…" >&2
  npm ci --prefix "$PRISMA6_DIR" --ignore-scripts --no-audit --no-fund --loglevel=error >&2 \
    || die "npm ci --prefix $PRISMA6_DIR failed"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/db-diff.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Make a Prisma-7 schema acceptable to Prisma 6.19:
# - drop generator blocks: migrate diff does not use them, and Prisma 7-only options
#   (or preview features unknown to 6.19) would fail validation;
# - Prisma 6 requires a datasource `url` (Prisma 7 forbids one): replace any url lines by a dummy
#   one. Nothing connects to it; the diff runs against an in-memory PGlite.
# Removed lines become blank lines (less one per generator, for the added url line) so that line
# numbers in Prisma's error messages match $SCHEMA below the generator and datasource blocks.
to_prisma6() {
  awk '
    /^[[:space:]]*generator[[:space:]]+[A-Za-z0-9_]+[[:space:]]*\{/ { skip = 1; next }
    skip { if ($0 ~ /^[[:space:]]*\}/) skip = 0; print ""; next }
    /^[[:space:]]*datasource[[:space:]]+[A-Za-z0-9_]+[[:space:]]*\{/ { inds = 1; print; next }
    inds && /^[[:space:]]*(url|directUrl|shadowDatabaseUrl)[[:space:]]*=/ { print ""; next }
    inds && /^[[:space:]]*\}/ { print "  url = \"postgresql://db-diff.invalid/unused\""; inds = 0 }
    { print }
  ' "$1" > "$2"
}

to_prisma6 "$SCHEMA" "$WORK/new.prisma"
if [ -f "$SNAPSHOT" ]; then
  to_prisma6 "$SNAPSHOT" "$WORK/old.prisma"
  FROM=(--from-schema-datamodel "$WORK/old.prisma")
else
  FROM=(--from-empty)
fi

# The config loads PGlite and the adapter from tools/prisma6 whatever the working directory.
PKG_JSON="$(node -e 'process.stdout.write(JSON.stringify(require("path").resolve(process.argv[1], "package.json")))' "$PRISMA6_DIR")"
cat > "$WORK/prisma.config.mjs" <<EOF
import { createRequire } from 'node:module';
const require = createRequire($PKG_JSON);
const { PGlite } = require('@electric-sql/pglite');
const { PrismaPGlite } = require('pglite-prisma-adapter');
export default {
  experimental: { adapter: true },
  engine: 'js',
  adapter: async () => new PrismaPGlite(new PGlite()),
};
EOF

set +e
(
  cd "$WORK"
  # Any existing file stops Prisma 6 from looking for (and trying to download) its query engine.
  PRISMA_QUERY_ENGINE_LIBRARY="$PRISMA6_DIR/package.json" \
  PRISMA_HIDE_UPDATE_MESSAGE=1 CHECKPOINT_DISABLE=1 \
    "$PRISMA" migrate diff --config ./prisma.config.mjs "${FROM[@]}" \
      --to-schema-datamodel "$WORK/new.prisma" --script --exit-code \
      > "$WORK/migration.sql" 2> "$WORK/stderr"
)
rc=$?
set -e
case $rc in
  0) echo "db-diff: no difference between $( [ -f "$SNAPSHOT" ] && echo "$SNAPSHOT" || echo 'an empty database') and $SCHEMA; nothing written."
     exit 0 ;;
  2) ;; # differences found
  *) cat "$WORK/stderr" >&2; die "prisma migrate diff failed (exit $rc)" ;;
esac

STAMP="$(date -u +%Y%m%d%H%M%S)"
# Two runs within one second would collide: wait for the next second rather than overwrite.
while compgen -G "$MIGRATIONS_DIR/${STAMP}_*" >/dev/null; do sleep 1; STAMP="$(date -u +%Y%m%d%H%M%S)"; done
DIR="$MIGRATIONS_DIR/${STAMP}_${NAME}"
mkdir -p "$DIR"
cp "$WORK/migration.sql" "$DIR/migration.sql"
cp "$SCHEMA" "$SNAPSHOT"

LOCK="$MIGRATIONS_DIR/migration_lock.toml"
if [ ! -f "$LOCK" ]; then
  cat > "$LOCK" <<'EOF'
# Please do not edit this file manually
# It should be added in your version-control system (e.g., Git)
provider = "postgresql"
EOF
  echo "db-diff: wrote $LOCK"
fi
echo "db-diff: wrote $DIR/migration.sql ($(grep -c . "$DIR/migration.sql") lines)"
echo "db-diff: updated $SNAPSHOT"
