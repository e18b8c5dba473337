package io.vring.backends.crash;

import io.vring.engine.DriverQueue;
import io.vring.engine.QueueBrokenException;
import io.vring.protocol.FrontendRing;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import static io.vring.backends.crash.CrashRequest.RESPONSE_BYTES;
import static io.vring.backends.crash.CrashRequest.U32;
import static io.vring.backends.crash.CrashRequest.U64;

/**
 * The driver side of the crash test on one ring: requests numbered 0, 1, 2, ... each in a slot of
 * the ring's data area (request at slot start, response {@value #RESPONSE_OFFSET} bytes in), at most
 * {@code window} in flight. Every used entry is checked against the request the driver had on that
 * id and handed to the {@link CrashLedger}. The ring and its memory outlive every back-end.
 */
final class RequestStream {
    static final int SLOT_BYTES = 64;
    static final int RESPONSE_OFFSET = 32;

    private final FrontendRing ring;
    private final DriverQueue queue;
    private final MemorySegment data;
    private final int[] freeSlots;
    private int freeCount;
    private final long[] slotSeq;
    /** The slot each driver id (split head, packed buffer id) carries, or -1. */
    private final int[] slotOfId;
    private long nextSeq;
    private String brokenReason;

    RequestStream(FrontendRing ring, int window) {
        if ((long) window * SLOT_BYTES > ring.data().byteSize()) {
            throw new IllegalArgumentException(window + " slots do not fit in " + ring.data().byteSize() + " bytes of data");
        }
        this.ring = ring;
        this.queue = ring.queue();
        this.data = ring.data();
        this.freeSlots = new int[window];
        for (int i = 0; i < window; i++) {
            freeSlots[i] = window - 1 - i;
        }
        this.freeCount = window;
        this.slotSeq = new long[window];
        this.slotOfId = new int[queue.size()];
        Arrays.fill(slotOfId, -1);
    }

    /** Submits new requests while slots are free and numbers stay below {@code limit}; publishes and kicks. */
    int submit(long limit) {
        if (brokenReason != null) {
            return 0;
        }
        int n = 0;
        while (freeCount > 0 && nextSeq < limit) {
            int slot = freeSlots[--freeCount];
            long at = (long) slot * SLOT_BYTES;
            data.set(U64, at + CrashRequest.REQUEST_SEQ, nextSeq);
            data.asSlice(at + RESPONSE_OFFSET, RESPONSE_BYTES).fill((byte) 0);
            queue.addReadable(ring.dataGpa() + at, CrashRequest.REQUEST_BYTES);
            queue.addWritable(ring.dataGpa() + at + RESPONSE_OFFSET, RESPONSE_BYTES);
            int id = queue.submit();
            if (id < 0) {
                freeSlots[freeCount++] = slot;
                break;
            }
            slotOfId[id] = slot;
            slotSeq[slot] = nextSeq++;
            n++;
        }
        if (n > 0) {
            ring.publish();
        }
        return n;
    }

    /**
     * Collects every used entry there is into {@code ledger}. If the driver queue breaks (the device
     * used a head the driver did not have in flight, or moved the used index past what is
     * outstanding) the ledger hears of it and the stream is broken: no later call does anything.
     */
    int collect(CrashLedger ledger) {
        if (brokenReason != null) {
            return 0;
        }
        int n = 0;
        try {
            for (int id; (id = queue.pollUsed()) >= 0; n++) {
                int slot = slotOfId[id];
                slotOfId[id] = -1;
                long at = (long) slot * SLOT_BYTES + RESPONSE_OFFSET;
                ledger.completed(slotSeq[slot], data.get(U64, at + CrashRequest.RESPONSE_SEQ),
                        data.get(U64, at + CrashRequest.RESPONSE_RESULT), data.get(U32, at + CrashRequest.RESPONSE_EXECUTIONS),
                        data.get(U32, at + CrashRequest.RESPONSE_RESUBMITTED_FROM));
                freeSlots[freeCount++] = slot;
            }
        } catch (QueueBrokenException e) {
            brokenReason = e.getMessage();
            ledger.usedEntryNotInFlight(e.getMessage());
        }
        return n;
    }

    /** Waits up to {@code millis} for a used entry (sleeping on the call eventfd). */
    boolean awaitUsed(long millis) {
        return brokenReason == null && ring.awaitUsed(millis);
    }

    /** The numbers of the requests in flight, into {@code into}; returns how many. */
    int inFlight(long[] into) {
        int n = 0;
        for (int slot : slotOfId) {
            if (slot >= 0) {
                into[n++] = slotSeq[slot];
            }
        }
        return n;
    }

    int outstanding() {
        return slotSeq.length - freeCount;
    }

    /** Requests submitted so far (numbers 0 .. submitted-1). */
    long submitted() {
        return nextSeq;
    }

    /** Why the driver queue broke, or null. */
    String brokenReason() {
        return brokenReason;
    }
}
