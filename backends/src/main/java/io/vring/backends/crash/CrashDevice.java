package io.vring.backends.crash;

import io.vring.engine.DeviceQueue;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.inflight.StoreProbe;
import io.vring.engine.os.Libc;
import io.vring.protocol.Backend;
import io.vring.protocol.RingHandle;
import io.vring.protocol.message.ProtocolFeatures;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static io.vring.backends.crash.CrashRequest.RESPONSE_BYTES;
import static io.vring.backends.crash.CrashRequest.RESPONSE_COMPLETED_BY;
import static io.vring.backends.crash.CrashRequest.RESPONSE_EXECUTIONS;
import static io.vring.backends.crash.CrashRequest.RESPONSE_POLLED_BY;
import static io.vring.backends.crash.CrashRequest.RESPONSE_RESUBMITTED_FROM;
import static io.vring.backends.crash.CrashRequest.RESPONSE_RESULT;
import static io.vring.backends.crash.CrashRequest.RESPONSE_SEQ;
import static io.vring.backends.crash.CrashRequest.U32;
import static io.vring.backends.crash.CrashRequest.U64;

/**
 * The crash-test back-end's device: one queue of requests ({@link CrashRequest}) that it keeps at
 * least {@value #KEEP_IN_FLIGHT} in flight and completes in a seeded random order, so recovery has
 * out-of-order holes to get right. It offers INFLIGHT_SHMFD (unless told not to, for the negative
 * control) and executes a resubmitted request again like any other.
 *
 * <p><b>Crash points.</b> Once {@code armAfter} requests have completed, the device SIGKILLs its own
 * process at the {@link CrashPoint} it was given. After marking is reached here, right after
 * {@code poll()} returns. The others lie inside {@code publish()}, which the device calls itself so
 * that it knows a region store belongs to a publish; the engine's store probe ({@link StoreProbe},
 * installed through the server's options, absent in production) tells it of each store, and the
 * queue's used position says whether the ring's used entries are already out.
 *
 * <p>Threads: {@link #process} and the probe run on the ring's worker thread; {@link #start} on the
 * control thread before the worker starts.
 */
final class CrashDevice implements Backend, StoreProbe {
    /** Requests the device holds back before it completes any. */
    static final int KEEP_IN_FLIGHT = 8;
    /**
     * Without a new request for this long, one held request is completed anyway: the stream's tail, or
     * a front-end whose requests were lost. Long enough that a slow front-end on a busy machine does
     * not drain the device before the kill.
     */
    private static final long DRAIN_AFTER_NANOS = 10_000_000;
    private static final int MAX_HELD = 1024;

    private final int generation;
    private final CrashPoint point;
    private final long armAfter;
    private final boolean offerInflight;
    private final SplittableRandom random;

    private final int[] heldToken = new int[MAX_HELD];
    private final long[] heldSeq = new long[MAX_HELD];
    private final MemorySegment[] heldResponse = new MemorySegment[MAX_HELD];
    private final long[] heldOffset = new long[MAX_HELD];
    private int held;
    private long completed;
    private long lastArrival;

    private DeviceQueue queue;
    private boolean packed;
    // The publish in progress, for the probe.
    private boolean publishing;
    private int usedBefore;
    private int batch;
    private int storesAfterUsed;

    CrashDevice(int generation, CrashPoint point, long armAfter, boolean offerInflight, long seed) {
        this.generation = generation;
        this.point = point;
        this.armAfter = armAfter;
        this.offerInflight = offerInflight;
        this.random = new SplittableRandom(seed);
    }

    @Override
    public long features() {
        // No IN_ORDER: completing out of order is the point.
        return VirtioFeatures.bit(VirtioFeatures.VERSION_1) | VirtioFeatures.bit(VirtioFeatures.EVENT_IDX)
                | VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC) | VirtioFeatures.bit(VirtioFeatures.RING_PACKED);
    }

    @Override
    public long protocolFeatures() {
        return offerInflight ? ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD) : 0;
    }

    @Override
    public int queueCount() {
        return 1;
    }

    @Override
    public void start(int queueIndex, DeviceQueue queue, RingHandle handle) {
        this.queue = queue;
        this.packed = VirtioFeatures.has(queue.features(), VirtioFeatures.RING_PACKED);
        this.held = 0;
        this.lastArrival = System.nanoTime();
    }

    @Override
    public int process(int queueIndex, DeviceQueue queue) {
        int arrived = 0;
        for (DescriptorChain chain; held < MAX_HELD && (chain = queue.poll()) != null; arrived++) {
            if (chain.readableCount() != 1 || chain.writableCount() != 1 || chain.length(0) < CrashRequest.REQUEST_BYTES
                    || chain.length(1) < RESPONSE_BYTES) {
                queue.markBroken("crash-test request " + chain + " is not one 8-byte request and one "
                        + RESPONSE_BYTES + "-byte response");
                return 0;
            }
            begin(chain);
        }
        long now = System.nanoTime();
        if (arrived > 0) {
            lastArrival = now;
        }
        int done = 0;
        for (; held > KEEP_IN_FLIGHT; done++) {
            completeOne();
        }
        if (arrived == 0 && held > 0 && now - lastArrival > DRAIN_AFTER_NANOS) {
            completeOne();
            done++;
            lastArrival = now;
        }
        if (done > 0) {
            publish(queue, done);
        }
        return arrived + done;
    }

    /** Notes who polled the request, reaches the after-mark point, then starts executing it (held). */
    private void begin(DescriptorChain chain) {
        MemorySegment response = chain.segment(1);
        long at = chain.offset(1);
        int polledBefore = response.get(U32, at + RESPONSE_POLLED_BY);
        if (polledBefore != 0 && polledBefore != generation) {
            response.set(U32, at + RESPONSE_RESUBMITTED_FROM, polledBefore);
        }
        response.set(U32, at + RESPONSE_POLLED_BY, generation);
        if (point == CrashPoint.AFTER_MARK && armed()) {
            die("chain " + chain.token() + " is marked inflight");
        }
        response.set(U32, at + RESPONSE_EXECUTIONS, response.get(U32, at + RESPONSE_EXECUTIONS) + 1);
        heldToken[held] = chain.token();
        heldSeq[held] = chain.segment(0).get(U64, chain.offset(0) + CrashRequest.REQUEST_SEQ);
        heldResponse[held] = response;
        heldOffset[held] = at;
        held++;
    }

    /** Completes a held request picked at random: the answer, then the used entry. */
    private void completeOne() {
        int i = random.nextInt(held);
        long seq = heldSeq[i];
        MemorySegment response = heldResponse[i];
        long at = heldOffset[i];
        response.set(U64, at + RESPONSE_SEQ, seq);
        response.set(U64, at + RESPONSE_RESULT, CrashRequest.result(seq));
        response.set(U32, at + RESPONSE_COMPLETED_BY, generation);
        queue.addUsed(heldToken[i], RESPONSE_BYTES);
        held--;
        heldToken[i] = heldToken[held];
        heldSeq[i] = heldSeq[held];
        heldResponse[i] = heldResponse[held];
        heldOffset[i] = heldOffset[held];
        heldResponse[held] = null;
        completed++;
    }

    /** Publishes the batch here rather than in the worker, so the probe knows which stores are the publish's. */
    private void publish(DeviceQueue queue, int count) {
        usedBefore = queue.usedPosition();
        batch = count;
        storesAfterUsed = 0;
        publishing = true;
        try {
            queue.publish();
        } finally {
            publishing = false;
        }
    }

    /** The engine is about to store to the inflight region. */
    @Override
    public void storing() {
        if (!publishing || !armed()) {
            return;
        }
        int usedNow = queue.usedPosition();
        boolean usedOut = usedNow != usedBefore;
        switch (point) {
            case BETWEEN_USED_AND_CLEAR -> {
                if (usedOut) {
                    die(batch + " used entries published, none cleared");
                }
            }
            case MID_BATCH -> {
                if (usedOut && batch >= 2 && storesAfterUsed == batch / 2) {
                    die(batch + " used entries published, " + storesAfterUsed + " cleared");
                }
            }
            case RING_WRAP -> {
                if (usedOut && wrapped(usedBefore, usedNow)) {
                    die("used position wrapped from 0x" + Integer.toHexString(usedBefore) + " to 0x"
                            + Integer.toHexString(usedNow) + " (" + batch + " entries), none cleared");
                }
            }
            default -> {
            }
        }
        if (usedOut) {
            storesAfterUsed++;
        }
    }

    @Override
    public void stored() {
    }

    /** True if the used position passed the end of the ring: split idx into the next lap, packed wrap bit flipped. */
    private boolean wrapped(int before, int after) {
        if (packed) {
            return ((before ^ after) & 0x8000) != 0;
        }
        int size = queue.size();
        return (before & 0xFFFF) / size != (after & 0xFFFF) / size;
    }

    private boolean armed() {
        return point.isDeterministic() && completed >= armAfter;
    }

    /** SIGKILL to our own pid: nothing runs after it, exactly as if the front-end had sent it. */
    private void die(String where) {
        System.out.println("generation " + generation + ": crash point " + point.cliName() + " reached after "
                + completed + " completions: " + where + "; kill -9 self");
        System.out.flush();
        Libc.kill(Libc.getpid(), Libc.SIGKILL);
        throw new IllegalStateException("SIGKILL to our own pid returned");
    }

    @Override
    public void reset() {
        held = 0;
    }
}
