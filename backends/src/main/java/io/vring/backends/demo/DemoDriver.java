package io.vring.backends.demo;

import io.vring.engine.DriverQueue;
import org.HdrHistogram.Histogram;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The demo's driver side: keeps the ring full of chains (one readable buffer each, its first 8
 * bytes the sequence number, the rest a pattern), publishes in batches, collects used chains, and
 * records each chain's submit-to-used time. Busy-polls.
 */
final class DemoDriver {
    private final DriverQueue queue;
    private final MemorySegment memory;
    private final DemoRing ring;
    private final long dataGpa;
    private final int[] freeSlots;
    private int freeHead;
    private int freeCount;
    private final int[] slotOfId;
    private final long[] submittedAt;
    private long nextSeq;

    DemoDriver(DriverQueue queue, MemorySegment memory, DemoRing ring) {
        this.queue = queue;
        this.memory = memory;
        this.ring = ring;
        this.dataGpa = ring.placement().dataGpa(); // memory is presented at GPA 0, so a GPA is a segment offset
        this.freeSlots = new int[ring.queueSize()];
        for (int i = 0; i < freeSlots.length; i++) {
            freeSlots[i] = i;
        }
        this.freeCount = freeSlots.length;
        this.slotOfId = new int[65536];
        this.submittedAt = new long[65536];
    }

    /** Chains submitted so far. */
    long submitted() {
        return nextSeq;
    }

    /**
     * Runs for {@code nanos} with up to {@code inFlight} chains outstanding, publishing every
     * {@code batch}; records each chain's round trip into {@code latency}. Returns chains completed.
     */
    long run(long nanos, int batch, int inFlight, Histogram latency) {
        long completed = 0;
        long end = System.nanoTime() + nanos;
        long spins = 0;
        while (true) {
            boolean stopping = (++spins & 255) == 0 && System.nanoTime() >= end;
            if (!stopping) {
                int added = 0;
                while (added < batch && queue.outstanding() < inFlight && freeCount > 0 && submitOne()) {
                    added++;
                }
                if (added > 0) {
                    queue.publish();
                    queue.needsKick();
                }
            }
            int id;
            while ((id = queue.pollUsed()) >= 0) {
                latency.recordValue(Math.max(1, System.nanoTime() - submittedAt[id]));
                freeSlots[(freeHead + freeCount) % freeSlots.length] = slotOfId[id];
                freeCount++;
                completed++;
            }
            if (stopping && queue.outstanding() == 0) {
                return completed;
            }
            if (stopping) {
                Thread.onSpinWait();
                if (System.nanoTime() - end > 10_000_000_000L) {
                    throw new IllegalStateException("the device stopped answering: " + queue);
                }
            }
        }
    }

    private boolean submitOne() {
        int slot = freeSlots[freeHead];
        long gpa = dataGpa + slot * ring.slotBytes();
        memory.set(ValueLayout.JAVA_LONG, gpa, nextSeq);
        queue.addReadable(gpa, ring.payload());
        int id = queue.submit();
        if (id < 0) {
            return false;
        }
        freeHead = (freeHead + 1) % freeSlots.length;
        freeCount--;
        slotOfId[id] = slot;
        submittedAt[id] = System.nanoTime();
        nextSeq++;
        return true;
    }
}
