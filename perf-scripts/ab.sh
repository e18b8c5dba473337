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
# -c CONTROL (a regex on benchmark names, e.g. 'jctools'): include a peer in the selection and give it
# here; a second table then compares each figure divided by the control's figure from the same JMH
# run (matched on shared parameters such as batch). This machine's two vCPUs sometimes run 3-4x
# faster cross-core hand-overs for minutes at a time (seen in every suite: both sides and the peers
# jump together), so a raw A/B can flip on that alone; the normalized ratio does not.
#
# Threads are pinned by the benchmarks themselves (Affinity: producer CPU 0, consumer CPU 1).
# Build the two jars from the two commits first, e.g.:
#   git worktree add /tmp/base BASE && (cd /tmp/base && ./mvnw -o -q package -DskipTests -pl jmh -am)
set -euo pipefail
rounds=3
control=
while [[ ${1:-} == -r || ${1:-} == -c ]]; do
    if [[ $1 == -r ]]; then rounds=$2; else control=$2; fi
    shift 2
done
if [[ $# -lt 3 ]]; then
    echo "usage: $0 [-r ROUNDS] [-c CONTROL_REGEX] OUT_DIR BASE_JAR NEW_JAR [JMH ARGS...]" >&2
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
python3 - "$out" "$rounds" "$control" <<'PY' | tee "$out/summary.md"
import json, re, statistics, sys

out, rounds, control = sys.argv[1], int(sys.argv[2]), sys.argv[3]
params_of = {}

def figures(path):
    res = {}
    for r in json.load(open(path)):
        name = r["benchmark"].replace("io.vring.jmh.", "")
        params = ",".join(f"{k}={v}" for k, v in sorted((r.get("params") or {}).items()))
        key = name + (f" [{params}]" if params else "")
        params_of[key + " transfers"] = params_of[key] = (name, r.get("params") or {})
        pm, sm = r["primaryMetric"], r.get("secondaryMetrics") or {}
        if "transfers" in sm:
            res[key + " transfers"] = (float(sm["transfers"]["score"]), sm["transfers"]["scoreUnit"])
        else:
            res[key] = (float(pm["score"]), pm["scoreUnit"])
    return res

sides = {s: [figures(f"{out}/{s}-{i}.json") for i in range(1, rounds + 1)] for s in ("base", "new")}

def control_of(key, run):
    """The control figure of the same run whose shared parameters equal key's, or None."""
    name, params = params_of[key]
    for other in run:
        oname, oparams = params_of[other]
        if re.search(control, oname) and all(params[k] == v for k, v in oparams.items() if k in params):
            return run[other][0]
    return None

def table(title, value, unit_of, skip_control):
    print(title)
    print()
    print(f"| benchmark | base mean (min..max) | new mean (min..max) | unit | new / base | clear |")
    print("|---|---:|---:|---|---:|---|")
    for key in sides["base"][0]:
        if skip_control and re.search(control, params_of[key][0]):
            continue
        b = [v for v in (value(run, key) for run in sides["base"]) if v is not None]
        n = [v for v in (value(run, key) for run in sides["new"]) if v is not None]
        if b and n:
            row(key, b, n, unit_of(key))
    print()

def row(key, b, n, unit):
    ratio = statistics.mean(n) / statistics.mean(b)
    higher_better = "ops" in unit or "/s" in unit
    clear = (min(n) > max(b)) if ratio > 1 else (max(n) < min(b))
    verdict = ("better" if (ratio > 1) == higher_better else "worse") if clear else "within the spread"
    print(f"| {key} | {statistics.mean(b):.4g} ({min(b):.3g}..{max(b):.3g}) | {statistics.mean(n):.4g} "
          f"({min(n):.3g}..{max(n):.3g}) | {unit} | {ratio:.3f} | {verdict} |")

def raw(run, key):
    return run[key][0] if key in run else None

def normalized(run, key):
    c = control_of(key, run) if key in run else None
    return run[key][0] / c if c else None

unit = lambda key: sides["base"][0][key][1]
table("Raw figures", raw, unit, False)
if control:
    table(f"Each figure divided by the control /{control}/ of the same run", normalized,
          lambda key: unit(key) + " per control", True)
PY
