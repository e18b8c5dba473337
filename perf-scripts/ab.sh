#!/usr/bin/env bash
# ab.sh [-r ROUNDS] OUT_DIR BASE_JAR NEW_JAR [JMH ARGS...]: a tuning record, before and after in one run.
#
# Runs the same JMH selection (e.g. `InflightOverhead -p ring=SPLIT -p batch=32`) from two builds of
# benchmarks.jar, alternating BASE, NEW, BASE, NEW... for ROUNDS rounds (default 3), so drift of this
# noisy machine (other tenants, thermal, the JIT's luck) lands on both sides alike. Each run keeps
# its JMH JSON and log in OUT_DIR; the summary (summary.md, also printed) gives per benchmark and
# parameter set the mean of the per-round scores on each side, the per-round spread (min..max),
# and NEW/BASE. A ratio is "clear" when every NEW round beats (or loses to) every BASE round.
#
# This machine's two vCPUs hand cache lines over at one of two speeds, 3-4x apart; the speed holds
# for a whole JMH fork but changes between forks (seen in every suite: vring and the peers jump
# alike, and a peer run as a "control" sits in a fork of its own, so dividing by it does not help).
# The summary therefore also compares base and new within each speed mode (modes() below). Use
# enough rounds (-r 6 or more) that both sides land in a mode more than once.
#
# Threads are pinned by the benchmarks themselves (Affinity: producer CPU 0, consumer CPU 1).
# Build the two jars from the two commits first, e.g.:
#   git worktree add /tmp/base BASE && (cd /tmp/base && ./mvnw -o -q package -DskipTests -pl jmh -am)
set -euo pipefail
rounds=3
if [[ ${1:-} == -r ]]; then rounds=$2; shift 2; fi
if [[ $# -lt 3 ]]; then
    echo "usage: $0 [-r ROUNDS] OUT_DIR BASE_JAR NEW_JAR [JMH ARGS...]" >&2
    exit 2
fi
out=$1 base=$2 new=$3
shift 3
for jar in "$base" "$new"; do
    [[ -f $jar ]] || { echo "ab.sh: $jar not found" >&2; exit 1; }
done
java=${JAVA:-}
if [[ -z $java ]]; then
    for candidate in "${JAVA_HOME:-}/bin/java" /usr/lib/jvm/temurin-25-jdk-amd64/bin/java "$(command -v java)"; do
        if [[ -x $candidate ]] && "$candidate" -version 2>&1 | grep -qE 'version "(2[5-9]|[3-9][0-9])'; then
            java=$candidate
            break
        fi
    done
fi
[[ -n $java ]] || { echo "ab.sh: no JDK 25+ found (set JAVA)" >&2; exit 1; }
mkdir -p "$out"
{
    echo "ab.sh -r $rounds $out $base $new $*"
    echo "base: $base ($(sha256sum "$base" | cut -c1-12)); new: $new ($(sha256sum "$new" | cut -c1-12))"
    echo "java: $("$java" -version 2>&1 | head -1); cpus: $(nproc)"
} > "$out/command.txt"
flags=(--enable-native-access=ALL-UNNAMED --add-exports java.base/jdk.internal.misc=ALL-UNNAMED --sun-misc-unsafe-memory-access=allow)
for ((round = 1; round <= rounds; round++)); do
    for side in base new; do
        jar=$base
        [[ $side == new ]] && jar=$new
        echo "ab.sh: round $round/$rounds, $side ($jar)"
        "$java" "${flags[@]}" -jar "$jar" "$@" -rf json -rff "$out/$side-$round.json" > "$out/$side-$round.log" 2>&1 \
            || { echo "ab.sh: JMH failed, see $out/$side-$round.log" >&2; exit 1; }
        grep -E '^Benchmark|transfers|:p0.50|·p0.50|^[A-Za-z]+\.[a-zA-Z]+ ' "$out/$side-$round.log" | tail -6 || true
    done
done
python3 - "$out" "$rounds" <<'PY' | tee "$out/summary.md"
import json, math, statistics, sys

out, rounds = sys.argv[1], int(sys.argv[2])

def figures(path):
    res = {}
    for r in json.load(open(path)):
        name = r["benchmark"].replace("io.vring.jmh.", "")
        params = ",".join(f"{k}={v}" for k, v in sorted((r.get("params") or {}).items()))
        key = name + (f" [{params}]" if params else "")
        pm, sm = r["primaryMetric"], r.get("secondaryMetrics") or {}
        if "transfers" in sm:
            res[key + " transfers"] = (float(sm["transfers"]["score"]), sm["transfers"]["scoreUnit"])
        else:
            res[key] = (float(pm["score"]), pm["scoreUnit"])
    return res

sides = {s: [figures(f"{out}/{s}-{i}.json") for i in range(1, rounds + 1)] for s in ("base", "new")}

def runs(key):
    """The figure's score in every round of each side (rounds that lack it left out)."""
    return tuple([run[key][0] for run in sides[s] if key in run] for s in ("base", "new"))

def unit(key):
    return sides["base"][0][key][1]

def verdict(key, b, n):
    """new/base of the means, and "better"/"worse" when every run of one side beats every run of the other."""
    ratio = statistics.mean(n) / statistics.mean(b)
    higher_better = "ops" in unit(key) or "/s" in unit(key)
    clear = (min(n) > max(b)) if ratio > 1 else (max(n) < min(b))
    return ratio, ("better" if (ratio > 1) == higher_better else "worse") if clear else "within the spread"

def table():
    print("All runs")
    print()
    print(f"| benchmark | base mean (min..max) | new mean (min..max) | unit | new / base | clear |")
    print("|---|---:|---:|---|---:|---|")
    for key in sides["base"][0]:
        b, n = runs(key)
        if b and n:
            ratio, clear = verdict(key, b, n)
            print(f"| {key} | {statistics.mean(b):.4g} ({min(b):.3g}..{max(b):.3g}) | {statistics.mean(n):.4g} "
                  f"({min(n):.3g}..{max(n):.3g}) | {unit(key)} | {ratio:.3f} | {clear} |")
    print()

def split(values):
    """Two speed modes, or one: the cut that leaves the least spread (of log scores) inside each."""
    logs = sorted(math.log(v) for v in values if v > 0)
    if len(logs) < 2 or logs[-1] - logs[0] < math.log(1.8):
        return None
    best, cut = None, None
    for i in range(1, len(logs)):
        lo, hi = logs[:i], logs[i:]
        spread = sum((x - statistics.mean(lo)) ** 2 for x in lo) + sum((x - statistics.mean(hi)) ** 2 for x in hi)
        if best is None or spread < best:
            best, cut = spread, math.exp((logs[i - 1] + logs[i]) / 2)
    return cut

def modes():
    """Per figure, base and new compared within each speed mode of the machine.

    The two vCPUs of this machine kind hand cache lines over at one of two speeds, 3-4x apart, and
    the speed holds for a whole JMH fork (its iterations agree) but changes between forks. Pooling
    the two modes makes a mean meaningless, so when a figure's scores (both sides) span more than
    1.8x they are split in two at the cut that leaves the least spread inside each group, and each
    group is compared on its own (n = how many runs of each side landed in it). A cut that falls
    exactly between base and new is the change itself, not a mode, and is not made. "clear" as above.
    """
    print("Within each speed mode (a figure's runs split in two when they span over 1.8x)")
    print()
    print("| benchmark | mode | base mean (n) | new mean (n) | new / base | clear |")
    print("|---|---|---:|---:|---:|---|")
    for key in sides["base"][0]:
        b, n = runs(key)
        if not b or not n:
            continue
        cut = split(b + n)
        if cut is not None and (max(b) < cut <= min(n) or max(n) < cut <= min(b)):
            cut = None  # the cut falls between the two sides: that is the change itself, not a mode
        groups = [("one", lambda v: True)] if cut is None else [
            ("slow", lambda v, c=cut: v < c), ("fast", lambda v, c=cut: v >= c)]
        for mode, member in groups:
            bm = [v for v in b if member(v)]
            nm = [v for v in n if member(v)]
            bs = f"{statistics.mean(bm):.4g} ({len(bm)})" if bm else "- (0)"
            ns = f"{statistics.mean(nm):.4g} ({len(nm)})" if nm else "- (0)"
            if bm and nm:
                ratio, clear = verdict(key, bm, nm)
                print(f"| {key} | {mode} | {bs} | {ns} | {ratio:.3f} | {clear} |")
            else:
                print(f"| {key} | {mode} | {bs} | {ns} | - | - |")
    print()

table()
modes()
PY
