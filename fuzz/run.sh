#!/usr/bin/env bash
# Runs one berth fuzz target for a while, starting from freshly generated seeds.
#
#   fuzz/run.sh TARGET [SECONDS] [libFuzzer args...]
#
# TARGET: load_archive | unpack_layer | cp_extract | image_json | reference | changes | registry_challenge | dns_query
#         | dockerfile | dockerignore
# SECONDS: -max_total_time (default 60)
# Environment:
#   FUZZ_SANITIZER   cargo-fuzz sanitizer (default none: berth has no unsafe code; use
#                    "address" to also check the C and unsafe code of dependencies)
#   FUZZ_JOBS        libFuzzer -fork=N worker processes (default: one process)
#   BERTH_FUZZ_TMP   where targets make their scratch dirs (default: a fresh dir under
#                    /dev/shm, removed on exit)
#   BERTH_FUZZ_VERBOSE=1    load_archive/unpack_layer print each input's result
#   BERTH_FUZZ_SKIP_KNOWN=1 skip inputs that hit already reported bugs (see README)
# The unpack_layer, load_archive and cp_extract targets need root (chown, mknod, trusted.* xattrs).
# Corpus: fuzz/corpus/TARGET (gitignored); crashes: fuzz/artifacts/TARGET (gitignored).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 1 ]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
target=$1
secs=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))

if [ ! -f "$here/fuzz_targets/$target.rs" ]; then
    echo "run.sh: no target $target (have: $(cd "$here/fuzz_targets" && ls | sed 's/\.rs$//' | tr '\n' ' '))" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo +nightly install cargo-fuzz --locked
fi

python3 "$here/gen_seeds.py" "$here/corpus"

if [ -z "${BERTH_FUZZ_TMP:-}" ]; then
    parent=/dev/shm
    [ -d "$parent" ] && [ -w "$parent" ] || parent=${TMPDIR:-/tmp}
    BERTH_FUZZ_TMP=$(mktemp -d "$parent/berth-fuzz.XXXXXX")
    trap 'rm -rf "$BERTH_FUZZ_TMP"' EXIT
fi
export BERTH_FUZZ_TMP
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

args=(-max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1)
[ -f "$here/dicts/$target.dict" ] && args+=(-dict="$here/dicts/$target.dict")
[ -n "${FUZZ_JOBS:-}" ] && args+=(-fork="$FUZZ_JOBS")
# Whole archives are slow to mutate: cap generated inputs at 64 KiB (the synthetic seeds are
# 1-30 KiB; the two fixture archives are read truncated). Pass -max_len=N to override.
case "$target" in
    load_archive) case " $* " in *" -max_len="*) ;; *) args+=(-max_len=65536) ;; esac ;;
esac

cd "$here/.."
exec_rc=0
cargo +nightly fuzz run -a -s "${FUZZ_SANITIZER:-none}" "$target" "fuzz/corpus/$target" -- "${args[@]}" "$@" || exec_rc=$?
exit $exec_rc
