#!/usr/bin/env bash
# `prisma generate` offline: Prisma 7's CLI wants its schema engine binary, which cannot be downloaded
# here, although generating the client does not use it. Any existing file satisfies the check.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PRISMA_SCHEMA_ENGINE_BINARY="${PRISMA_SCHEMA_ENGINE_BINARY:-$(command -v node)}"
export PRISMA_HIDE_UPDATE_MESSAGE=1 CHECKPOINT_DISABLE=1
exec npx --no-install prisma generate >/dev/null
