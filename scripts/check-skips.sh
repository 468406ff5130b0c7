#!/usr/bin/env bash
# scripts/check-skips.sh LOG [ALLOW]: the skip rule. LOG holds the `SKIP <test>: <reason>` lines
# the tests wrote (tests/common's `skip`, through $MIGCAGE_SKIP_LOG); ALLOW (default
# tests/skips.allow) holds one extended regex per accepted skip. Prints every skip, marks the
# accepted ones, and exits 1 when any skip is not accepted: a test that did not run never
# passes for one that did.
set -euo pipefail
log=$1
allow=${2:-"$(dirname "$0")/../tests/skips.allow"}
[ -s "$log" ] || { echo "skips: none"; exit 0; }
patterns=$(grep -v '^[[:space:]]*#' "$allow" | grep -v '^[[:space:]]*$' || true)
bad=0 total=0
while IFS= read -r line; do
  total=$((total + 1))
  if [ -n "$patterns" ] && printf '%s\n' "$line" | grep -qE -f <(printf '%s\n' "$patterns"); then
    echo "skip (allowed): $line"
  else
    echo "skip (NOT ALLOWED): $line"
    bad=$((bad + 1))
  fi
done < <(sort "$log" | uniq)
echo "skips: $total distinct, $bad not on $(basename "$allow")"
if ((bad)); then
  echo "skips: FAIL: make these tests run here (scripts/deps.sh, root), or add an entry with its reason to tests/skips.allow" >&2
  exit 1
fi
