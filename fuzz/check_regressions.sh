#!/usr/bin/env bash
# Runs every saved reproducer under fuzz/regressions/TARGET/ once through its target
# (all targets, or the ones named). Exits non-zero if any still crashes.
#
#   fuzz/check_regressions.sh [TARGET...]
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=($(cd "$here/fuzz_targets" && ls | sed 's/\.rs$//'))
fi
if [ -z "${BERTH_FUZZ_TMP:-}" ]; then
    BERTH_FUZZ_TMP=$(mktemp -d "${TMPDIR:-/tmp}/berth-fuzz.XXXXXX")
    trap 'rm -rf "$BERTH_FUZZ_TMP"' EXIT
fi
export BERTH_FUZZ_TMP
failed=0
for t in "${targets[@]}"; do
    dir="$here/regressions/$t"
    [ -d "$dir" ] || continue
    for f in "$dir"/*; do
        [ -f "$f" ] || continue
        case "$f" in *.md|*.txt) continue ;; esac
        if cargo +nightly fuzz run -a -s "${FUZZ_SANITIZER:-none}" "$t" "$f" -- -runs=1 >"$BERTH_FUZZ_TMP/log" 2>&1; then
            echo "fixed:   $t ${f#$here/}"
        else
            echo "CRASHES: $t ${f#$here/}"
            grep -m3 -E "panicked at|INVARIANT" "$BERTH_FUZZ_TMP/log" | sed 's/^/         /'
            failed=1
        fi
    done
done
exit $failed
