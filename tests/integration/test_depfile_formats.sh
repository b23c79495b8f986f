#!/usr/bin/env bash
# The .d renderer against the real compilers, over a matrix of options
# (depfile_formats.sh does the work; this turns its summary into one check).
. "$(dirname "$0")/lib.sh"
out=$(bash "$(dirname "$0")/depfile_formats.sh" 2>&1); s=$?
last=$(printf '%s\n' "$out" | tail -1)
if [ $s = 0 ] && [[ "$last" =~ ^[0-9]+\ passed,\ 0\ failed$ ]]; then
  ok "renderer matches gcc and clang: $last"
else
  printf '%s\n' "$out" | grep -iE 'fail|mismatch|differ' | head -20 | sed 's/^/# /'
  not_ok "renderer vs compilers: $last"
fi
exit 0
