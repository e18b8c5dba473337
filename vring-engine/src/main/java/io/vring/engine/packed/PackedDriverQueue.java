package io.vring.engine.packed;

import static io.vring.engine.packed.PackedRingAccess.*;
import static io.vring.engine.packed.PackedLayout.DESC_SIZE;
import static io.vring.engine.packed.PackedLayout.F_INDIRECT;
import static io.vring.engine.packed.PackedLayout.F_NEXT;
import static io.vring.engine.packed.PackedLayout.F_WRITE;

import io.vring.engine.DriverQueue;
import io.vring.engine.IndirectArea;
import io.vring.engine.QueueBrokenException;
import io.vring.engine.Fences;
import io.vring.engine.QueueHealth;
import io.vring.engine.RingAddresses;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.GuestMemoryException;

import java.lang.foreign.MemorySegment;

/**
 * The driver side of a packed virtqueue.
 *
 * <p><b>Visibility.</b> Unlike a split ring, where one avail index publishes a batch, each packed
 * chain is published by its own head flags: {@link #submit()} writes descriptors 2..k, then the
 * head's fields, then the head's flags with release, so the chain is visible to the device as soon
 * as {@code submit} returns. {@link #publish()} only closes the batch that {@link #needsKick()}
 * judges.
 *
 * <p><b>Ids.</b> Buffer ids are below {@code size} and come from a free list. Per id the queue
 * remembers how many ring slots the chain took and how many bytes the device may write, to advance
 * past the used descriptor and to check the used length.
 *
 * <p><b>Untrusted input.</b> A used id that is out of range or not outstanding, or a used length
 * over the chain's writable bytes, marks the queue broken; then every data call ({@code add*},
 * {@code submit*}, {@code publish}, {@code needsKick}, {@code pollUsed}, {@code enable/disable*})
 * throws {@link QueueBrokenException}.
 *
 * <p>Shared accessors are named for their ordering ({@code lv} acquire, {@code lp} plain,
 * {@code so} release, {@code sp} plain). Single-threaded; does not allocate after construction.
 */
public final class PackedDriverQueue implements DriverQueue {

    private final int size;
    private final long features;
    private final boolean eventIdx;
    private final boolean inOrder;
    private final QueueHealth health;
    private final MemorySegment ring;
    private final MemorySegment driverEvent;
    private final MemorySegment deviceEvent;
    private final IndirectArea indirect;
    private final MemorySegment indirectTables;

    /* The chain being built. */
    private final long[] pendingAddr;
    private final int[] pendingLen;
    private final boolean[] pendingWritable;
    private int pendingCount;
    private boolean pendingHasWritable;

    /* Ids: a stack of free ones, and per id what its chain took. */
    private final int[] freeIds;
    private int freeIdCount;
    private final int[] idSlots;
    private final long[] idWritable;
    private final boolean[] idOutstanding;
    private int outstanding;

    /* IN_ORDER: outstanding ids in submission order, and the batch being retired. */
    private final int[] order;
    private int orderHead;
    private int orderCount;
    private int batchLastId = -1;
    private int batchLastLen;

    private int availSlot;
    private int availWrap = 1;
    private int usedSlot;
    private int usedWrap = 1;
    private int freeSlots;
    private int usedLength;

    /* Kick bookkeeping: slots submitted since publish(), and the published batch not yet judged. */
    private int unpublishedSlots;
    private int kickSlots;
    private int kickSlot;
    private int kickWrap = 1;

    /**
     * Zeroes the descriptor ring (nothing available in lap 1) and both event structures (ENABLE).
     *
     * @param indirect guest memory for indirect tables, or null if {@link #submitIndirect()} is not used
     * @throws IllegalArgumentException if the size is not 1..32768 or an area is misaligned or not backed
     */
    public PackedDriverQueue(String name, GuestMemory memory, int size, RingAddresses rings, long features,
                             IndirectArea indirect) {
        if (name == null || memory == null || rings == null) {
            throw new IllegalArgumentException("name, memory and rings are required");
        }
        if (size < 1 || size > PackedLayout.MAX_QUEUE_SIZE) {
            throw new IllegalArgumentException("queue size " + size + " is outside 1.." + PackedLayout.MAX_QUEUE_SIZE);
        }
        this.size = size;
        this.features = features;
        this.eventIdx = VirtioFeatures.has(features, VirtioFeatures.EVENT_IDX);
        this.inOrder = VirtioFeatures.has(features, VirtioFeatures.IN_ORDER);
        this.health = new QueueHealth(name);
        this.ring = area(memory, "descriptor ring", rings.descriptorArea(), PackedLayout.descriptorRingSize(size),
                PackedLayout.DESC_RING_ALIGN);
        this.driverEvent = area(memory, "driver event structure", rings.driverArea(), PackedLayout.EVENT_AREA_SIZE,
                PackedLayout.EVENT_AREA_ALIGN);
        this.deviceEvent = area(memory, "device event structure", rings.deviceArea(), PackedLayout.EVENT_AREA_SIZE,
                PackedLayout.EVENT_AREA_ALIGN);
        this.indirect = indirect;
        this.indirectTables = indirect == null ? null
                : area(memory, "indirect area", indirect.guestAddress(), indirect.bytesFor(size), DESC_SIZE);
        ring.fill((byte) 0);
        driverEvent.fill((byte) 0);
        deviceEvent.fill((byte) 0);

        this.pendingAddr = new long[size];
        this.pendingLen = new int[size];
        this.pendingWritable = new boolean[size];
        this.freeIds = new int[size];
        for (int i = 0; i < size; i++) {
            freeIds[i] = size - 1 - i; // id 0 is handed out first
        }
        this.freeIdCount = size;
        this.idSlots = new int[size];
        this.idWritable = new long[size];
        this.idOutstanding = new boolean[size];
        this.order = new int[size];
        this.freeSlots = size;
    }

    private static MemorySegment area(GuestMemory memory, String what, long gpa, long bytes, int align) {
        if ((gpa & (align - 1)) != 0) {
            throw new IllegalArgumentException(what + " at GPA 0x" + Long.toHexString(gpa) + " is not " + align + "-byte aligned");
        }
        MemorySegment s;
        try {
            s = memory.slice(gpa, bytes);
        } catch (GuestMemoryException e) {
            throw new IllegalArgumentException(what + ": " + e.getMessage(), e);
        }
        if ((s.address() & (align - 1)) != 0) {
            throw new IllegalArgumentException(what + " is mapped at a host address that is not " + align + "-byte aligned");
        }
        return s;
    }

    // ---- DriverQueue ----

    @Override
    public int size() {
        return size;
    }

    @Override
    public int freeDescriptors() {
        return freeSlots;
    }

    @Override
    public void addReadable(long gpa, int length) {
        checkUsable();
        if (pendingHasWritable) {
            throw new IllegalStateException("a readable buffer cannot follow a writable one in a chain");
        }
        add(gpa, length, false);
    }

    @Override
    public void addWritable(long gpa, int length) {
        checkUsable();
        add(gpa, length, true);
        pendingHasWritable = true;
    }

    private void add(long gpa, int length, boolean writable) {
        if (pendingCount == size) {
            throw new IllegalStateException("a chain holds at most " + size + " buffers (the queue size)");
        }
        pendingAddr[pendingCount] = gpa;
        pendingLen[pendingCount] = length;
        pendingWritable[pendingCount] = writable;
        pendingCount++;
    }

    private long pendingWritableBytes() {
        long total = 0;
        for (int i = 0; i < pendingCount; i++) {
            if (pendingWritable[i]) {
                total += Integer.toUnsignedLong(pendingLen[i]);
            }
        }
        return total;
    }

    @Override
    public int submit() {
        checkUsable();
        int k = pendingCount;
        if (k == 0) {
            throw new IllegalStateException("submit needs at least one buffer");
        }
        if (freeSlots < k || freeIdCount == 0) {
            dropPending();
            return -1;
        }
        int id = freeIds[--freeIdCount];
        MemorySegment ring = this.ring;
        int head = availSlot;
        int headWrap = availWrap;
        // Descriptors 2..k first, flags included; the device reads them only after the head's flags.
        int slot = head;
        int wrap = headWrap;
        for (int i = 1; i < k; i++) {
            if (++slot == size) {
                slot = 0;
                wrap ^= 1;
            }
            long off = PackedLayout.descriptorOffset(slot);
            spDescriptor(ring, off, pendingAddr[i], pendingLen[i], id);
            spFlags(ring, off, PackedLayout.availableFlags(wrap) | (i < k - 1 ? F_NEXT : 0)
                    | (pendingWritable[i] ? F_WRITE : 0));
        }
        long headOff = PackedLayout.descriptorOffset(head);
        spDescriptor(ring, headOff, pendingAddr[0], pendingLen[0], id);
        soFlags(ring, headOff, PackedLayout.availableFlags(headWrap) | (k > 1 ? F_NEXT : 0)
                | (pendingWritable[0] ? F_WRITE : 0));
        if (++slot == size) {
            slot = 0;
            wrap ^= 1;
        }
        return accept(id, k, pendingWritableBytes(), slot, wrap);
    }

    @Override
    public int submitIndirect() {
        checkUsable();
        int n = pendingCount;
        if (n == 0) {
            throw new IllegalStateException("submitIndirect needs at least one buffer");
        }
        if (indirect == null || !VirtioFeatures.has(features, VirtioFeatures.INDIRECT_DESC)) {
            throw new IllegalStateException("indirect chains need VIRTIO_F_INDIRECT_DESC and an indirect area");
        }
        if (n > indirect.maxEntries()) {
            throw new IllegalStateException("chain of " + n + " buffers does not fit an indirect table of "
                    + indirect.maxEntries() + " entries");
        }
        if (freeSlots < 1 || freeIdCount == 0) {
            dropPending();
            return -1;
        }
        int id = freeIds[--freeIdCount];
        MemorySegment tables = indirectTables;
        long tableOff = indirect.tableAddress(id) - indirect.guestAddress();
        for (int i = 0; i < n; i++) {
            long off = tableOff + PackedLayout.descriptorOffset(i);
            spDescriptor(tables, off, pendingAddr[i], pendingLen[i], 0);
            spFlags(tables, off, pendingWritable[i] ? F_WRITE : 0); // only WRITE means anything in a table
        }
        int head = availSlot;
        long headOff = PackedLayout.descriptorOffset(head);
        spDescriptor(ring, headOff, indirect.tableAddress(id), n * DESC_SIZE, id);
        soFlags(ring, headOff, PackedLayout.availableFlags(availWrap) | F_INDIRECT);
        int slot = head + 1;
        int wrap = availWrap;
        if (slot == size) {
            slot = 0;
            wrap ^= 1;
        }
        return accept(id, 1, pendingWritableBytes(), slot, wrap);
    }

    private int accept(int id, int slots, long writable, int nextSlot, int nextWrap) {
        idSlots[id] = slots;
        idWritable[id] = writable;
        idOutstanding[id] = true;
        outstanding++;
        if (inOrder) {
            int tail = orderHead + orderCount;
            order[tail < size ? tail : tail - size] = id;
            orderCount++;
        }
        availSlot = nextSlot;
        availWrap = nextWrap;
        freeSlots -= slots;
        unpublishedSlots += slots;
        dropPending();
        return id;
    }

    private void dropPending() {
        pendingCount = 0;
        pendingHasWritable = false;
    }

    /** {@inheritDoc} Packed chains are already visible; this closes the batch {@link #needsKick()} judges. */
    @Override
    public void publish() {
        checkUsable();
        if (unpublishedSlots == 0) {
            return;
        }
        kickSlots += unpublishedSlots;
        unpublishedSlots = 0;
        kickSlot = availSlot;
        kickWrap = availWrap;
    }

    @Override
    public boolean needsKick() {
        checkUsable();
        int added = kickSlots;
        if (added == 0) {
            return false;
        }
        // Full fence (P2): the head flags stored by submit() must be visible before the device's
        // event structure is read; otherwise the device may re-enable kicks, re-check an old ring,
        // and sleep while we read its old DISABLE and skip the kick.
        Fences.storeLoad();
        int word = lvEvent(deviceEvent);
        kickSlots = 0;
        int flags = (word >>> PackedLayout.EVENT_FLAGS_SHIFT) & PackedLayout.EVENT_FLAGS_MASK;
        if (flags == PackedLayout.RING_EVENT_FLAGS_DISABLE) {
            return false;
        }
        if (flags != PackedLayout.RING_EVENT_FLAGS_DESC || !eventIdx || added >= size) {
            return true;
        }
        return PackedEventWindow.passedAdding(word & 0xFFFF, kickSlot, kickWrap, added, size);
    }

    @Override
    public int pollUsed() {
        checkUsable();
        if (batchLastId >= 0) {
            return retireInOrder();
        }
        long off = PackedLayout.descriptorOffset(usedSlot);
        int flags = lvFlags(ring, off);
        if (!PackedLayout.isUsed(flags, usedWrap)) {
            return -1;
        }
        int id = lpId(ring, off);
        int len = (flags & F_WRITE) != 0 ? lpLen(ring, off) : 0;
        if (id >= size || !idOutstanding[id]) {
            throw broken("used descriptor at slot " + usedSlot + " carries id " + id
                    + (id >= size ? ", not below the queue size " + size : ", which is not outstanding")
                    + " (queue size " + size + ")");
        }
        if (Integer.toUnsignedLong(len) > idWritable[id]) {
            throw broken("used descriptor at slot " + usedSlot + " reports id " + id + " len "
                    + Integer.toUnsignedString(len) + " over its writable limit " + idWritable[id]
                    + " (queue size " + size + ")");
        }
        if (inOrder) {
            batchLastId = id;
            batchLastLen = len;
            return retireInOrder();
        }
        usedLength = len;
        retire(id);
        return id;
    }

    /** IN_ORDER: hands back the oldest outstanding id; ids before the reported one were fully used. */
    private int retireInOrder() {
        int id = order[orderHead];
        orderHead = orderHead + 1 == size ? 0 : orderHead + 1;
        orderCount--;
        if (id == batchLastId) {
            usedLength = batchLastLen;
            batchLastId = -1;
        } else {
            usedLength = (int) idWritable[id];
        }
        retire(id);
        return id;
    }

    private void retire(int id) {
        int slots = idSlots[id];
        idOutstanding[id] = false;
        outstanding--;
        freeIds[freeIdCount++] = id;
        freeSlots += slots;
        int slot = usedSlot + slots;
        if (slot >= size) {
            slot -= size;
            usedWrap ^= 1;
        }
        usedSlot = slot;
    }

    @Override
    public int usedLength() {
        return usedLength;
    }

    @Override
    public boolean enableUsedNotification() {
        checkUsable();
        int word = eventIdx
                ? PackedLayout.eventWord(PackedLayout.RING_EVENT_FLAGS_DESC, usedSlot, usedWrap)
                : PackedLayout.eventWord(PackedLayout.RING_EVENT_FLAGS_ENABLE, 0, 0);
        soEvent(driverEvent, word);
        // Full fence (P7): publish the enable before re-reading the used slot, or a device that read
        // the old DISABLE skips its call while we find nothing and sleep.
        Fences.storeLoad();
        if (batchLastId >= 0) {
            return true;
        }
        return PackedLayout.isUsed(lvFlags(ring, PackedLayout.descriptorOffset(usedSlot)), usedWrap);
    }

    @Override
    public void disableUsedNotification() {
        checkUsable();
        soEvent(driverEvent, PackedLayout.eventWord(PackedLayout.RING_EVENT_FLAGS_DISABLE, 0, 0));
    }

    @Override
    public int outstanding() {
        return outstanding;
    }

    @Override
    public int usedPosition() {
        return usedSlot | usedWrap << 15;
    }

    @Override
    public QueueHealth health() {
        return health;
    }

    @Override
    public long features() {
        return features;
    }

    private void checkUsable() {
        String reason = health.reason();
        if (reason != null) {
            throw new QueueBrokenException(reason);
        }
    }

    private QueueBrokenException broken(String reason) {
        health.markBroken(reason);
        return new QueueBrokenException(health.reason());
    }

    @Override
    public String toString() {
        return "PackedDriverQueue[" + health.queueName() + ", size=" + size + ", avail=" + availSlot + "/" + availWrap
                + ", used=" + usedSlot + "/" + usedWrap + ", outstanding=" + outstanding + "]";
    }
}
