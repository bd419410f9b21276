#!/usr/bin/env bash
# The quick-start demo: diff, sync and verify the example .env files, in a scratch copy so
# the files in examples/ stay as shipped.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cargo build --quiet --manifest-path "$here/../Cargo.toml" -p genesisctl || exit 2
bin="$here/../target/debug/genesisctl"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/.env" "$here/.env.production" "$work/"
cd "$work" || exit 2

step() {
  printf '\n\033[1m$ genesisctl %s\033[0m\n' "$*"
  "$bin" "$@"
  printf '(exit %s)\n' "$?"
}

step env diff --from local:.env --target local:.env.production
step env sync --from local:.env --target local:.env.production
step env verify --platforms local:.env,production=local:.env.production
# The key left over in production was kept (deletions are opt-in): remove it, then parity.
step env sync --from local:.env --target local:.env.production --allow-deletions
step env verify --platforms local:.env,production=local:.env.production
