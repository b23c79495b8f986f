#!/usr/bin/env bash
# Fails when C sources under src/ use a call that STYLE.md bans.
set -euo pipefail
cd "$(dirname "$0")/.."
hits=$(grep -rnE '\b(sprintf|strcpy|strcat|strtok|atoi|system|popen)\s*\(' src tests --include='*.c' --include='*.h' \
  | grep -vE '\b(snprintf|vsnprintf|asprintf|vasprintf)\s*\(' || true)
if [ -n "$hits" ]; then
  echo "banned calls (see STYLE.md):"
  echo "$hits"
  exit 1
fi
echo "banned-call check: clean"
