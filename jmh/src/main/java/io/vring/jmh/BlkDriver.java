package io.vring.jmh;

import io.vring.backends.blk.BlkLayout;
import io.vring.engine.DriverQueue;
import io.vring.engine.VirtioFeatures;
import io.vring.protocol.FrontendConfig;
import io.vring.protocol.FrontendRing;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The part of a guest's virtio_blk driver the blk benchmarks need, on request queue 0 of a
 * {@link io.vring.protocol.FrontendDevice}: {@code depth} request slots, each a 16-byte header
 * (device-readable), a 4 KiB data buffer (device-writable for a read, readable for a write) and a
 * status byte (device-writable), laid out in the ring's data area; 4 KiB reads and writes of a
 * block the caller picks; completion by used ring with the call eventfd (EVENT_IDX). The same
 * driver runs against every back-end, so the back-ends are what differs. No block layer, no
 * merging, no allocation after construction.
 *
 * <p>Layout of the ring's data area: the {@code depth} data buffers first (4 KiB apart), then one
 * 32-byte control block per slot (header at 0, status at 16).
 *
 * <p>A status other than OK, a used length shorter than the status byte, or no completion within
 * the timeout is an {@link IllegalStateException}: the benchmark fails rather than count a request
 * the device did not carry out.
 */
public final class BlkDriver {
    /** Bytes per request. */
    public static final int BLOCK = 4096;
    /** Sectors (512 bytes) per block. */
    public static final int SECTORS_PER_BLOCK = BLOCK / BlkLayout.SECTOR_SIZE;
    /** A QEMU vhost-user-blk-pci's default queue size. */
    public static final int QUEUE_SIZE = 128;
    /** Virtio features asked: VERSION_1, EVENT_IDX and FLUSH (with FLUSH both back-ends complete a write once it is in the page cache). */
    public static final long FEATURES = VirtioFeatures.bit(VirtioFeatures.VERSION_1) | VirtioFeatures.bit(VirtioFeatures.EVENT_IDX)
            | VirtioFeatures.bit(BlkLayout.F_FLUSH);
    private static final int CONTROL = 32;
    private static final int STATUS = 16;
    /** What the status byte holds until the device answers. */
    private static final byte NO_STATUS = (byte) 0xee;
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final FrontendRing ring;
    private final DriverQueue queue;
    private final MemorySegment data;
    private final long gpa;
    private final int depth;
    private final int[] slotOfId;
    private int inFlight;

    /** A driver on {@code ring} with {@code depth} slots; the ring's data area must hold {@link #dataBytes(int)}. */
    public BlkDriver(FrontendRing ring, int depth) {
        if (depth < 1 || depth * 3 > ring.queue().size()) {
            throw new IllegalArgumentException("depth " + depth + ": each request takes 3 descriptors of "
                    + ring.queue().size());
        }
        if (ring.data().byteSize() < dataBytes(depth)) {
            throw new IllegalArgumentException("the ring's data area holds " + ring.data().byteSize() + " bytes, "
                    + dataBytes(depth) + " needed for depth " + depth);
        }
        this.ring = ring;
        this.queue = ring.queue();
        this.data = ring.data();
        this.gpa = ring.dataGpa();
        this.depth = depth;
        this.slotOfId = new int[queue.size()];
        for (int slot = 0; slot < depth; slot++) { // what writes carry: any bytes but zeroes
            buffer(slot).fill((byte) (0x5a + slot));
        }
    }

    /** Data-area bytes {@code depth} slots take. */
    public static long dataBytes(int depth) {
        return (long) depth * (BLOCK + CONTROL);
    }

    /** What a {@link io.vring.protocol.FrontendDevice} needs for this driver: one queue, eventfd mode. */
    public static FrontendConfig config(int depth) {
        return FrontendConfig.of(1, QUEUE_SIZE).withFeatures(FEATURES).withDataBytesPerRing(dataBytes(depth));
    }

    public int depth() {
        return depth;
    }

    /** Requests submitted and not yet completed. */
    public int inFlight() {
        return inFlight;
    }

    /** Slot {@code slot}'s 4 KiB data buffer. */
    public MemorySegment buffer(int slot) {
        return data.asSlice((long) slot * BLOCK, BLOCK);
    }

    /**
     * Queues a 4 KiB read ({@code write} false) or write of block {@code block} through slot
     * {@code slot}, which must be free; the device sees it after {@link #publish()}.
     */
    public void submit(int slot, boolean write, long block) {
        long control = control(slot);
        data.set(LE_INT, control + BlkLayout.HEADER_TYPE, write ? BlkLayout.T_OUT : BlkLayout.T_IN);
        data.set(LE_INT, control + 4, 0); // reserved
        data.set(LE_LONG, control + BlkLayout.HEADER_SECTOR, block * SECTORS_PER_BLOCK);
        data.set(ValueLayout.JAVA_BYTE, control + STATUS, NO_STATUS);
        queue.addReadable(gpa + control, BlkLayout.HEADER_SIZE);
        if (write) {
            queue.addReadable(gpa + (long) slot * BLOCK, BLOCK);
        } else {
            queue.addWritable(gpa + (long) slot * BLOCK, BLOCK);
        }
        queue.addWritable(gpa + control + STATUS, 1);
        int id = queue.submit();
        if (id < 0) {
            throw new IllegalStateException("the ring has no room for a request (" + inFlight + " in flight)");
        }
        slotOfId[id] = slot;
        inFlight++;
    }

    /** Makes the submitted requests visible and kicks the device if it asks. */
    public void publish() {
        ring.publish();
    }

    /**
     * Waits up to {@code timeoutMillis} for the next completed request and returns its slot, free
     * again. Sleeps on the call eventfd when nothing is there.
     */
    public int complete(long timeoutMillis) {
        int id = queue.pollUsed();
        if (id < 0) {
            if (!ring.awaitUsed(timeoutMillis)) {
                throw new IllegalStateException("no request completed within " + timeoutMillis + " ms (" + inFlight
                        + " in flight)");
            }
            id = queue.pollUsed();
        }
        int slot = slotOfId[id];
        byte status = data.get(ValueLayout.JAVA_BYTE, control(slot) + STATUS);
        if (status != BlkLayout.S_OK || queue.usedLength() < 1) {
            throw new IllegalStateException("slot " + slot + " completed with status " + status + " and used length "
                    + queue.usedLength());
        }
        inFlight--;
        return slot;
    }

    private long control(int slot) {
        return (long) depth * BLOCK + (long) slot * CONTROL;
    }
}
