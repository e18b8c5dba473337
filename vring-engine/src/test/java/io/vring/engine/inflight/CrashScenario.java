package io.vring.engine.inflight;

import io.vring.engine.DeviceQueue;
import io.vring.engine.DriverQueue;
import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.split.SplitLayout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A driver (our {@link DriverQueue}) and a back-end (a tracked {@link DeviceQueue} plus what a device
 * remembers: the tokens it holds) over one memfd of guest memory and one memfd inflight buffer, the
 * back-end killed by a {@link KillSwitch} and restarted as often as a test likes.
 *
 * <p>Request {@code r} is a 16-byte slot: bytes 0-7 hold {@code r} (device-readable, in one or two
 * descriptors, sometimes behind an indirect table), bytes 8-15 the reply {@code ~r}
 * (device-writable, zeroed at submission). The device writes the reply when it polls the chain and
 * completes chains later, out of order, keeping at least {@link #MIN_IN_FLIGHT} in flight while the
 * driver offers more. The driver checks each completion: a known request, not completed before, the
 * reply written and of the full length. A restarted back-end must hand out its resubmitted chains
 * first, in the order they were first popped, none already completed.
 */
final class CrashScenario implements AutoCloseable {
    static final int MIN_IN_FLIGHT = 8;
    private static final int SLOT = 16;
    private static final ValueLayout.OfLong LE_U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort LE_U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    final RingKind kind;
    final int size;
    private final boolean inOrder;
    private final long features;
    private final RingPlacement plan;
    private final SharedMemory guest;
    private final GuestMemory memory;
    private final SharedMemory inflightMemory;
    private final MemorySegment scratch;
    private final ChainReader reader = new ChainReader();
    private final ChainWriter writer = new ChainWriter();

    // Driver side.
    private DriverQueue driver;
    private int[] slotOfId;
    private int[] requestOfSlot;
    private int[] freeSlots;
    private int freeCount;
    private boolean[] completed;
    private int made;
    private int completedCount;
    private int total;

    // Back-end side: the current incarnation.
    DeviceQueue device;
    private int[] heldTokens;
    private int[] heldRequests;
    private int held;
    /** Resubmitted chains the current incarnation has yet to see first. */
    private int resubmitsDue;
    private long lastResubmittedPop;

    // History across incarnations.
    /** Sequence number of each request's first poll (which is when it was marked), -1 if never. */
    private long[] firstPop;
    private long pops;
    int incarnations;
    long resubmittedTotal;

    CrashScenario(RingKind kind, int size) {
        this(kind, size, false);
    }

    /**
     * With {@code inOrder}, IN_ORDER is negotiated and the device completes its chains in the order it
     * popped them (each fully written, so publish folds runs into one used entry).
     */
    CrashScenario(RingKind kind, int size, boolean inOrder) {
        this.kind = kind;
        this.size = size;
        this.inOrder = inOrder;
        this.features = VirtioFeatures.bit(VirtioFeatures.VERSION_1) | VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC)
                | VirtioFeatures.bit(VirtioFeatures.EVENT_IDX)
                | (inOrder ? VirtioFeatures.bit(VirtioFeatures.IN_ORDER) : 0)
                | (kind == RingKind.PACKED ? VirtioFeatures.bit(VirtioFeatures.RING_PACKED) : 0);
        this.plan = RingPlacement.plan(kind, size, 0, 4, (long) size * SLOT);
        this.guest = SharedMemory.create("crash-guest", plan.totalBytes());
        this.memory = guest.guestMemory(0);
        this.inflightMemory = SharedMemory.create("crash-inflight", InflightBuffer.size(kind, 1, size));
        this.scratch = java.lang.foreign.Arena.ofAuto().allocate(8, 8);
    }

    /** A fresh start: new driver (it zeroes the rings), zeroed inflight buffer, first back-end, {@code total} requests. */
    void start(int total, StoreProbe probe) {
        this.total = total;
        driver = kind.driver("driver", memory, size, plan.rings(), features, plan.indirect());
        inflightMemory.segment().fill((byte) 0);
        slotOfId = new int[size];
        requestOfSlot = new int[size];
        freeSlots = new int[size];
        for (int i = 0; i < size; i++) {
            freeSlots[i] = i;
        }
        freeCount = size;
        completed = new boolean[total];
        made = 0;
        completedCount = 0;
        firstPop = new long[total];
        Arrays.fill(firstPop, -1);
        pops = 0;
        incarnations = 0;
        resubmittedTotal = 0;
        device = kind.device("device", memory, size, plan.rings(), features);
        attach(probe);
        assertEquals(0, resubmitsDue, "a fresh buffer resubmits nothing");
    }

    /**
     * The back-end died: what it held in its own memory is gone. The driver first collects whatever
     * the ring already shows used (it may have been published just before the kill), then a new
     * back-end starts at the base a front-end would give after a crash (split: the used idx; packed:
     * a stale position, which the region must override) and attaches the same buffer.
     */
    void restart(StoreProbe probe, SplittableRandom rnd) {
        device = null;
        held = 0;
        collect();
        int availBase;
        int usedBase;
        if (kind == RingKind.SPLIT) {
            availBase = Short.toUnsignedInt(guest.segment().get(LE_U16, plan.rings().deviceArea() + SplitLayout.USED_IDX));
            usedBase = 0;
        } else if (inflightMemory.segment().get(LE_U16, PackedInflightLayout.VERSION) == 0) {
            // Killed before the region was ever laid out, so before the first poll: a fresh region
            // makes the queue trust its base, and the front-end's base is the start of the ring.
            availBase = 1 << 15;
            usedBase = availBase;
        } else {
            // A stale base (QEMU's packed base after a crash is): the region must override it.
            availBase = rnd.nextInt(size) | rnd.nextInt(2) << 15;
            usedBase = availBase;
        }
        device = kind.device("device#" + (incarnations + 1), memory, size, plan.rings(), features, availBase, usedBase);
        attach(probe);
    }

    private void attach(StoreProbe probe) {
        incarnations++;
        InflightBuffer buffer = InflightBuffer.of(kind, inflightMemory.segment(), 1, size, probe);
        resubmitsDue = device.trackInflight(buffer, 0);
        assertTrue(device.isTrackingInflight());
        resubmittedTotal += resubmitsDue;
        lastResubmittedPop = -1;
        heldTokens = new int[size];
        heldRequests = new int[size];
    }

    /** Requests completed to the driver so far. */
    int completed() {
        return completedCount;
    }

    /** True once every request was completed to the driver. */
    boolean done() {
        return completedCount == total;
    }

    /** One random step of one side. Throws {@link KillSwitch.Killed} when the probe kills the back-end. */
    void step(SplittableRandom rnd) {
        int action = rnd.nextInt(10);
        if (action < 3) {
            submit(rnd);
        } else if (action < 6) {
            poll(rnd.nextInt(1, 5));
        } else if (action < 8) {
            complete(rnd);
        } else {
            collect();
        }
    }

    /** Runs to the end; fails if requests are lost (nothing in flight, nothing offered, driver still waiting). */
    void runToEnd(SplittableRandom rnd, String where) {
        long steps = 0;
        while (!done()) {
            step(rnd);
            if (++steps > 10_000L * total) {
                fail(where + ": no progress after " + steps + " steps: " + this);
            }
        }
        assertEquals(0, driver.outstanding(), where + ": outstanding after all completed");
        assertTrue(!device.isBroken(), () -> where + ": " + device.brokenReason());
    }

    private void submit(SplittableRandom rnd) {
        int n = rnd.nextInt(1, 5);
        int added = 0;
        for (int i = 0; i < n && freeCount > 0 && made < total; i++) {
            int slot = freeSlots[freeCount - 1];
            long gpa = plan.dataGpa() + (long) slot * SLOT;
            int request = made;
            guest.segment().set(LE_U64, gpa, request);
            guest.segment().set(LE_U64, gpa + 8, 0L);
            if (rnd.nextBoolean()) {
                driver.addReadable(gpa, 8);
            } else {
                driver.addReadable(gpa, 4);
                driver.addReadable(gpa + 4, 4);
            }
            driver.addWritable(gpa + 8, 8);
            int id = rnd.nextInt(4) == 0 ? driver.submitIndirect() : driver.submit();
            if (id < 0) {
                break; // ring full: the chain was dropped, the slot stays free
            }
            freeCount--;
            slotOfId[id] = slot;
            requestOfSlot[slot] = request;
            made++;
            added++;
        }
        if (added > 0) {
            driver.publish();
            driver.needsKick();
        }
    }

    private void poll(int n) {
        for (int i = 0; i < n && held < size; i++) {
            DescriptorChain c = device.poll();
            if (c == null) {
                assertTrue(!device.isBroken(), () -> "device broke: " + device.brokenReason());
                return;
            }
            long got = reader.reset(c).read(scratch, 0, 8);
            assertEquals(8, got, "request bytes");
            long request = scratch.get(LE_U64, 0);
            assertTrue(request >= 0 && request < made, "the chain carries request " + request + ", made " + made);
            int r = (int) request;
            assertTrue(!completed[r], () -> "request " + r + " was completed to the driver and is handed out again");
            if (resubmitsDue > 0) {
                resubmitsDue--;
                if (firstPop[r] < 0) {
                    // Marked by a back-end killed inside that very poll(), after the mark and before the
                    // return: the last it popped, so the last to come back.
                    assertEquals(0, resubmitsDue, "resubmitted request " + r + " was never handed out, so it"
                            + " must be the last one popped, and come back last");
                    firstPop[r] = pops;
                }
                assertTrue(firstPop[r] > lastResubmittedPop, () -> "resubmitted request " + r + " (first popped "
                        + firstPop[r] + ") after one first popped at " + lastResubmittedPop + ": not in pop order");
                lastResubmittedPop = firstPop[r];
            } else if (firstPop[r] < 0) {
                firstPop[r] = pops;
            }
            pops++;
            scratch.set(LE_U64, 0, ~request);
            assertEquals(8, writer.reset(c).write(scratch, 0, 8), "reply bytes");
            heldTokens[held] = c.token();
            heldRequests[held] = r;
            held++;
        }
    }

    private void complete(SplittableRandom rnd) {
        if (held == 0) {
            collect();
            if (made == total && completedCount < total && !device.hasAvailable()) {
                fail("lost: the back-end holds nothing and sees nothing, the driver waits for "
                        + (total - completedCount) + " requests: " + this);
            }
            return;
        }
        if (held < MIN_IN_FLIGHT && device.hasAvailable()) {
            return; // keep at least MIN_IN_FLIGHT in flight while more is offered
        }
        int k = rnd.nextInt(1, held + 1);
        if (inOrder) {
            for (int i = 0; i < k; i++) {
                device.addUsed(heldTokens[i], 8);
            }
            held -= k;
            System.arraycopy(heldTokens, k, heldTokens, 0, held);
            System.arraycopy(heldRequests, k, heldRequests, 0, held);
            device.publish();
            device.needsNotification();
            return;
        }
        for (int i = 0; i < k; i++) {
            int pick = rnd.nextInt(held);
            device.addUsed(heldTokens[pick], 8);
            held--;
            heldTokens[pick] = heldTokens[held];
            heldRequests[pick] = heldRequests[held];
        }
        device.publish();
        device.needsNotification();
    }

    void collect() {
        int id;
        while ((id = driver.pollUsed()) >= 0) {
            int slot = slotOfId[id];
            int request = requestOfSlot[slot];
            long gpa = plan.dataGpa() + (long) slot * SLOT;
            assertEquals(8, driver.usedLength(), "used length of request " + request);
            assertEquals(~(long) request, guest.segment().get(LE_U64, gpa + 8), "reply of request " + request);
            assertTrue(!completed[request], () -> "request " + request + " completed twice");
            completed[request] = true;
            completedCount++;
            freeSlots[freeCount++] = slot;
        }
    }

    @Override
    public String toString() {
        return kind + " size " + size + ": made " + made + "/" + total + ", completed " + completedCount + ", held " + held
                + ", incarnations " + incarnations + ", device " + device + ", driver outstanding "
                + (driver == null ? "-" : driver.outstanding());
    }

    @Override
    public void close() {
        guest.close();
        inflightMemory.close();
    }
}
