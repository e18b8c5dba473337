package io.vring.engine.inflight;

import io.vring.engine.memory.SharedMemory;
import org.junit.jupiter.api.Test;

import java.lang.management.ManagementFactory;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The calls a device queue makes per request (mark at pop, batch/clear/used bookkeeping at publish)
 * allocate nothing after warm-up; only recovery does.
 */
class InflightAllocationTest {
    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    private static final int Q = 256;
    private static final int BATCH = 8;
    private static final int WARM_UP = 200_000;
    private static final int MEASURED = 200_000;

    private static long allocated() {
        return THREADS.getCurrentThreadAllocatedBytes();
    }

    /**
     * Bytes {@code work} allocates in the steady state: the smallest figure of up to three
     * consecutive runs after the warm-up (the first that is 0 ends the search). A per-request
     * allocation shows in every run; what a later run forgives is a one-time event such as the JIT
     * replacing the loop's code mid-run, seen once under load in CI, which is not steady state.
     */
    private static long steadyStateAllocation(Runnable work) {
        long least = Long.MAX_VALUE;
        for (int attempt = 0; attempt < 3 && least > 0; attempt++) {
            long overhead = overhead();
            long before = allocated();
            work.run();
            least = Math.min(least, Math.max(0, allocated() - before - overhead));
        }
        return least;
    }

    private static long overhead() {
        long min = Long.MAX_VALUE;
        for (int i = 0; i < 10; i++) {
            long a = allocated();
            min = Math.min(min, allocated() - a);
        }
        return min;
    }

    @Test
    void splitMarkBatchClearAndUsedIdxAllocateNothingAfterWarmUp() {
        try (SharedMemory m = SharedMemory.create("split-inflight-alloc", SplitInflightLayout.regionSize(1, Q))) {
            SplitInflightQueue q = SplitInflightQueue.of(m.segment(), 0, Q);
            q.initialize();
            long[] state = new long[2];
            int[] heads = new int[BATCH];
            splitRequests(q, state, heads, WARM_UP);
            assertEquals(0, steadyStateAllocation(() -> splitRequests(q, state, heads, MEASURED)),
                    "bytes allocated in " + MEASURED + " requests");
        }
    }

    /** {@code heads}: the caller's scratch for one batch, so the loop itself allocates nothing. */
    private static void splitRequests(SplitInflightQueue q, long[] state, int[] heads, int count) {
        for (int done = 0; done < count; done += BATCH) {
            int first = (int) (state[0] % Q);
            for (int i = 0; i < BATCH; i++) {
                q.markInflight((first + i) % Q, state[1]++);
            }
            for (int i = 0; i < BATCH; i++) {
                heads[i] = (first + BATCH - 1 - i) % Q;
            }
            q.linkBatch(heads, BATCH);
            for (int i = BATCH - 1; i >= 0; i--) {
                q.clearInflight((first + i) % Q);
            }
            state[0] += BATCH;
            q.setUsedIdx((int) state[0]);
        }
    }

    @Test
    void packedFetchReleaseClearAndCommitAllocateNothingAfterWarmUp() {
        try (SharedMemory m = SharedMemory.create("packed-inflight-alloc", PackedInflightLayout.regionSize(1, Q))) {
            PackedInflightQueue q = PackedInflightQueue.of(m.segment(), 0, Q);
            q.initialize();
            int[] entries = new int[BATCH];
            long[] state = new long[2];
            packedRequests(q, entries, state, WARM_UP);
            assertEquals(0, steadyStateAllocation(() -> packedRequests(q, entries, state, MEASURED)),
                    "bytes allocated in " + MEASURED + " requests");
        }
    }

    private static void packedRequests(PackedInflightQueue q, int[] entries, long[] state, int count) {
        for (int done = 0; done < count; done += BATCH) {
            for (int i = 0; i < BATCH; i++) {
                entries[i] = q.beginChain(state[1]++);
                q.addDescriptor(0x1000, 512, i, 0x81, false);
                q.addDescriptor(0x2000, 1, i, 0x82, true);
            }
            for (int i = BATCH - 1; i >= 0; i--) {
                q.releaseChain(entries[i]);
            }
            state[0] += 2L * BATCH;
            q.setUsedPosition((int) (state[0] % Q), (int) ((state[0] / Q) & 1) ^ 1);
            for (int entry : entries) {
                q.clearInflight(entry);
            }
            q.commitBatch();
        }
    }
}
