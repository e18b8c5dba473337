#!/usr/bin/env python3
"""profile-summary.py PROFILE_DIR: where the CPU time of each profiled benchmark went, by thread role.

Reads the async-profiler text summaries that `vring bench --profile` writes
(PROFILE_DIR/<benchmark>-<params>/summary-cpu.txt) and prints, per benchmark, a markdown table of
samples split by the benchmark method that ran them (the thread's role: driver / device, producer /
consumer, ...) and by what the sampled top frame was doing:

  fence          VarHandle.fullFence (a locked instruction: waits for the store buffer to drain)
  payload copy   arraycopy / copyMemory (the 64-byte payloads moving between the CPUs' caches)
  index read     acquire loads of a 16-bit shared index or flags word (a line the other CPU wrote)
  ring read      plain loads of ring entries and descriptors
  ring write     stores into the shared ring
  other          everything else (bounds checks, the queue's own logic, JMH's loop)

With no hardware counters in a VM a sample cannot say "cache miss"; the top frame of a load that
waits on a line the other CPU owns is the load itself, so "index read" and "ring read" are where
cross-CPU line transfers show up.
"""
import os
import re
import sys

CATEGORIES = ["fence", "payload copy", "index read", "ring read", "ring write", "other"]


def category(top):
    if "fullFence" in top or "storeLoad" in top:
        return "fence"
    if "arraycopy" in top or "copyMemory" in top or "SegmentBulkOperations.copy" in top:
        return "payload copy"
    if "Acquire" in top or "Volatile" in top or "getOpaque" in top:
        return "index read"
    if re.search(r"Unsafe\.get\w*Unaligned|Unsafe\.get(Short|Int|Long|Byte)\b", top):
        return "ring read"
    if re.search(r"Unsafe\.put|Release|setOpaque", top):
        return "ring write"
    return "other"


def role(frames):
    """The benchmark method whose JMH stub is on the stack, e.g. 'driver' for driver_thrpt_jmhStub."""
    for f in frames:
        m = re.search(r"\.(\w+?)_(thrpt|avgt|sample|ss|all)_jmhStub", f)
        if m:
            return m.group(1)
    return "(not a benchmark thread)"


def summarize(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    counts, total = {}, 0
    for block in text.split("\n--- ")[1:]:
        m = re.match(r"(\d+) ns \(([\d.]+)%\), (\d+) samples", block)
        frames = re.findall(r"\[\s*\d+\] (.+)", block)
        if not m or not frames:
            continue
        n = int(m.group(3))
        key = (role(frames), category(frames[0]))
        counts[key] = counts.get(key, 0) + n
        total += n
    return counts, total


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        sys.exit(2)
    root = sys.argv[1]
    found = False
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "summary-cpu.txt")
        if not os.path.isfile(path):
            continue
        found = True
        counts, total = summarize(path)
        if total == 0:
            continue
        roles = sorted({r for r, _ in counts}, key=lambda r: -sum(v for (rr, _), v in counts.items() if rr == r))
        print(f"### {name} ({total} samples, % of all)")
        print()
        print("| thread | " + " | ".join(CATEGORIES) + " | all |")
        print("|---|" + "---:|" * (len(CATEGORIES) + 1))
        for r in roles:
            cells = [counts.get((r, c), 0) * 100.0 / total for c in CATEGORIES]
            if sum(cells) < 0.5:
                continue  # JMH's control threads and the JIT: a few stray samples
            print(f"| {r} | " + " | ".join(f"{v:.1f}" for v in cells) + f" | {sum(cells):.1f} |")
        print()
    if not found:
        print(f"profile-summary: no */summary-cpu.txt under {root} (run ./vring bench --profile)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
