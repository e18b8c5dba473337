package io.vring.engine.split;

import io.vring.engine.DeviceQueue;
import io.vring.engine.EventIndex;
import io.vring.engine.Fences;
import io.vring.engine.QueueHealth;
import io.vring.engine.RingAddresses;
import io.vring.engine.RingKind;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.inflight.InflightBuffer;
import io.vring.engine.inflight.InflightRegionException;
import io.vring.engine.inflight.SplitInflightQueue;
import io.vring.engine.inflight.SplitInflightRecovery;
import io.vring.engine.memory.DirtyLog;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.GuestMemoryException;

import java.lang.foreign.MemorySegment;

import static io.vring.engine.split.SplitLayout.*;
import static io.vring.engine.split.SplitRingAccess.*;

/**
 * The device side of a split virtqueue.
 *
 * <p>Reads the driver's avail index with acquire and caches it, so the shared index line is touched
 * once per burst, not per chain. Used entries are staged and made visible by one release store of
 * the used index in {@link #publish()}. Every descriptor field is read once into a local (the
 * driver may rewrite the table under us) and validated before anything is translated.
 *
 * <p>With IN_ORDER, {@link #publish()} writes one used element for each run of chains that were all
 * fully used but the last, and advances the used index by the run's length (virtio 1.x §2.7.9).
 *
 * <p><b>Inflight tracking</b> ({@link #trackInflight}, off by default; off, the data path pays one
 * never-taken branch in {@code poll}, {@code addUsed} and {@code publish}). On, {@code poll} hands
 * out the recovered heads first, then marks each head it pops (counter, then flag) before returning
 * it; {@code publish} links the batch's heads into the region's batch list, publishes the used idx
 * (release), clears their flags and finally stores the region's used_idx: the libvhost-user/DPDK
 * protocol, which {@link SplitInflightQueue} explains store by store. The queue also keeps each
 * head's state privately, so a head the driver offers while the device still owns it breaks the
 * queue, and completing a head that is not in flight is refused.
 */
public final class SplitDeviceQueue implements DeviceQueue {
    private static final System.Logger LOG = System.getLogger(SplitDeviceQueue.class.getName());
    /** Head states, tracked queues only: not the device's, popped, completed but not yet published. */
    private static final byte HEAD_FREE = 0, HEAD_IN_FLIGHT = 1, HEAD_STAGED = 2;
    private static final int[] NO_HEADS = new int[0];

    private final QueueHealth health;
    private final GuestMemory memory;
    private final int size;
    private final int mask;
    private final long features;
    private final boolean eventIdx;
    private final boolean inOrder;
    private final boolean indirectAllowed;
    private final MemorySegment desc;
    private final MemorySegment avail;
    private final MemorySegment used;
    private final long usedEventOffset;
    private final long availEventOffset;
    private final DescriptorChain chain = new DescriptorChain();

    /** Writable bytes of each popped head: what "fully used" means for IN_ORDER batching. */
    private final long[] writableOfHead;
    private final int[] stagedHead;
    private final int[] stagedLen;
    private int staged;

    // Consumer state (this thread only).
    private int nextAvail;
    /** Last avail idx read from the driver; the shared index is re-read only when this runs dry. */
    private int cachedAvail;
    /** Producer state: our used idx, published with release. */
    private int usedIdx;
    /** Used idx at the previous notification check (the "old" of vring_need_event). */
    private int usedAtLastCheck;
    /** Entries published since the last check; past 65535 the event window is meaningless. */
    private int publishedSinceCheck;
    /** The avail index the queue was created at: poll() moved it iff chains were popped. */
    private final int startAvail;

    // Inflight tracking: all null/empty unless trackInflight() attached a region.
    private SplitInflightQueue inflight;
    private byte[] headState;
    /** Recovered heads in counter order, handed out by poll() before new ones. */
    private int[] resubmit = NO_HEADS;
    private int resubmitAt;
    /** Counter for the next popped head (fetch order across incarnations). */
    private long counter;

    // Dirty logging (live migration): null / -1 unless logDirty() turned it on.
    private DirtyLog dirtyLog;
    private long usedLogAddress = -1;
    /** Re-walks a head completed by token, to find the buffers to mark. */
    private DescriptorChain logChain;

    /**
     * A device queue over rings the driver placed at {@code rings}. The used index starts at the
     * value in the used ring and the next avail index at 0. A ring that is misaligned, not backed by
     * guest memory or of an invalid size starts broken.
     */
    public SplitDeviceQueue(String name, GuestMemory memory, int size, RingAddresses rings, long features) {
        this(name, memory, size, rings, features, 0);
    }

    /** As above, resuming at {@code nextAvailIndex} (vhost-user SET_VRING_BASE). */
    public SplitDeviceQueue(String name, GuestMemory memory, int size, RingAddresses rings, long features,
                            int nextAvailIndex) {
        if (memory == null || rings == null) {
            throw new IllegalArgumentException("memory and ring addresses are required");
        }
        this.health = new QueueHealth(name);
        this.memory = memory;
        this.features = features;
        this.eventIdx = VirtioFeatures.has(features, VirtioFeatures.EVENT_IDX);
        this.inOrder = VirtioFeatures.has(features, VirtioFeatures.IN_ORDER);
        this.indirectAllowed = VirtioFeatures.has(features, VirtioFeatures.INDIRECT_DESC);
        String problem = SplitLayout.isValidQueueSize(size) ? null
                : "queue size " + size + " is not a power of two in 1.." + MAX_QUEUE_SIZE;
        int n = problem == null ? size : 1;
        this.size = n;
        this.mask = n - 1;
        this.usedEventOffset = usedEventOffset(n);
        this.availEventOffset = availEventOffset(n);
        if (problem == null) {
            problem = misalignment(rings);
        }
        MemorySegment d = MemorySegment.NULL;
        MemorySegment a = MemorySegment.NULL;
        MemorySegment u = MemorySegment.NULL;
        if (problem == null) {
            try {
                d = memory.slice(rings.descriptorArea(), descriptorAreaSize(n));
                a = memory.slice(rings.driverArea(), driverAreaSize(n));
                u = memory.slice(rings.deviceArea(), deviceAreaSize(n));
            } catch (GuestMemoryException e) {
                problem = "ring area not backed by one guest memory region: " + e.getMessage();
            }
        }
        this.desc = d;
        this.avail = a;
        this.used = u;
        this.writableOfHead = new long[n];
        this.stagedHead = new int[n];
        this.stagedLen = new int[n];
        this.nextAvail = nextAvailIndex & 0xFFFF;
        this.cachedAvail = nextAvail;
        this.startAvail = nextAvail;
        if (problem == null) {
            this.usedIdx = Short.toUnsignedInt((short) U16.getAcquire(used, (long) USED_IDX));
            this.usedAtLastCheck = usedIdx;
        } else {
            health.markBroken(problem);
        }
    }

    private static String misalignment(RingAddresses rings) {
        if (rings.descriptorArea() % DESC_ALIGN != 0) {
            return "descriptor table at 0x" + Long.toHexString(rings.descriptorArea()) + " is not " + DESC_ALIGN + "-byte aligned";
        }
        if (rings.driverArea() % AVAIL_ALIGN != 0) {
            return "available ring at 0x" + Long.toHexString(rings.driverArea()) + " is not " + AVAIL_ALIGN + "-byte aligned";
        }
        if (rings.deviceArea() % USED_ALIGN != 0) {
            return "used ring at 0x" + Long.toHexString(rings.deviceArea()) + " is not " + USED_ALIGN + "-byte aligned";
        }
        return null;
    }

    /** Acquire: ring entries and descriptors the driver wrote before publishing idx are visible after this. */
    private int lvAvailIdx() {
        return Short.toUnsignedInt((short) U16.getAcquire(avail, (long) AVAIL_IDX));
    }

    /** Release: used elements written before this are visible to a driver that reads idx. */
    private void soUsedIdx(int idx) {
        U16.setRelease(used, (long) USED_IDX, (short) idx);
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public DescriptorChain poll() {
        if (health.isBroken()) {
            return null;
        }
        if (inflight != null) {
            return pollTracked();
        }
        return pollRing();
    }

    /** Recovered heads first, then the ring; each head popped from the ring is marked before it is returned. */
    private DescriptorChain pollTracked() {
        if (resubmitAt < resubmit.length) {
            int head = resubmit[resubmitAt++];
            if (!walk(chain, head)) {
                return null;
            }
            writableOfHead[head] = chain.writableBytes();
            return chain; // marked by the previous incarnation; its counter stands
        }
        DescriptorChain c = pollRing();
        if (c != null) {
            int head = c.head();
            if (headState[head] != HEAD_FREE) {
                health.markBroken("avail entry " + ((nextAvail - 1) & 0xFFFF) + " offers head " + head
                        + ", which the device still owns (size " + size + ")");
                return null;
            }
            headState[head] = HEAD_IN_FLIGHT;
            inflight.markInflight(head, counter++);
        }
        return c;
    }

    /** The next chain from the avail ring (the whole data path when inflight tracking is off). */
    private DescriptorChain pollRing() {
        if (nextAvail == cachedAvail) {
            int idx = lvAvailIdx();
            if (((idx - nextAvail) & 0xFFFF) > size) {
                health.markBroken("avail idx jumped from " + nextAvail + " to " + idx + ", size " + size);
                return null;
            }
            cachedAvail = idx;
            if (idx == nextAvail) {
                return null;
            }
        }
        int head = Short.toUnsignedInt(avail.get(LE_U16, availRingEntry(nextAvail & mask)));
        if (head >= size) {
            health.markBroken("avail ring entry " + nextAvail + " names head " + head + ", size " + size);
            return null;
        }
        if (!walk(chain, head)) {
            return null;
        }
        nextAvail = (nextAvail + 1) & 0xFFFF;
        writableOfHead[head] = chain.writableBytes();
        return chain;
    }

    /** Walks the chain at {@code head} into {@code c}; false (queue broken) on any violation. */
    private boolean walk(DescriptorChain c, int head) {
        c.reset(head);
        int index = head;
        for (int hops = 1; ; hops++) {
            if (hops > size) {
                return broken("descriptor chain from head " + head + " is longer than the queue (" + size + "): a loop");
            }
            long off = (long) index * DESC_SIZE;
            long addr = desc.get(LE_U64, off + DESC_ADDR);
            int len = desc.get(LE_U32, off + DESC_LEN);
            int flags = Short.toUnsignedInt(desc.get(LE_U16, off + DESC_FLAGS));
            int next = Short.toUnsignedInt(desc.get(LE_U16, off + DESC_NEXT));
            c.countDescriptor();
            if ((flags & F_INDIRECT) != 0) {
                if (!indirectAllowed) {
                    return broken("descriptor " + index + " is INDIRECT but INDIRECT_DESC was not negotiated");
                }
                if ((flags & F_NEXT) != 0) {
                    return broken("descriptor " + index + " has both INDIRECT and NEXT");
                }
                return walkIndirect(c, index, addr, len);
            }
            if (!append(c, index, addr, len, (flags & F_WRITE) != 0)) {
                return false;
            }
            if ((flags & F_NEXT) == 0) {
                return true;
            }
            if (next >= size) {
                return broken("descriptor " + index + " links to next " + next + ", size " + size);
            }
            index = next;
        }
    }

    private boolean walkIndirect(DescriptorChain c, int referencing, long tableAddr, int tableLen) {
        long bytes = Integer.toUnsignedLong(tableLen);
        if (bytes == 0 || bytes % DESC_SIZE != 0) {
            return broken("indirect table of descriptor " + referencing + " has length " + bytes + ", not a non-zero multiple of 16");
        }
        long entries = bytes / DESC_SIZE;
        if (entries > size) {
            return broken("indirect table of descriptor " + referencing + " has " + entries + " entries, more than the queue size " + size);
        }
        int r = memory.regionOf(tableAddr);
        if (r < 0 || bytes > memory.regionSize(r) - (tableAddr - memory.guestPhysicalStart(r))) {
            return broken("indirect table at 0x" + Long.toHexString(tableAddr) + "+" + bytes + " is not inside one guest memory region");
        }
        MemorySegment table = memory.segment(r);
        long base = tableAddr - memory.guestPhysicalStart(r);
        int index = 0;
        for (int hops = 1; ; hops++) {
            if (hops > entries) {
                return broken("indirect table at 0x" + Long.toHexString(tableAddr) + " loops (more than " + entries + " hops)");
            }
            long off = base + (long) index * DESC_SIZE;
            long addr = table.get(LE_U64, off + DESC_ADDR);
            int len = table.get(LE_U32, off + DESC_LEN);
            int flags = Short.toUnsignedInt(table.get(LE_U16, off + DESC_FLAGS));
            int next = Short.toUnsignedInt(table.get(LE_U16, off + DESC_NEXT));
            if ((flags & F_INDIRECT) != 0) {
                return broken("indirect table at 0x" + Long.toHexString(tableAddr) + " entry " + index + " is itself INDIRECT (nested)");
            }
            if (!append(c, index, addr, len, (flags & F_WRITE) != 0)) {
                return false;
            }
            if ((flags & F_NEXT) == 0) {
                return true;
            }
            if (next >= entries) {
                return broken("indirect table entry " + index + " links to next " + next + ", table has " + entries);
            }
            index = next;
        }
    }

    private boolean append(DescriptorChain c, int index, long addr, int len, boolean writable) {
        int result = c.append(memory, addr, len, writable);
        return switch (result) {
            case DescriptorChain.APPENDED -> true;
            case DescriptorChain.OUTSIDE_MEMORY -> broken("descriptor " + index + " buffer 0x" + Long.toHexString(addr) + "+"
                    + Integer.toUnsignedString(len) + " is outside guest memory or runs into a hole");
            case DescriptorChain.READABLE_AFTER_WRITABLE -> broken("descriptor " + index + " is device-readable after a writable one");
            case DescriptorChain.TOO_LONG -> broken("chain from head " + c.head() + " is longer than 2^32 bytes");
            default -> broken("chain from head " + c.head() + " has more than " + DescriptorChain.MAX_BUFFERS + " buffers");
        };
    }

    private boolean broken(String reason) {
        health.markBroken(reason);
        return false;
    }

    @Override
    public void addUsed(DescriptorChain c, int bytesWritten) {
        stage(c.token(), bytesWritten);
        if (dirtyLog != null) {
            dirtyLog.markWritten(c, Integer.toUnsignedLong(bytesWritten));
        }
    }

    @Override
    public void addUsed(int token, int bytesWritten) {
        stage(token, bytesWritten);
        if (dirtyLog != null) {
            // The head's descriptors still belong to the device (it has not published it): walk them again.
            DescriptorChain c = logChain;
            if (walk(c, token)) {
                dirtyLog.markWritten(c, Integer.toUnsignedLong(bytesWritten));
            }
        }
    }

    private void stage(int token, int bytesWritten) {
        if (token < 0 || token >= size) {
            throw new IllegalArgumentException("token " + token + " is not a head of a queue of size " + size);
        }
        if (staged == size) {
            throw new IllegalStateException("more than " + size + " used entries staged without publish()");
        }
        if (inflight != null) {
            if (headState[token] != HEAD_IN_FLIGHT) {
                throw new IllegalArgumentException("head " + token + " is not in flight"
                        + (headState[token] == HEAD_STAGED ? " (already completed, not yet published)" : ""));
            }
            headState[token] = HEAD_STAGED;
        }
        stagedHead[staged] = token;
        stagedLen[staged] = bytesWritten;
        staged++;
    }

    @Override
    public void publish() {
        if (staged == 0 || health.isBroken()) {
            staged = 0;
            return;
        }
        int count = staged;
        SplitInflightQueue track = inflight;
        if (track != null) {
            // Step 1: the batch list names every head of the batch before the used idx moves.
            track.linkBatch(stagedHead, count);
        }
        int idx = usedIdx;
        int i = 0;
        while (i < staged) {
            int run = 1;
            if (inOrder) {
                // A run ends at the first chain the device did not fill completely.
                while (i + run < staged && Integer.toUnsignedLong(stagedLen[i + run - 1]) == writableOfHead[stagedHead[i + run - 1]]) {
                    run++;
                }
            }
            int last = i + run - 1;
            long off = usedRingEntry(idx & mask);
            used.set(LE_U32, off + USED_ELEM_ID, stagedHead[last]);
            used.set(LE_U32, off + USED_ELEM_LEN, stagedLen[last]);
            idx = (idx + run) & 0xFFFF;
            i += run;
        }
        publishedSinceCheck += staged;
        staged = 0;
        int from = usedIdx;
        usedIdx = idx;
        soUsedIdx(idx);
        if (usedLogAddress >= 0) {
            logUsedElements(from, idx);
        }
        if (track != null) {
            // Steps 3 and 4, after the used idx release store: clear the heads, then the region's used_idx.
            for (int k = 0; k < count; k++) {
                int head = stagedHead[k];
                track.clearInflight(head);
                headState[head] = HEAD_FREE;
            }
            track.setUsedIdx(idx);
        }
    }

    /** Marks the used elements between used idx {@code from} and {@code to} (wrapping in the ring), then idx. */
    private void logUsedElements(int from, int to) {
        int count = (to - from) & 0xFFFF;
        int first = from & mask;
        int tail = Math.min(count, size - first);
        logUsedArea(usedRingEntry(first), (long) USED_ELEM_SIZE * tail);
        if (count > tail) {
            logUsedArea(usedRingEntry(0), (long) USED_ELEM_SIZE * (count - tail));
        }
        logUsedArea(USED_IDX, 2);
    }

    /** Marks {@code length} bytes the queue wrote at {@code offset} of the used ring, at the ring's log address. */
    private void logUsedArea(long offset, long length) {
        DirtyLog log = dirtyLog;
        if (log != null && usedLogAddress >= 0) {
            log.mark(usedLogAddress + offset, length);
        }
    }

    @Override
    public void logDirty(DirtyLog log, long usedLogAddress) {
        if (log != null && logChain == null) {
            logChain = new DescriptorChain();
        }
        this.dirtyLog = log;
        this.usedLogAddress = log == null ? -1 : usedLogAddress;
    }

    @Override
    public DirtyLog dirtyLog() {
        return dirtyLog;
    }

    @Override
    public int trackInflight(InflightBuffer buffer, int queueIndex) {
        buffer.checkAttachable(health.queueName(), RingKind.SPLIT, inflight != null, nextAvail != startAvail || staged != 0);
        if (health.isBroken()) {
            return 0; // its rings are unusable: leave the region for a queue that can serve it
        }
        SplitInflightQueue region;
        SplitInflightRecovery recovery;
        try {
            if (buffer.queueSize() != size) {
                throw new InflightRegionException(InflightRegionException.Kind.QUEUE_SIZE_MISMATCH,
                        "the inflight buffer holds queues of size " + buffer.queueSize() + ", the ring has size " + size);
            }
            region = buffer.splitQueue(queueIndex);
            recovery = region.recover(usedIdx);
            int outstanding = (lvAvailIdx() - usedIdx) & 0xFFFF;
            int heads = recovery.headsInCounterOrder().length;
            if (!recovery.fresh() && outstanding <= size && heads > outstanding) {
                throw new InflightRegionException(InflightRegionException.Kind.RING_MISMATCH,
                        "the region holds " + heads + " heads in flight, the driver has only " + outstanding
                                + " outstanding (avail idx " + lvAvailIdx() + ", used idx " + usedIdx + ")");
            }
        } catch (InflightRegionException e) {
            health.markBroken("inflight region of queue " + queueIndex + " refused: " + e.getMessage());
            throw e;
        }
        byte[] state = new byte[size];
        for (int head : recovery.headsInCounterOrder()) {
            state[head] = HEAD_IN_FLIGHT; // recovery returns each head once
        }
        headState = state;
        resubmit = recovery.headsInCounterOrder();
        resubmitAt = 0;
        counter = recovery.nextCounter();
        if (!recovery.fresh()) {
            nextAvail = recovery.nextAvail();
            cachedAvail = nextAvail;
        }
        inflight = region;
        // A fresh region is every first start: worth a line only when debugging.
        System.Logger.Level level = recovery.fresh() ? System.Logger.Level.DEBUG : System.Logger.Level.INFO;
        LOG.log(level, "{0}: inflight tracking on ({1}), resuming at avail idx {2} (base was {3}),"
                        + " used idx {4}, {5} chains to resubmit, {6} heads of a half-published batch finished",
                health.queueName(), recovery.fresh() ? "fresh region" : "recovered", nextAvail, startAvail, usedIdx,
                resubmit.length, recovery.batchFinished());
        return resubmit.length;
    }

    @Override
    public boolean isTrackingInflight() {
        return inflight != null;
    }

    @Override
    public boolean needsNotification() {
        int published = publishedSinceCheck;
        if (published == 0 || health.isBroken()) {
            return false; // nothing published since the last check (an idle duty cycle): no fence
        }
        // Full fence: the used idx store must be visible before we read the driver's suppression
        // state, or the driver may sleep on a used entry it never hears about.
        Fences.storeLoad();
        int old = usedAtLastCheck;
        int now = usedIdx;
        usedAtLastCheck = now;
        publishedSinceCheck = 0;
        if (eventIdx) {
            if (published >= 0xFFFF) {
                return true; // the u16 window wrapped: vring_need_event can no longer tell
            }
            int usedEvent = Short.toUnsignedInt((short) U16.getAcquire(avail, usedEventOffset));
            return EventIndex.needsEvent(usedEvent, now, old);
        }
        int flags = Short.toUnsignedInt((short) U16.getAcquire(avail, (long) AVAIL_FLAGS));
        return (flags & AVAIL_F_NO_INTERRUPT) == 0;
    }

    @Override
    public boolean enableNotification() {
        if (health.isBroken()) {
            return false;
        }
        if (eventIdx) {
            U16.setRelease(used, availEventOffset, (short) nextAvail);
            logUsedArea(availEventOffset, 2);
        } else {
            U16.setRelease(used, (long) USED_FLAGS, (short) 0);
            logUsedArea(USED_FLAGS, 2);
        }
        // Full fence: publish the request for kicks before re-reading avail idx, or a chain added
        // just now is seen by neither side and the worker sleeps on it.
        Fences.storeLoad();
        return hasAvailable();
    }

    @Override
    public void disableNotification() {
        if (!eventIdx && !health.isBroken()) {
            U16.setOpaque(used, (long) USED_FLAGS, (short) USED_F_NO_NOTIFY);
            logUsedArea(USED_FLAGS, 2);
        }
        // With EVENT_IDX, leaving avail_event behind the driver's index is what suppresses kicks.
    }

    @Override
    public boolean hasAvailable() {
        if (health.isBroken()) {
            return false;
        }
        if (nextAvail != cachedAvail || resubmitAt < resubmit.length) {
            return true;
        }
        int idx = lvAvailIdx();
        return idx != nextAvail;
    }

    @Override
    public int availPosition() {
        return nextAvail;
    }

    @Override
    public int usedPosition() {
        return usedIdx;
    }

    /** The used index this queue last published. */
    public int usedIndex() {
        return usedIdx;
    }

    @Override
    public QueueHealth health() {
        return health;
    }

    @Override
    public long features() {
        return features;
    }

    @Override
    public String toString() {
        return health.queueName() + "[split, size=" + size + ", nextAvail=" + nextAvail + ", cachedAvail=" + cachedAvail
                + ", usedIdx=" + usedIdx + (health.isBroken() ? ", broken: " + health.reason() : "") + "]";
    }
}
