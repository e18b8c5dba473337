package io.vring.backends.blk;

import io.vring.engine.DeviceQueue;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.DescriptorChain;
import io.vring.protocol.Backend;
import io.vring.protocol.RingHandle;
import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;
import io.vring.protocol.message.ProtocolFeatures;

import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * A virtio block device (virtio-blk, device id 2) over a {@link DiskImage}: reads, writes, flush,
 * get-id, discard and write-zeroes, on one or more request queues, with several requests in flight
 * per queue that finish out of order, as a real disk's do.
 *
 * <p><b>The data path.</b> A ring worker pops chains and checks each request; what needs no disk
 * (a bad request, GET_ID, DISCARD) is answered at once, the rest is copied into a preallocated
 * {@link BlkRequest} slot and queued for the {@link IoPool}. An I/O thread carries it out, hands the
 * slot back through the ring's completion queue and wakes the worker ({@link RingHandle#wakeUp()}),
 * whose next {@code process} stages the used entry. Nothing on the ring worker allocates.
 *
 * <p>IN_ORDER is not offered: requests finish in the disk's order. INFLIGHT_SHMFD is: a request
 * can run again, so a restarted back-end gets what its killed predecessor had in flight resubmitted
 * first (BlkGuestKillTest kills it under QEMU with a guest verifying every byte).
 */
public final class BlkBackend implements Backend, AutoCloseable {
    private static final System.Logger LOG = System.getLogger(BlkBackend.class.getName());
    /**
     * Most data segments per request, for the driver (config seg_max). A chain must not be longer
     * than the queue (the engine refuses an indirect table with more entries than the ring), and
     * Linux's virtio_blk sizes its indirect tables from seg_max alone, plus the header and the status:
     * 126 + 2 fits the smallest ring QEMU gives vhost-user-blk by default (128). With 254, a guest
     * whose I/O piled up (e.g. while the back-end restarted) merged requests into 130-entry tables
     * and the queue broke (BlkGuestKillTest). QEMU's own virtio-blk keeps seg_max at queue size - 2
     * for the same reason.
     */
    static final int SEG_MAX = 126;
    /** Most sectors one DISCARD / WRITE_ZEROES range may cover (512 MiB). */
    static final long MAX_RANGE_SECTORS = 1L << 20;
    /** The largest ring the device takes (QEMU's vhost-user-blk allows up to 1024). */
    static final int MAX_QUEUE_SIZE = 1024;
    public static final int DEFAULT_IO_THREADS = 4;

    private final DiskImage image;
    private final int queueCount;
    private final byte[] id = new byte[BlkLayout.ID_BYTES];
    private final BlkRing[] rings;
    private final IoPool pool;
    final BlkStats stats = new BlkStats();
    private final long offered;

    /** Set on the control thread before any ring starts (SET_FEATURES comes first), read by workers. */
    private volatile long negotiated;
    /** The driver's writeback setting (config byte 32); I/O threads read it per write. */
    private volatile boolean writeback = true;

    /**
     * @param serial the GET_ID string; at most 20 bytes of it are used
     */
    public BlkBackend(DiskImage image, int queues, int ioThreads, String serial) {
        if (queues < 1 || queues > 64) {
            throw new IllegalArgumentException("queues must be 1..64, got " + queues);
        }
        this.image = image;
        this.queueCount = queues;
        byte[] s = serial.getBytes(StandardCharsets.US_ASCII);
        System.arraycopy(s, 0, id, 0, Math.min(s.length, id.length)); // NUL-padded when shorter (5.2.6)
        this.rings = new BlkRing[queues];
        for (int i = 0; i < queues; i++) {
            rings[i] = new BlkRing(i, this);
        }
        this.pool = new IoPool(ioThreads, queues * MAX_QUEUE_SIZE, this::execute);
        long f = VirtioFeatures.RING_FEATURES | VirtioFeatures.bit(BlkLayout.F_SEG_MAX) | VirtioFeatures.bit(BlkLayout.F_BLK_SIZE)
                | VirtioFeatures.bit(BlkLayout.F_FLUSH) | VirtioFeatures.bit(BlkLayout.F_MQ);
        if (image.isReadOnly()) {
            f |= VirtioFeatures.bit(BlkLayout.F_RO);
        } else {
            f |= VirtioFeatures.bit(BlkLayout.F_CONFIG_WCE) | VirtioFeatures.bit(BlkLayout.F_DISCARD)
                    | VirtioFeatures.bit(BlkLayout.F_WRITE_ZEROES);
        }
        this.offered = f;
    }

    // ---- control plane ----

    @Override
    public long features() {
        return offered;
    }

    @Override
    public long protocolFeatures() {
        // INFLIGHT_SHMFD: a block request can be executed again after a crash (reads and writes of
        // the same bytes are idempotent), so the server may resubmit what a killed back-end had in flight.
        return ProtocolFeatures.bit(ProtocolFeatures.CONFIG) | ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD);
    }

    @Override
    public int queueCount() {
        return queueCount;
    }

    @Override
    public int maxQueueSize() {
        return MAX_QUEUE_SIZE;
    }

    @Override
    public int configSize() {
        return BlkLayout.CONFIG_SIZE;
    }

    @Override
    public void readConfig(int offset, byte[] dst) {
        byte[] config = config();
        System.arraycopy(config, offset, dst, 0, dst.length);
    }

    /** struct virtio_blk_config as the driver reads it now. */
    private byte[] config() {
        ByteBuffer b = ByteBuffer.allocate(BlkLayout.CONFIG_SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(BlkLayout.CONFIG_CAPACITY, capacitySectors());
        b.putInt(BlkLayout.CONFIG_SEG_MAX, SEG_MAX);
        b.putInt(BlkLayout.CONFIG_BLK_SIZE, BlkLayout.SECTOR_SIZE);
        b.put(BlkLayout.CONFIG_WRITEBACK, (byte) (writeback ? 1 : 0));
        b.putShort(BlkLayout.CONFIG_NUM_QUEUES, (short) queueCount);
        if (!image.isReadOnly()) {
            b.putInt(BlkLayout.CONFIG_MAX_DISCARD_SECTORS, (int) MAX_RANGE_SECTORS);
            b.putInt(BlkLayout.CONFIG_MAX_DISCARD_SEG, BlkRequest.MAX_RANGES);
            b.putInt(BlkLayout.CONFIG_DISCARD_SECTOR_ALIGNMENT, 1);
            b.putInt(BlkLayout.CONFIG_MAX_WRITE_ZEROES_SECTORS, (int) MAX_RANGE_SECTORS);
            b.putInt(BlkLayout.CONFIG_MAX_WRITE_ZEROES_SEG, BlkRequest.MAX_RANGES);
            b.put(BlkLayout.CONFIG_WRITE_ZEROES_MAY_UNMAP, (byte) 0);
        }
        return b.array();
    }

    /** The one writable field: writeback (one byte at offset 32), when CONFIG_WCE was negotiated. */
    @Override
    public void writeConfig(int offset, byte[] src) {
        if (offset != BlkLayout.CONFIG_WRITEBACK || src.length != 1) {
            throw new VhostUserException(VhostUserError.InvalidParam, "virtio-blk config: only writeback (1 byte at offset "
                    + BlkLayout.CONFIG_WRITEBACK + ") is writable, not " + src.length + " bytes at " + offset);
        }
        if (!negotiated(BlkLayout.F_CONFIG_WCE)) {
            throw new VhostUserException(VhostUserError.InvalidParam, "virtio-blk config: writeback is read-only without CONFIG_WCE");
        }
        if (src[0] != 0 && src[0] != 1) {
            throw new VhostUserException(VhostUserError.InvalidParam, "virtio-blk config: writeback must be 0 or 1, got " + src[0]);
        }
        writeback = src[0] == 1;
        LOG.log(Level.INFO, "the driver set the disk to {0}", writeback ? "writeback" : "writethrough");
    }

    @Override
    public void featuresAcked(long features) {
        negotiated = features;
    }

    @Override
    public void start(int queueIndex, DeviceQueue queue, RingHandle handle) {
        pool.start();
        rings[queueIndex].prepare(queue.size(), handle);
    }

    /** Waits for the ring's requests on the disk and stages their used entries: GET_VRING_BASE drains. */
    @Override
    public void stop(int queueIndex, DeviceQueue queue) {
        rings[queueIndex].awaitIdle(queue);
    }

    /**
     * Waits for every request still on the disk (their memory may be about to go), then forgets them
     * all. The I/O threads stay (parked) for the next front-end: starting and joining them on every
     * session was a measurable part of a reconnect.
     */
    @Override
    public void reset() {
        // One line per session: what a log reader needs to tell "served nothing" from "served and hung".
        LOG.log(Level.INFO, "session ends: {0}", stats);
        for (BlkRing r : rings) {
            r.awaitIdle(null);
        }
        for (BlkRing r : rings) {
            r.forgetRequests();
        }
        negotiated = 0;
        writeback = true;
    }

    /** Stops the I/O threads and closes the image; the server must be closed first. */
    @Override
    public void close() {
        reset();
        pool.stop();
        image.close();
    }

    // ---- data path ----

    /** Ring worker: stage what finished, then take new chains while there are slots. Allocates nothing. */
    @Override
    public int process(int queueIndex, DeviceQueue queue) {
        BlkRing ring = rings[queueIndex];
        int work = ring.drainCompletions(queue);
        while (ring.hasFreeSlot()) {
            DescriptorChain chain = queue.poll();
            if (chain == null) {
                break;
            }
            ring.accept(chain, queue);
            work++;
        }
        return work;
    }

    /** I/O thread: carries out one request against the image, then hands it back to its ring. */
    private void execute(BlkRequest r) {
        try {
            switch (r.type) {
                case BlkLayout.T_IN -> {
                    long at = r.diskOffset;
                    for (int i = 0; i < r.bufferCount; i++) {
                        image.read(at, r.segments[i], r.offsets[i], r.lengths[i]);
                        at += r.lengths[i];
                    }
                    stats.reads.increment();
                    stats.bytesRead.add(r.dataBytes);
                    r.usedLength = (int) (r.dataBytes + 1);
                }
                case BlkLayout.T_OUT -> {
                    long at = r.diskOffset;
                    for (int i = 0; i < r.bufferCount; i++) {
                        image.write(at, r.segments[i], r.offsets[i], r.lengths[i]);
                        at += r.lengths[i];
                    }
                    if (r.writethrough) {
                        image.flush();
                    }
                    stats.writes.increment();
                    stats.bytesWritten.add(r.dataBytes);
                }
                case BlkLayout.T_FLUSH -> {
                    image.flush();
                    stats.flushes.increment();
                }
                case BlkLayout.T_WRITE_ZEROES -> {
                    for (int i = 0; i < r.rangeCount; i++) {
                        image.writeZeroes(r.rangeOffsets[i], r.rangeLengths[i]);
                    }
                    stats.writeZeroes.increment();
                }
                default -> throw new IllegalStateException("request type " + r.type + " reached an I/O thread");
            }
            r.status = BlkLayout.S_OK;
        } catch (RuntimeException | Error e) {
            // Whatever went wrong, the request completes: a request that never comes back would
            // hang GET_VRING_BASE, which waits for every request on the disk.
            r.status = BlkLayout.S_IOERR;
            r.usedLength = 1;
            stats.ioErrors.increment();
            LOG.log(Level.WARNING, "ring " + r.ring.index + ": request type " + r.type + " at byte " + r.diskOffset
                    + " failed: " + e.getMessage());
        }
        r.ring.completed(r);
    }

    // ---- for the rings ----

    IoPool pool() {
        return pool;
    }

    boolean negotiated(int featureBit) {
        return VirtioFeatures.has(negotiated, featureBit);
    }

    boolean isReadOnly() {
        return image.isReadOnly();
    }

    /**
     * Whether a write may complete before it is durable (5.2.5): the writeback field if the driver
     * can set it (CONFIG_WCE), else only if the driver can flush (FLUSH).
     */
    boolean writeback() {
        return negotiated(BlkLayout.F_CONFIG_WCE) ? writeback : negotiated(BlkLayout.F_FLUSH);
    }

    long capacitySectors() {
        return image.sizeBytes() >>> BlkLayout.SECTOR_SHIFT;
    }

    byte[] idBytes() {
        return id;
    }

    /** What the device did so far. */
    public BlkStats stats() {
        return stats;
    }

    /** The image behind the disk. */
    public DiskImage image() {
        return image;
    }
}
