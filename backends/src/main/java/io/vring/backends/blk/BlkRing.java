package io.vring.backends.blk;

import io.vring.engine.DeviceQueue;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.protocol.RingHandle;
import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

import java.lang.System.Logger.Level;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * One request queue of the block device: turns the chains its ring worker pops into request slots
 * for the I/O threads, answers what needs no disk at once, and stages the used entries of finished
 * requests, in the order they finish.
 *
 * <p><b>Threads.</b> {@link #accept} and {@link #drainCompletions} run on the ring's worker (or on
 * the control thread while the worker is parked: {@link #awaitIdle}); I/O threads only touch the
 * slots they were handed, {@link #completions} and {@link #outstanding}.
 */
final class BlkRing {
    private static final System.Logger LOG = System.getLogger(BlkRing.class.getName());
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Bad requests logged at WARNING per ring; later ones at DEBUG, so a hostile guest cannot flood the log. */
    private static final int LOUD_COMPLAINTS = 16;
    /** The largest IN or OUT the device carries out. */
    static final long MAX_REQUEST_BYTES = 1L << 30;
    private static final long STOP_WARN_NANOS = TimeUnit.SECONDS.toNanos(5);

    final int index;
    private final BlkBackend device;
    private final ChainReader reader = new ChainReader();
    private final ChainWriter writer = new ChainWriter();
    private final MemorySegment header = MemorySegment.ofArray(new byte[BlkLayout.HEADER_SIZE]);
    private final MemorySegment range = MemorySegment.ofArray(new byte[BlkLayout.RANGE_SIZE]);

    private BlkRequest[] slots = new BlkRequest[0];
    private BlkRequest[] free = new BlkRequest[0];
    private int freeCount;
    /** Finished requests, from the I/O threads to this ring's worker. Holds every slot: never full. */
    private ManyToOneConcurrentArrayQueue<BlkRequest> completions;
    /**
     * Requests handed to the I/O threads whose thread has not yet let go of them: it is incremented
     * before the hand-over and decremented after the thread's last touch (the wake-up), so when it
     * reads 0 no I/O thread will use this ring's guest memory or its {@link #handle} again.
     */
    final AtomicInteger outstanding = new AtomicInteger();
    /** The started ring's handle; I/O threads wake the worker through it. Stable while requests are outstanding. */
    RingHandle handle;

    private long nextSequence;
    private long highestStagedSequence = -1;
    private int complaints;

    BlkRing(int index, BlkBackend device) {
        this.index = index;
        this.device = device;
    }

    /**
     * The ring starts: one slot per descriptor, since no more chains than that can be in flight, so a
     * ring worker never finds itself without a slot. Control thread, every request finished.
     */
    void prepare(int queueSize, RingHandle handle) {
        this.handle = handle;
        if (slots.length < queueSize) {
            slots = new BlkRequest[queueSize];
            for (int i = 0; i < queueSize; i++) {
                slots[i] = new BlkRequest(this);
            }
            free = new BlkRequest[queueSize];
            completions = new ManyToOneConcurrentArrayQueue<>(queueSize);
        }
        forgetRequests();
    }

    /** Every slot free, nothing in flight. Control thread, no request outstanding. */
    void forgetRequests() {
        if (completions != null) {
            completions.clear();
        }
        for (int i = 0; i < slots.length; i++) {
            slots[i].forgetMemory();
            free[i] = slots[i];
        }
        freeCount = slots.length;
        highestStagedSequence = nextSequence - 1;
    }

    boolean hasFreeSlot() {
        return freeCount > 0;
    }

    /** Called by an I/O thread when it finished {@code r}: hands it back and wakes the ring's worker. */
    void completed(BlkRequest r) {
        completions.offer(r); // cannot fail: it holds every slot
        handle.wakeUp();
        outstanding.decrementAndGet(); // last touch: from here on stop() may return and the handle die
    }

    /** Stages used entries for every finished request; returns how many. */
    int drainCompletions(DeviceQueue queue) {
        int n = 0;
        for (BlkRequest r; (r = completions.poll()) != null; n++) {
            if (r.sequence < highestStagedSequence) {
                device.stats.outOfOrder.increment();
            } else {
                highestStagedSequence = r.sequence;
            }
            r.writeStatus();
            queue.addUsed(r.token, r.usedLength);
            r.forgetMemory();
            free[freeCount++] = r;
        }
        return n;
    }

    /**
     * Waits until no I/O thread holds a request of this ring, then stages what finished. Control
     * thread, the worker parked: GET_VRING_BASE must not report a base while the disk still writes
     * into guest memory for this ring.
     */
    int awaitIdle(DeviceQueue queue) {
        long start = System.nanoTime();
        long warnAt = start + STOP_WARN_NANOS;
        while (outstanding.get() != 0) {
            LockSupport.parkNanos(50_000);
            if (System.nanoTime() - warnAt > 0) {
                LOG.log(Level.WARNING, "ring {0}: still waiting for {1} requests after {2} s", index, outstanding.get(),
                        TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - start));
                warnAt += STOP_WARN_NANOS;
            }
        }
        return queue == null ? 0 : drainCompletions(queue);
    }

    /**
     * Takes one popped chain: answers it at once (bad request, GET_ID, DISCARD) or fills a slot and
     * hands it to the I/O threads. Returns true if it went to the I/O threads. The caller checked
     * {@link #hasFreeSlot()}. A chain without a status byte cannot be answered at all: the queue is
     * marked broken, as QEMU's own virtio-blk does.
     */
    boolean accept(DescriptorChain chain, DeviceQueue queue) {
        if (chain.writableBytes() == 0) {
            queue.markBroken("virtio-blk request (head " + chain.head() + ") has no writable status byte");
            return false;
        }
        int last = chain.bufferCount() - 1;
        MemorySegment statusSegment = chain.segment(last);
        long statusOffset = chain.offset(last) + chain.length(last) - 1;
        if (chain.readableBytes() < BlkLayout.HEADER_SIZE) {
            return answer(chain, queue, statusSegment, statusOffset, BlkLayout.S_IOERR, 1,
                    "header has " + chain.readableBytes() + " of 16 bytes");
        }
        reader.reset(chain).read(header, 0, BlkLayout.HEADER_SIZE);
        int type = header.get(LE_INT, BlkLayout.HEADER_TYPE);
        long sector = header.get(LE_LONG, BlkLayout.HEADER_SECTOR);
        BlkRequest r = free[freeCount - 1];
        r.begin(chain.token(), type, statusSegment, statusOffset);
        return switch (type) {
            case BlkLayout.T_IN -> dataRequest(chain, queue, r, sector, false);
            case BlkLayout.T_OUT -> dataRequest(chain, queue, r, sector, true);
            case BlkLayout.T_FLUSH -> device.negotiated(BlkLayout.F_FLUSH) ? submit(r)
                    : answer(chain, queue, statusSegment, statusOffset, BlkLayout.S_UNSUPP, 1, "FLUSH was not negotiated");
            case BlkLayout.T_GET_ID -> getId(chain, queue, statusSegment, statusOffset);
            case BlkLayout.T_DISCARD -> rangeRequest(chain, queue, r, BlkLayout.F_DISCARD, "DISCARD");
            case BlkLayout.T_WRITE_ZEROES -> rangeRequest(chain, queue, r, BlkLayout.F_WRITE_ZEROES, "WRITE_ZEROES");
            default -> answer(chain, queue, statusSegment, statusOffset, BlkLayout.S_UNSUPP, 1,
                    "unknown request type " + Integer.toUnsignedString(type));
        };
    }

    /** IN (disk to the writable buffers before the status byte) or OUT (the readable buffers after the header to disk). */
    private boolean dataRequest(DescriptorChain chain, DeviceQueue queue, BlkRequest r, long sector, boolean write) {
        if (write && device.isReadOnly()) {
            return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_IOERR, 1, "write to a read-only disk");
        }
        long bytes = write ? chain.readableBytes() - BlkLayout.HEADER_SIZE : chain.writableBytes() - 1;
        if (bytes > MAX_REQUEST_BYTES) {
            // Linux sends at most a few MiB; the cap keeps every buffer length and the used length a positive int.
            return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_IOERR, 1,
                    (write ? "OUT" : "IN") + " of " + bytes + " bytes, more than " + MAX_REQUEST_BYTES);
        }
        if ((bytes & (BlkLayout.SECTOR_SIZE - 1)) != 0) {
            return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_IOERR, 1,
                    (write ? "OUT" : "IN") + " of " + bytes + " bytes, not a multiple of 512");
        }
        long capacity = device.capacitySectors();
        if (sector < 0 || sector > capacity || (bytes >>> BlkLayout.SECTOR_SHIFT) > capacity - sector) {
            return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_IOERR, 1,
                    (write ? "OUT" : "IN") + " of " + bytes + " bytes at sector " + Long.toUnsignedString(sector)
                            + " runs past the disk's " + capacity + " sectors");
        }
        boolean fits = write ? collect(chain, r, 0, chain.readableCount(), BlkLayout.HEADER_SIZE, 0)
                : collect(chain, r, chain.readableCount(), chain.bufferCount(), 0, 1);
        if (!fits) {
            return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_IOERR, 1,
                    "data spans more than " + BlkRequest.MAX_BUFFERS + " buffers");
        }
        if (bytes == 0) {
            return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_OK, 1, null);
        }
        r.diskOffset = sector << BlkLayout.SECTOR_SHIFT;
        r.writethrough = write && !device.writeback();
        return submit(r);
    }

    /** Copies buffers {@code [first, end)} into the slot, without the first {@code skip} and last {@code trim} bytes. */
    private static boolean collect(DescriptorChain chain, BlkRequest r, int first, int end, long skip, int trim) {
        for (int i = first; i < end; i++) {
            long offset = chain.offset(i);
            int length = chain.length(i);
            if (skip > 0) {
                int s = (int) Math.min(skip, length);
                offset += s;
                length -= s;
                skip -= s;
            }
            if (i == end - 1) {
                length -= trim; // the status byte: every buffer holds at least one byte, so this one has it
            }
            if (length > 0 && !r.addBuffer(chain.segment(i), offset, length)) {
                return false;
            }
        }
        return true;
    }

    /** DISCARD / WRITE_ZEROES: an array of {sector, num_sectors, flags} after the header. */
    private boolean rangeRequest(DescriptorChain chain, DeviceQueue queue, BlkRequest r, int feature, String name) {
        if (!device.negotiated(feature)) {
            return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_UNSUPP, 1, name + " was not negotiated");
        }
        if (device.isReadOnly()) {
            return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_IOERR, 1, name + " on a read-only disk");
        }
        long payload = chain.readableBytes() - BlkLayout.HEADER_SIZE;
        if (payload == 0 || payload % BlkLayout.RANGE_SIZE != 0 || payload / BlkLayout.RANGE_SIZE > BlkRequest.MAX_RANGES) {
            return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_IOERR, 1,
                    name + " carries " + payload + " bytes of ranges: 1 to " + BlkRequest.MAX_RANGES + " ranges of 16 bytes");
        }
        long capacity = device.capacitySectors();
        for (long n = payload / BlkLayout.RANGE_SIZE; n > 0; n--) {
            reader.read(range, 0, BlkLayout.RANGE_SIZE); // the reader stands right after the header
            long sector = range.get(LE_LONG, BlkLayout.RANGE_SECTOR);
            long sectors = Integer.toUnsignedLong(range.get(LE_INT, BlkLayout.RANGE_NUM_SECTORS));
            int flags = range.get(LE_INT, BlkLayout.RANGE_FLAGS);
            boolean discard = feature == BlkLayout.F_DISCARD;
            if ((flags & ~BlkLayout.RANGE_FLAG_UNMAP) != 0 || (discard && flags != 0)) {
                // virtio 1.2 5.2.6.2: unknown flags, and unmap on a discard, are UNSUPP.
                return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_UNSUPP, 1,
                        name + " range flags 0x" + Integer.toHexString(flags));
            }
            if (sectors > BlkBackend.MAX_RANGE_SECTORS || sector < 0 || sector > capacity || sectors > capacity - sector) {
                return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_IOERR, 1,
                        name + " of " + sectors + " sectors at sector " + Long.toUnsignedString(sector)
                                + " (disk " + capacity + " sectors, at most " + BlkBackend.MAX_RANGE_SECTORS + " per range)");
            }
            r.addRange(sector << BlkLayout.SECTOR_SHIFT, sectors << BlkLayout.SECTOR_SHIFT);
        }
        if (feature == BlkLayout.F_DISCARD) {
            // Discarded sectors read back as anything (5.2.6.1): keeping the old bytes is the cheapest "anything".
            device.stats.discards.increment();
            return answer(chain, queue, r.statusSegment, r.statusOffset, BlkLayout.S_OK, 1, null);
        }
        return submit(r);
    }

    /** GET_ID: up to 20 bytes of the id before the status byte. */
    private boolean getId(DescriptorChain chain, DeviceQueue queue, MemorySegment statusSegment, long statusOffset) {
        int n = (int) Math.min(BlkLayout.ID_BYTES, chain.writableBytes() - 1);
        writer.reset(chain).write(device.idBytes(), 0, n);
        device.stats.getIds.increment();
        return answer(chain, queue, statusSegment, statusOffset, BlkLayout.S_OK, n + 1, null);
    }

    private boolean submit(BlkRequest r) {
        freeCount--;
        r.sequence = nextSequence++;
        outstanding.incrementAndGet();
        device.pool().submit(r);
        return true;
    }

    /** Answers a chain on the ring worker; {@code complaint} non-null logs it as a bad request. */
    private boolean answer(DescriptorChain chain, DeviceQueue queue, MemorySegment statusSegment, long statusOffset,
            byte status, int usedLength, String complaint) {
        if (complaint != null) {
            device.stats.refused(status);
            complaints++;
            LOG.log(complaints <= LOUD_COMPLAINTS ? Level.WARNING : Level.DEBUG, "ring {0}: bad request (head {1}): {2} -> {3}",
                    index, chain.head(), complaint, status == BlkLayout.S_UNSUPP ? "UNSUPP" : "IOERR");
        }
        statusSegment.set(ValueLayout.JAVA_BYTE, statusOffset, status);
        queue.addUsed(chain, usedLength);
        return false;
    }
}
