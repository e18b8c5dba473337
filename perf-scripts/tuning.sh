#!/usr/bin/env bash
# tuning.sh [-r ROUNDS] PATCH SIDE OUT_DIR [JMH ARGS...]: a tuning record from a patch.
#
# Each record in docs/PERFORMANCE.md that switches one technique off (or tries one) is a patch in
# perf-scripts/tuning/. This script builds benchmarks.jar twice from the current commit, once as it
# is and once with PATCH applied (in throw-away worktrees under /tmp, offline Maven), then runs
# ab.sh on the two jars. SIDE says which jar is "base": `base` when the patch is the old state (it
# switches the technique off: new/base is the technique's gain), `new` when the patch is the
# candidate (it tries something: new/base is the candidate's gain).
#
# Example (the cached avail/used index, split ring, batch 32):
#   perf-scripts/tuning.sh -r 6 perf-scripts/tuning/no-cached-index.patch base results/tuning-cached-index \
#       'RingThroughput.ring$' -p ring=SPLIT -p batch=32 -p features=none -f 1 -wi 2 -i 3 -w 1s -r 1s
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
ab=()
if [[ ${1:-} == -r ]]; then
    ab+=("$1" "$2")
    shift 2
fi
if [[ $# -lt 3 || ($2 != base && $2 != new) ]]; then
    echo "usage: $0 [-r ROUNDS] PATCH base|new OUT_DIR [JMH ARGS...]" >&2
    exit 2
fi
patch=$(realpath "$1") side=$2 out=$3
shift 3
commit=$(git -C "$repo" rev-parse --short HEAD)
work=$(mktemp -d /tmp/vring-tuning.XXXXXX)
cleanup() {
    git -C "$repo" worktree remove --force "$work/as-is" 2>/dev/null || true
    git -C "$repo" worktree remove --force "$work/patched" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
build() { # build DIR: benchmarks.jar of the worktree at DIR
    (cd "$1" && ./mvnw -o -q -B -DskipTests package -pl jmh -am) >"$1.build.log" 2>&1 \
        || { echo "tuning.sh: build of $1 failed:" >&2; tail -30 "$1.build.log" >&2; exit 1; }
}
git -C "$repo" worktree add -q --detach "$work/as-is" "$commit"
git -C "$repo" worktree add -q --detach "$work/patched" "$commit"
git -C "$work/patched" apply "$patch"
echo "tuning.sh: building $commit as it is and with $(basename "$patch")"
build "$work/as-is"
build "$work/patched"
mkdir -p "$out"
cp "$work/as-is/jmh/target/benchmarks.jar" "$out/as-is.jar"
cp "$work/patched/jmh/target/benchmarks.jar" "$out/patched.jar"
cp "$patch" "$out/"
echo "commit $commit; patch $(basename "$patch") is the $side side" > "$out/tuning.txt"
if [[ $side == base ]]; then
    "$here/ab.sh" "${ab[@]}" "$out" "$out/patched.jar" "$out/as-is.jar" "$@"
else
    "$here/ab.sh" "${ab[@]}" "$out" "$out/as-is.jar" "$out/patched.jar" "$@"
fi
rm -f "$out/as-is.jar" "$out/patched.jar"
