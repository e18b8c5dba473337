package io.vring.backends.crash;

import java.util.BitSet;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.Map;

/**
 * The front-end's account of every request: which completed, how often, with what answer, and for
 * the requests in flight when a back-end was killed, what the next one did with them. The verdict
 * is "every request completed to the driver exactly once with the right result".
 */
final class CrashLedger {
    /** What one crash point's trials did. */
    static final class PointStats {
        int trials;
        int reached;
        long inFlightAtKill;
        long resubmitted;
        long reExecuted;
        long completedAfter;
    }

    private final BitSet completed = new BitSet();
    private final Map<Long, CrashPoint> inFlightAtCrash = new HashMap<>();
    private final Map<CrashPoint, PointStats> points = new EnumMap<>(CrashPoint.class);
    private long lowestPending;
    private long completions;
    private long outOfOrder;
    private long duplicated;
    private long wrong;
    private long reExecuted;
    private long lost;
    private String firstProblem;

    /** A trial's back-end died at {@code point} (or the point was not reached and the front-end killed it). */
    void crashed(CrashPoint point, boolean reached, long[] inFlight, int count) {
        PointStats s = points.computeIfAbsent(point, p -> new PointStats());
        s.trials++;
        if (reached) {
            s.reached++;
        }
        s.inFlightAtKill += count;
        for (int i = 0; i < count; i++) {
            inFlightAtCrash.put(inFlight[i], point);
        }
    }

    /**
     * Request {@code expectedSeq} came back used. {@code seq}, {@code result}, {@code executions} and
     * {@code resubmittedFrom} are what its response says.
     */
    void completed(long expectedSeq, long seq, long result, int executions, int resubmittedFrom) {
        completions++;
        if (seq != expectedSeq || result != CrashRequest.result(expectedSeq)) {
            wrong++;
            problem("request " + expectedSeq + " completed with seq " + seq + " and result 0x" + Long.toHexString(result)
                    + " (expected 0x" + Long.toHexString(CrashRequest.result(expectedSeq)) + ")");
        }
        if (completed.get((int) expectedSeq)) {
            duplicated++;
            problem("request " + expectedSeq + " completed twice");
            return;
        }
        if (expectedSeq != lowestPending) {
            outOfOrder++;
        }
        completed.set((int) expectedSeq);
        while (completed.get((int) lowestPending)) {
            lowestPending++;
        }
        if (executions > 1) {
            reExecuted++;
        }
        CrashPoint point = inFlightAtCrash.remove(expectedSeq);
        if (point != null) {
            PointStats s = points.get(point);
            s.completedAfter++;
            if (resubmittedFrom != 0) {
                s.resubmitted++;
            }
            if (executions > 1) {
                s.reExecuted++;
            }
        }
    }

    /** The driver saw a used entry it had no request for (its queue broke on it). */
    void usedEntryNotInFlight(String reason) {
        duplicated++;
        problem("used entry for a head the driver did not have in flight: " + reason);
    }

    /** At the end: requests submitted (0..submitted-1) that never completed are lost. */
    void finish(long submitted) {
        for (long seq = 0; seq < submitted; seq++) {
            if (!completed.get((int) seq)) {
                lost++;
                if (lost <= 3) {
                    problem("request " + seq + " never completed");
                }
            }
        }
    }

    private void problem(String what) {
        if (firstProblem == null) {
            firstProblem = what;
        }
    }

    Map<CrashPoint, PointStats> points() {
        return points;
    }

    long completions() {
        return completions;
    }

    long outOfOrder() {
        return outOfOrder;
    }

    long lost() {
        return lost;
    }

    /** Completed twice, a used entry for a head not in flight, or a wrong or stale answer. */
    long duplicated() {
        return duplicated + wrong;
    }

    long wrong() {
        return wrong;
    }

    long reExecuted() {
        return reExecuted;
    }

    String firstProblem() {
        return firstProblem;
    }
}
