#!/usr/bin/env bash
# Renders img/architecture.dot (Graphviz) to img/architecture.png and .svg.
# Installs Graphviz (Debian package) when `dot` is missing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

if ! command -v dot >/dev/null; then
  log "installing Graphviz (Debian package)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; } \
    || die "Graphviz is not installed and could not be installed"
fi
dot -Tpng -Gdpi=110 img/architecture.dot -o img/architecture.png
dot -Tsvg img/architecture.dot -o img/architecture.svg
log "rendered img/architecture.png and img/architecture.svg"
