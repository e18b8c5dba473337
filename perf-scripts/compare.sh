#!/usr/bin/env bash
# compare.sh OLD NEW: the change between two `vring bench` result folders (their jmh.json).
#
# For every benchmark/parameter set present in both runs, shows OLD score ± error, NEW score ± error
# and the change in percent. A change is flagged (!!) when |NEW - OLD| exceeds the combined JMH error
# (errOLD + errNEW, each a 99.9% half-width); anything else is within the noise. For group throughput
# benchmarks the figure compared is the `transfers` counter (elements/s), for sample-time benchmarks
# the mean and p50. Needs python3 (jq is not assumed).
set -euo pipefail
if [[ $# -ne 2 ]]; then
    echo "usage: $0 OLD_RESULTS_DIR NEW_RESULTS_DIR" >&2
    exit 2
fi
for d in "$1" "$2"; do
    [[ -f $d/jmh.json ]] || { echo "compare.sh: $d/jmh.json not found" >&2; exit 1; }
done
exec python3 - "$1/jmh.json" "$2/jmh.json" <<'PY'
import json, math, sys

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")

def figures(path):
    out = {}
    for r in json.load(open(path)):
        name = r["benchmark"].replace("io.vring.jmh.", "")
        params = ",".join(f"{k}={v}" for k, v in sorted((r.get("params") or {}).items()))
        key = name + (f" [{params}]" if params else "")
        pm, sm = r["primaryMetric"], r.get("secondaryMetrics") or {}
        if "transfers" in sm:
            t = sm["transfers"]
            out[key + " transfers"] = (num(t["score"]), num(t["scoreError"]), t["scoreUnit"])
        else:
            out[key] = (num(pm["score"]), num(pm["scoreError"]), pm["scoreUnit"])
            p50 = (pm.get("scorePercentiles") or {}).get("50.0")
            if p50 is not None:
                out[key + " p50"] = (num(p50), float("nan"), pm["scoreUnit"])
        if "gc.alloc.rate.norm" in sm:
            g = sm["gc.alloc.rate.norm"]
            out[key + " B/op"] = (num(g["score"]), num(g["scoreError"]), "B/op")
    return out

old, new = figures(sys.argv[1]), figures(sys.argv[2])
def fmt(s, e):
    err = "" if math.isnan(e) else f" ± {e:.4g}"
    return f"{s:.4g}{err}"

rows = []
for key in old:
    if key not in new:
        continue
    (so, eo, unit), (sn, en, _) = old[key], new[key]
    change = (sn - so) / so * 100 if so else float("nan")
    noise = (0 if math.isnan(eo) else eo) + (0 if math.isnan(en) else en)
    known = not (math.isnan(eo) or math.isnan(en))
    flag = "!!" if known and abs(sn - so) > noise else ("?" if not known else "")
    rows.append((key, fmt(so, eo), fmt(sn, en), unit, f"{change:+.1f}%", flag))

w = [max(len(r[i]) for r in rows + [("benchmark", "OLD", "NEW", "unit", "change", "flag")]) for i in range(6)]
header = ("benchmark", "OLD", "NEW", "unit", "change", "flag")
print("  ".join(h.ljust(w[i]) for i, h in enumerate(header)))
for r in rows:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
only_old = sorted(set(old) - set(new)); only_new = sorted(set(new) - set(old))
if only_old: print(f"\nonly in OLD: {len(only_old)} figures")
if only_new: print(f"only in NEW: {len(only_new)} figures")
print("\n!! = change larger than the combined JMH error (errOLD + errNEW); ? = no error bar (percentile), judge by eye")
PY
