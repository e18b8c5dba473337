package io.vring.engine.split;

import io.vring.engine.DriverQueue;
import io.vring.engine.EventIndex;
import io.vring.engine.Fences;
import io.vring.engine.IndirectArea;
import io.vring.engine.QueueBrokenException;
import io.vring.engine.QueueHealth;
import io.vring.engine.RingAddresses;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.memory.GuestMemory;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

import static io.vring.engine.split.SplitLayout.*;
import static io.vring.engine.split.SplitRingAccess.*;

/**
 * The driver side of a split virtqueue: offers chains, collects used ones.
 *
 * <p>The free descriptors form a FIFO kept in private memory (never read back from the shared table,
 * which a hostile device could rewrite). Freed chains return to the tail, so with IN_ORDER the table
 * is used as a ring, as the spec asks. Chains are made visible by one release store of the avail
 * index per {@link #publish()}; the device's used index is cached and re-read only when the cache
 * runs dry.
 */
public final class SplitDriverQueue implements DriverQueue {

    private final QueueHealth health;
    private final GuestMemory memory;
    private final int size;
    private final int mask;
    private final long features;
    private final boolean eventIdx;
    private final boolean inOrder;
    private final IndirectArea indirect;
    private final MemorySegment desc;
    private final MemorySegment avail;
    private final MemorySegment used;
    private final long usedEventOffset;
    private final long availEventOffset;

    // Free descriptor FIFO.
    private final int[] freeRing;
    private int freeHead;
    private int freeCount;
    /** Private copy of each descriptor's next link. */
    private final int[] nextOf;

    // Per head: descriptors held, writable bytes, outstanding flag.
    private final int[] descriptorsOf;
    private final long[] writableOf;
    private final boolean[] outstandingHead;
    /** Heads in submission order, for IN_ORDER retirement. */
    private final int[] submitted;
    private int submittedHead;
    private int outstanding;

    // Chain being built.
    private final long[] pendingAddr;
    private final int[] pendingLen;
    private final boolean[] pendingWritable;
    private int pending;

    // Avail side.
    private int availShadow;
    /** The avail idx last stored to the ring (never read back: the device could rewrite it). */
    private int availPublished;
    private int availAtLastKickCheck;
    private int addedSinceKickCheck;

    // Used side.
    private int lastUsed;
    private int cachedUsed;
    private int usedLength;
    /** IN_ORDER batch being retired: id of its last chain and its length, or -1. */
    private int batchLastId = -1;
    private int batchLastLen;

    /**
     * A driver queue that owns the rings at {@code rings} (it zeroes them) in {@code memory}.
     *
     * @param indirect memory for indirect tables, or null if {@link #submitIndirect()} is not used
     */
    public SplitDriverQueue(String name, GuestMemory memory, int size, RingAddresses rings, long features,
                            IndirectArea indirect) {
        if (!SplitLayout.isValidQueueSize(size)) {
            throw new IllegalArgumentException("queue size " + size + " is not a power of two in 1.." + MAX_QUEUE_SIZE);
        }
        if (rings.descriptorArea() % DESC_ALIGN != 0 || rings.driverArea() % AVAIL_ALIGN != 0
                || rings.deviceArea() % USED_ALIGN != 0) {
            throw new IllegalArgumentException("misaligned split ring areas " + rings);
        }
        this.health = new QueueHealth(name);
        this.memory = memory;
        this.size = size;
        this.mask = size - 1;
        this.features = features;
        this.eventIdx = VirtioFeatures.has(features, VirtioFeatures.EVENT_IDX);
        this.inOrder = VirtioFeatures.has(features, VirtioFeatures.IN_ORDER);
        this.indirect = indirect;
        if (indirect != null && !VirtioFeatures.has(features, VirtioFeatures.INDIRECT_DESC)) {
            throw new IllegalArgumentException("an indirect area needs INDIRECT_DESC in the features");
        }
        if (indirect != null && !memory.isBacked(indirect.guestAddress(), indirect.bytesFor(size))) {
            throw new IllegalArgumentException("indirect area " + indirect + " is not backed by guest memory");
        }
        this.desc = memory.slice(rings.descriptorArea(), descriptorAreaSize(size));
        this.avail = memory.slice(rings.driverArea(), driverAreaSize(size));
        this.used = memory.slice(rings.deviceArea(), deviceAreaSize(size));
        this.usedEventOffset = usedEventOffset(size);
        this.availEventOffset = availEventOffset(size);
        desc.fill((byte) 0);
        avail.fill((byte) 0);
        used.fill((byte) 0);
        VarHandle.releaseFence();

        this.freeRing = new int[size];
        for (int i = 0; i < size; i++) {
            freeRing[i] = i;
        }
        this.freeCount = size;
        this.nextOf = new int[size];
        this.descriptorsOf = new int[size];
        this.writableOf = new long[size];
        this.outstandingHead = new boolean[size];
        this.submitted = new int[size];
        int maxPending = indirect == null ? size : Math.max(size, indirect.maxEntries());
        this.pendingAddr = new long[maxPending];
        this.pendingLen = new int[maxPending];
        this.pendingWritable = new boolean[maxPending];
    }

    /** Acquire: used elements the device wrote before publishing idx are visible after this. */
    private int lvUsedIdx() {
        return Short.toUnsignedInt((short) U16.getAcquire(used, (long) USED_IDX));
    }

    /** Release: descriptors and avail entries written before this are visible to a device that reads idx. */
    private void soAvailIdx(int idx) {
        U16.setRelease(avail, (long) AVAIL_IDX, (short) idx);
    }

    private void checkNotBroken() {
        if (health.isBroken()) {
            throw new QueueBrokenException(health.queueName() + ": " + health.reason());
        }
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public int freeDescriptors() {
        return freeCount;
    }

    @Override
    public void addReadable(long gpa, int length) {
        addPending(gpa, length, false);
    }

    @Override
    public void addWritable(long gpa, int length) {
        addPending(gpa, length, true);
    }

    private void addPending(long gpa, int length, boolean writable) {
        checkNotBroken();
        if (pending == pendingAddr.length) {
            throw new IllegalStateException("a chain holds at most " + pendingAddr.length + " buffers");
        }
        if (!writable && pending > 0 && pendingWritable[pending - 1]) {
            throw new IllegalStateException("device-readable buffers must come before device-writable ones");
        }
        pendingAddr[pending] = gpa;
        pendingLen[pending] = length;
        pendingWritable[pending] = writable;
        pending++;
    }

    @Override
    public int submit() {
        checkNotBroken();
        int n = pending;
        if (n == 0) {
            throw new IllegalStateException("submit() without buffers");
        }
        pending = 0;
        if (n > size || freeCount < n) {
            return -1;
        }
        int head = takeFree();
        int index = head;
        long writable = 0;
        for (int i = 0; i < n; i++) {
            boolean last = i == n - 1;
            int next = last ? 0 : takeFree();
            nextOf[index] = next;
            writeDescriptor(desc, (long) index * DESC_SIZE, pendingAddr[i], pendingLen[i],
                    (pendingWritable[i] ? F_WRITE : 0) | (last ? 0 : F_NEXT), next);
            if (pendingWritable[i]) {
                writable += Integer.toUnsignedLong(pendingLen[i]);
            }
            index = next;
        }
        return offer(head, n, writable);
    }

    @Override
    public int submitIndirect() {
        checkNotBroken();
        if (indirect == null) {
            throw new IllegalStateException("no indirect area was given to this queue");
        }
        int n = pending;
        if (n == 0) {
            throw new IllegalStateException("submitIndirect() without buffers");
        }
        if (n > indirect.maxEntries()) {
            pending = 0;
            throw new IllegalStateException("indirect tables hold " + indirect.maxEntries() + " entries, chain has " + n);
        }
        pending = 0;
        if (freeCount < 1) {
            return -1;
        }
        int head = takeFree();
        long tableGpa = indirect.tableAddress(head);
        int r = memory.regionOf(tableGpa);
        MemorySegment table = memory.segment(r);
        long base = tableGpa - memory.guestPhysicalStart(r);
        long writable = 0;
        for (int i = 0; i < n; i++) {
            boolean last = i == n - 1;
            writeDescriptor(table, base + (long) i * DESC_SIZE, pendingAddr[i], pendingLen[i],
                    (pendingWritable[i] ? F_WRITE : 0) | (last ? 0 : F_NEXT), last ? 0 : i + 1);
            if (pendingWritable[i]) {
                writable += Integer.toUnsignedLong(pendingLen[i]);
            }
        }
        nextOf[head] = 0;
        writeDescriptor(desc, (long) head * DESC_SIZE, tableGpa, n * DESC_SIZE, F_INDIRECT, 0);
        return offer(head, 1, writable);
    }

    private static void writeDescriptor(MemorySegment s, long off, long addr, int len, int flags, int next) {
        s.set(LE_U64, off + DESC_ADDR, addr);
        s.set(LE_U32, off + DESC_LEN, len);
        s.set(LE_U16, off + DESC_FLAGS, (short) flags);
        s.set(LE_U16, off + DESC_NEXT, (short) next);
    }

    private int offer(int head, int descriptors, long writable) {
        descriptorsOf[head] = descriptors;
        writableOf[head] = writable;
        outstandingHead[head] = true;
        if (inOrder) {
            submitted[(submittedHead + outstanding) & mask] = head;
        }
        outstanding++;
        avail.set(LE_U16, availRingEntry(availShadow & mask), (short) head);
        availShadow = (availShadow + 1) & 0xFFFF;
        return head;
    }

    private int takeFree() {
        int d = freeRing[freeHead];
        freeHead = (freeHead + 1) & mask;
        freeCount--;
        return d;
    }

    private void release(int head) {
        int index = head;
        for (int i = descriptorsOf[head]; i > 0; i--) {
            freeRing[(freeHead + freeCount) & mask] = index;
            freeCount++;
            index = nextOf[index];
        }
        outstandingHead[head] = false;
        outstanding--;
    }

    @Override
    public void publish() {
        checkNotBroken();
        int added = (availShadow - availPublished) & 0xFFFF;
        if (added != 0) {
            addedSinceKickCheck += added;
            availPublished = availShadow;
            soAvailIdx(availShadow);
        }
    }

    @Override
    public boolean needsKick() {
        checkNotBroken();
        int added = addedSinceKickCheck;
        if (added == 0) {
            return false; // nothing published since the last check: no fence, nothing to tell
        }
        // Full fence: the avail idx store must be visible before we read the device's suppression
        // state, or the device may sleep on a chain it is never told about.
        Fences.storeLoad();
        int old = availAtLastKickCheck;
        int now = availPublished;
        availAtLastKickCheck = now;
        addedSinceKickCheck = 0;
        if (eventIdx) {
            if (added >= 0xFFFF) {
                return true;
            }
            int availEvent = Short.toUnsignedInt((short) U16.getAcquire(used, availEventOffset));
            return EventIndex.needsEvent(availEvent, now, old);
        }
        return (Short.toUnsignedInt((short) U16.getAcquire(used, (long) USED_FLAGS)) & USED_F_NO_NOTIFY) == 0;
    }

    @Override
    public int pollUsed() {
        checkNotBroken();
        if (batchLastId >= 0) {
            return retireInOrder();
        }
        if (lastUsed == cachedUsed) {
            int idx = lvUsedIdx();
            int advanced = (idx - lastUsed) & 0xFFFF;
            if (advanced > outstanding) {
                return broken("used idx moved from " + lastUsed + " to " + idx + " with " + outstanding + " chains outstanding");
            }
            cachedUsed = idx;
            if (advanced == 0) {
                return -1;
            }
        }
        long off = usedRingEntry(lastUsed & mask);
        int id = used.get(LE_U32, off + USED_ELEM_ID);
        int len = used.get(LE_U32, off + USED_ELEM_LEN);
        if (id < 0 || id >= size || !outstandingHead[id]) {
            return broken("used ring entry " + lastUsed + " names id " + Integer.toUnsignedString(id) + ", which is not outstanding");
        }
        if (Integer.toUnsignedLong(len) > writableOf[id]) {
            return broken("used ring entry " + lastUsed + " reports " + Integer.toUnsignedString(len) + " bytes written to id "
                    + id + ", which has " + writableOf[id] + " writable bytes");
        }
        if (inOrder) {
            batchLastId = id;
            batchLastLen = len;
            return retireInOrder();
        }
        lastUsed = (lastUsed + 1) & 0xFFFF;
        usedLength = len;
        release(id);
        return id;
    }

    /** Retires the oldest outstanding chain of an IN_ORDER batch whose last id is {@code batchLastId}. */
    private int retireInOrder() {
        if (lastUsed == cachedUsed) {
            cachedUsed = lvUsedIdx();
            if (lastUsed == cachedUsed) {
                return broken("IN_ORDER used entry names id " + batchLastId + " but used idx " + cachedUsed
                        + " ends before it is reached");
            }
        }
        int head = submitted[submittedHead];
        submittedHead = (submittedHead + 1) & mask;
        lastUsed = (lastUsed + 1) & 0xFFFF;
        if (head == batchLastId) {
            usedLength = batchLastLen;
            batchLastId = -1;
        } else {
            usedLength = (int) writableOf[head];
        }
        release(head);
        return head;
    }

    private int broken(String reason) {
        health.markBroken(reason);
        throw new QueueBrokenException(health.queueName() + ": " + reason);
    }

    @Override
    public int usedLength() {
        return usedLength;
    }

    @Override
    public boolean enableUsedNotification() {
        checkNotBroken();
        if (eventIdx) {
            U16.setRelease(avail, usedEventOffset, (short) lastUsed);
        } else {
            U16.setRelease(avail, (long) AVAIL_FLAGS, (short) 0);
        }
        // Full fence: publish the request for calls before re-reading used idx, or a chain used just
        // now is seen by neither side and the driver sleeps on it.
        Fences.storeLoad();
        return batchLastId >= 0 || lvUsedIdx() != lastUsed;
    }

    @Override
    public void disableUsedNotification() {
        checkNotBroken();
        if (!eventIdx) {
            U16.setOpaque(avail, (long) AVAIL_FLAGS, (short) AVAIL_F_NO_INTERRUPT);
        }
    }

    @Override
    public int outstanding() {
        return outstanding;
    }

    @Override
    public int usedPosition() {
        return lastUsed;
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
        return health.queueName() + "[split driver, size=" + size + ", availIdx=" + availShadow + ", lastUsed=" + lastUsed
                + ", cachedUsed=" + cachedUsed + ", outstanding=" + outstanding + ", free=" + freeCount
                + (health.isBroken() ? ", broken: " + health.reason() : "") + "]";
    }
}
