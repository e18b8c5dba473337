package io.vring.engine.packed;

import static io.vring.engine.packed.PackedRingAccess.*;
import static io.vring.engine.packed.PackedLayout.DESC_ADDR;
import static io.vring.engine.packed.PackedLayout.DESC_FLAGS;
import static io.vring.engine.packed.PackedLayout.DESC_LEN;
import static io.vring.engine.packed.PackedLayout.DESC_SIZE;
import static io.vring.engine.packed.PackedLayout.F_INDIRECT;
import static io.vring.engine.packed.PackedLayout.F_NEXT;
import static io.vring.engine.packed.PackedLayout.F_WRITE;

import io.vring.engine.DeviceQueue;
import io.vring.engine.Fences;
import io.vring.engine.QueueHealth;
import io.vring.engine.RingAddresses;
import io.vring.engine.RingKind;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.inflight.InflightBuffer;
import io.vring.engine.inflight.InflightRegionException;
import io.vring.engine.inflight.PackedInflightQueue;
import io.vring.engine.inflight.PackedInflightRecovery;
import io.vring.engine.memory.DirtyLog;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.GuestMemoryException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The device side of a packed virtqueue.
 *
 * <p><b>Positions.</b> The device keeps two positions, each a slot in {@code [0, size)} with its own
 * wrap counter (both start at slot 0, wrap 1): where the next available list starts, and where the
 * next used descriptor goes. They differ while chains are in flight.
 *
 * <p><b>Tokens.</b> {@link DescriptorChain#token()} of a chain from this queue is
 * {@code (slots << 16) | bufferId}, read as an unsigned 32-bit value: the buffer id the driver put in
 * the last descriptor of the list, and the number of ring slots the list took (an indirect table
 * counts as its one slot). That is everything {@link #addUsed(int, int)} needs.
 *
 * <p><b>Ordering.</b> {@code poll} reads the head slot's flags with acquire and then the rest of the
 * list plainly; {@code publish} writes ids and lengths and the flags of all but the first used
 * descriptor plainly, then the first one's flags with release, so the driver sees a whole batch or
 * none of it. Shared accessors are named for their ordering: {@code lv} acquire load, {@code lp}
 * plain load, {@code so} release store, {@code sp} plain store. Verified on x86 only; x86 hides
 * missing acquire/release, so weaker machines (Arm) are not yet verified.
 *
 * <p><b>Untrusted input.</b> Every descriptor field is read once into a local. A list longer than
 * the ring, an indirect table that is empty, not a multiple of 16, longer than 16 x size, outside one
 * region, nested or combined with NEXT, a buffer outside guest memory, a readable buffer after a
 * writable one, or slots re-offered while the device still owns them, marks the queue broken; from
 * then on nothing in guest memory is written.
 *
 * <p><b>Inflight tracking</b> ({@link #trackInflight}, off by default; off, the data path pays one
 * never-taken branch in {@code poll}, {@code addUsed} and {@code publish}). On, {@code poll} hands
 * out the recovered chains first, rebuilt from the descriptors the region recorded, then records
 * each chain it fetches from the ring (every ring descriptor of it) before returning it;
 * {@code publish} releases the batch's entries and stores the used position after the batch, writes
 * the ring, clears the entries and commits: the protocol {@link PackedInflightQueue} explains store
 * by store. Tracking needs buffer ids below the queue size (as Linux and QEMU use them; our driver
 * refuses any other), and a buffer id offered while the device still owns it breaks the queue.
 *
 * <p>Single-threaded: one worker owns the queue. The data path does not allocate.
 */
public final class PackedDeviceQueue implements DeviceQueue {
    private static final System.Logger LOG = System.getLogger(PackedDeviceQueue.class.getName());
    /** entryOfId: the id is not in flight. */
    private static final int NOT_IN_FLIGHT = -1;
    /** entryOfId: or-ed into the entry of an id completed by addUsed and not yet published. */
    private static final int STAGED = 1 << 30;
    /* Indirect tables have no alignment rule in the spec, and are read only after the head flags'
     * acquire, so plain unaligned reads are both legal and sufficient there. */
    private static final ValueLayout.OfLong TABLE_U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt TABLE_U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort TABLE_U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final int size;
    private final long features;
    private final boolean eventIdx;
    private final boolean inOrder;
    private final boolean indirectAllowed;
    private final GuestMemory memory;
    private final QueueHealth health;
    private final DescriptorChain chain = new DescriptorChain();

    /** Descriptor ring, driver event structure (read), device event structure (written); null if broken at set-up. */
    private final MemorySegment ring;
    private final MemorySegment driverEvent;
    private final MemorySegment deviceEvent;

    /* Scratch for one list, by ring slot: its ring descriptors are read once into these before the
     * buffer id (in the last one) is known and the chain is built. Valid during one poll only: slots
     * are reused (by used descriptors, then by the driver) while other chains are in flight. */
    private final long[] listAddr;
    private final int[] listLen;
    private final int[] listFlags;
    /** Ring slot of the chain pollRing() returned last. */
    private int lastHead;
    /** GPA of the descriptor ring (dirty logging marks used descriptors there). */
    private final long ringGpa;

    /* Shadow used ring: entries staged by addUsed, written by publish. */
    private final int[] stagedId;
    private final int[] stagedLen;
    private final int[] stagedSlots;
    private final long[] stagedWritable;
    private int staged;

    private int availSlot;
    private int availWrap = 1;
    private int usedSlot;
    private int usedWrap = 1;
    /** Ring slots polled and not yet published as used: never more than the ring holds. */
    private int inFlightSlots;
    /** Used position at the previous needsNotification(), and slots published since. */
    private int signalledSlot;
    private int publishedSinceCheck;
    /** What this side last wrote to the device event structure (never read back from the ring). */
    private int deviceEventShadow = -1;
    /** The avail position the queue was created at: poll() moved it iff chains were fetched. */
    private int startAvail;

    // Inflight tracking: all null/empty unless trackInflight() attached a region.
    private PackedInflightQueue inflight;
    /** Per buffer id: its chain's first entry in the region, STAGED-marked once completed, or NOT_IN_FLIGHT. */
    private int[] entryOfId;
    /** Region entry of each staged used entry. */
    private int[] stagedEntry;
    /** Recovered chains in counter order, handed out by poll() before new ones, and their descriptors. */
    private int resubmitCount;
    private int resubmitAt;
    private int[] resubmitId;
    private int[] resubmitFirst;
    private int[] resubmitSlots;
    private long[] resubmitAddr;
    private int[] resubmitLen;
    private int[] resubmitFlags;
    /** Counter for the next fetched chain (fetch order across incarnations). */
    private long counter;

    // Dirty logging (live migration): null / -1 unless logDirty() turned it on.
    private DirtyLog dirtyLog;
    private long usedLogAddress = -1;
    /** Rebuilds a chain completed by token, to find the buffers to mark. */
    private DescriptorChain logChain;
    /* While logging, a copy of each in-flight chain's ring descriptors (ids below the size), in a pool
     * of size entries linked per chain, as the inflight region keeps them: addUsed(token) needs them
     * and the ring slots are reused. copyNext links a chain's entries and the free list (size: end). */
    private int[] copyOfId;
    private int[] copyNext;
    private long[] copyAddr;
    private int[] copyLen;
    private int[] copyFlags;
    private int copyFree;
    private long[] scratchAddr;
    private int[] scratchLen;
    private int[] scratchFlags;
    /** Chains completed by token whose writes could not be marked (fetched before logging, untracked). */
    private long unlogged;

    /**
     * @param name     how log lines and reasons name the queue
     * @param memory   guest memory holding the ring and the buffers
     * @param size     ring slots, 1..32768 (any value, not only powers of two)
     * @param rings    descriptor ring, driver event structure, device event structure (GPAs)
     * @param features negotiated feature bits ({@link VirtioFeatures})
     * @throws IllegalArgumentException for a null argument; driver-supplied values never throw, they
     *                                  leave the queue broken with a reason instead
     */
    public PackedDeviceQueue(String name, GuestMemory memory, int size, RingAddresses rings, long features) {
        this(name, memory, size, rings, features, 1 << PackedLayout.EVENT_WRAP_BIT, 1 << PackedLayout.EVENT_WRAP_BIT);
    }

    /**
     * As above, resuming at given positions (vhost-user SET_VRING_BASE): each is a slot in
     * {@code [0, size)} with its wrap counter in bit 15. Chains between the used and the avail
     * position count as in flight (the device popped them before a restart). A slot outside the ring,
     * or a used position ahead of the avail position, leaves the queue broken.
     */
    public PackedDeviceQueue(String name, GuestMemory memory, int size, RingAddresses rings, long features,
                             int availPosition, int usedPosition) {
        if (name == null || memory == null || rings == null) {
            throw new IllegalArgumentException("name, memory and rings are required");
        }
        this.size = size;
        this.features = features;
        this.eventIdx = VirtioFeatures.has(features, VirtioFeatures.EVENT_IDX);
        this.inOrder = VirtioFeatures.has(features, VirtioFeatures.IN_ORDER);
        this.indirectAllowed = VirtioFeatures.has(features, VirtioFeatures.INDIRECT_DESC);
        this.memory = memory;
        this.health = new QueueHealth(name);

        String problem = null;
        MemorySegment r = null;
        MemorySegment drv = null;
        MemorySegment dev = null;
        if (size < 1 || size > PackedLayout.MAX_QUEUE_SIZE) {
            problem = "queue size " + size + " is outside 1.." + PackedLayout.MAX_QUEUE_SIZE;
        } else {
            try {
                r = area(memory, "descriptor ring", rings.descriptorArea(), PackedLayout.descriptorRingSize(size),
                        PackedLayout.DESC_RING_ALIGN);
                drv = area(memory, "driver event structure", rings.driverArea(), PackedLayout.EVENT_AREA_SIZE,
                        PackedLayout.EVENT_AREA_ALIGN);
                dev = area(memory, "device event structure", rings.deviceArea(), PackedLayout.EVENT_AREA_SIZE,
                        PackedLayout.EVENT_AREA_ALIGN);
            } catch (GuestMemoryException e) {
                problem = e.getMessage() + " (queue size " + size + ")";
                r = drv = dev = null;
            }
        }
        int capacity = problem == null ? size : 0;
        this.ring = r;
        this.driverEvent = drv;
        this.deviceEvent = dev;
        this.listAddr = new long[capacity];
        this.listLen = new int[capacity];
        this.listFlags = new int[capacity];
        this.ringGpa = rings.descriptorArea();
        this.stagedId = new int[capacity];
        this.stagedLen = new int[capacity];
        this.stagedSlots = new int[capacity];
        this.stagedWritable = new long[capacity];
        if (problem == null) {
            problem = resume(availPosition, usedPosition);
        }
        if (problem != null) {
            health.markBroken(problem);
        }
        startAvail = availPosition();
    }

    /** Sets both positions; returns why they are impossible, or null. */
    private String resume(int availPosition, int usedPosition) {
        int aSlot = availPosition & PackedLayout.EVENT_OFF_MASK;
        int aWrap = (availPosition >>> PackedLayout.EVENT_WRAP_BIT) & 1;
        int uSlot = usedPosition & PackedLayout.EVENT_OFF_MASK;
        int uWrap = (usedPosition >>> PackedLayout.EVENT_WRAP_BIT) & 1;
        if (aSlot >= size || uSlot >= size) {
            return "resume position avail " + aSlot + " / used " + uSlot + " outside a ring of " + size + " slots";
        }
        // Slots from used to avail: same wrap means avail is ahead in this lap, different wrap means it lapped.
        int inFlight = aWrap == uWrap ? aSlot - uSlot : aSlot + size - uSlot;
        if (inFlight < 0 || inFlight > size) {
            return "resume position used " + uSlot + "/" + uWrap + " is ahead of avail " + aSlot + "/" + aWrap
                    + " (queue size " + size + ")";
        }
        availSlot = aSlot;
        availWrap = aWrap;
        usedSlot = uSlot;
        usedWrap = uWrap;
        signalledSlot = uSlot;
        inFlightSlots = inFlight;
        return null;
    }

    /** Translates one ring area once; misaligned or unbacked areas are the driver's fault. */
    private static MemorySegment area(GuestMemory memory, String what, long gpa, long bytes, int align) {
        if ((gpa & (align - 1)) != 0) {
            throw new GuestMemoryException(what + " at GPA 0x" + Long.toHexString(gpa) + " is not " + align + "-byte aligned");
        }
        MemorySegment s;
        try {
            s = memory.slice(gpa, bytes);
        } catch (GuestMemoryException e) {
            throw new GuestMemoryException(what + ": " + e.getMessage());
        }
        if ((s.address() & (align - 1)) != 0) {
            throw new GuestMemoryException(what + " at GPA 0x" + Long.toHexString(gpa) + " is mapped at a host address that is not "
                    + align + "-byte aligned");
        }
        return s;
    }

    // ---- DeviceQueue ----

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

    /** Recovered chains first, then the ring; each chain fetched from the ring is recorded before it is returned. */
    private DescriptorChain pollTracked() {
        if (resubmitAt < resubmitCount) {
            int r = resubmitAt++;
            int id = resubmitId[r];
            int first = resubmitFirst[r];
            // Recorded by the previous incarnation; its counter stands.
            DescriptorChain c = build(chain, first, false, resubmitSlots[r], id, resubmitAddr, resubmitLen, resubmitFlags);
            if (c != null && dirtyLog != null) {
                keepCopy(id, first, false, resubmitSlots[r], resubmitAddr, resubmitLen, resubmitFlags);
            }
            return c;
        }
        DescriptorChain c = pollRing();
        if (c != null) {
            int id = c.head();
            int n = c.token() >>> 16;
            if (id >= size) {
                return broken("buffer id " + id + " is not below the queue size " + size + ", which inflight tracking needs");
            }
            if (entryOfId[id] != NOT_IN_FLIGHT) {
                return broken("buffer id " + id + " was made available again while the device still owns it"
                        + " (queue size " + size + ")");
            }
            PackedInflightQueue track = inflight;
            int entry = track.beginChain(counter++);
            for (int i = 0, k = lastHead; i < n; i++, k = k + 1 == size ? 0 : k + 1) {
                track.addDescriptor(listAddr[k], listLen[k], id, listFlags[k], i == n - 1);
            }
            entryOfId[id] = entry;
        }
        return c;
    }

    /** The next chain from the ring (the whole data path when inflight tracking is off). */
    private DescriptorChain pollRing() {
        MemorySegment ring = this.ring;
        int head = availSlot;
        int flags = lvFlags(ring, PackedLayout.descriptorOffset(head));
        if (!PackedLayout.isAvailable(flags, availWrap)) {
            return null;
        }
        // Read the list's ring descriptors once each; the id sits in the last one.
        int slot = head;
        int n = 0;
        int id;
        while (true) {
            long off = PackedLayout.descriptorOffset(slot);
            if (n > 0) {
                flags = lpFlags(ring, off);
            }
            listAddr[slot] = lpAddr(ring, off);
            listLen[slot] = lpLen(ring, off);
            listFlags[slot] = flags;
            n++;
            if ((flags & F_NEXT) == 0) {
                id = lpId(ring, off);
                break;
            }
            if ((flags & F_INDIRECT) != 0) {
                return broken("slot " + slot + " has both INDIRECT and NEXT (flags 0x" + Integer.toHexString(flags)
                        + "), queue size " + size);
            }
            if (n == size) {
                return broken("list starting at slot " + head + " runs past " + size + " descriptors without ending"
                        + " (queue size " + size + ")");
            }
            slot = slot + 1 == size ? 0 : slot + 1;
        }
        if (inFlightSlots + n > size) {
            return broken("slot " + head + " was made available again while the device still owns it ("
                    + inFlightSlots + " slots in flight, list of " + n + ", queue size " + size + ")");
        }
        DescriptorChain c = build(chain, head, true, n, id, listAddr, listLen, listFlags);
        if (c == null) {
            return null;
        }
        lastHead = head;
        if (dirtyLog != null) {
            keepCopy(id, head, true, n, listAddr, listLen, listFlags);
        }
        int next = head + n;
        if (next >= size) {
            next -= size;
            availWrap ^= 1;
        }
        availSlot = next;
        inFlightSlots += n;
        return c;
    }

    /**
     * Builds into {@code c} the chain of {@code n} descriptors held in {@code addr/len/flags} from
     * index {@code from}: ring slots (wrapping at the ring's end) when {@code fromRing}, else a
     * resubmitted chain's record. Null (queue broken) if it breaks a rule.
     */
    private DescriptorChain build(DescriptorChain c, int from, boolean fromRing, int n, int id,
                                  long[] addr, int[] len, int[] flags) {
        c.reset(id);
        for (int i = 0, k = from; i < n; i++, k++) {
            if (fromRing && k == size) {
                k = 0;
            }
            c.countDescriptor();
            int f = flags[k];
            int at = fromRing ? k : -1;
            if ((f & F_INDIRECT) != 0) {
                if (!walkIndirect(c, at, addr[k], len[k])) {
                    return null;
                }
            } else {
                int result = c.append(memory, addr[k], len[k], (f & F_WRITE) != 0);
                if (result != DescriptorChain.APPENDED) {
                    return broken(refusal(result, slotName(at), addr[k], len[k]));
                }
            }
        }
        c.token((n << 16) | id);
        return c;
    }

    /** How messages name a ring slot; -1 is a chain rebuilt from the inflight region. */
    private static String slotName(int slot) {
        return slot >= 0 ? "slot " + slot : "a chain resubmitted from the inflight region";
    }

    /** Appends an indirect table's buffers; false (queue broken) if the table breaks a rule. */
    private boolean walkIndirect(DescriptorChain c, int slot, long addr, int len) {
        if (!indirectAllowed) {
            broken(slotName(slot) + " is INDIRECT but VIRTIO_F_INDIRECT_DESC was not negotiated");
            return false;
        }
        long bytes = Integer.toUnsignedLong(len);
        long limit = PackedLayout.descriptorRingSize(size);
        if (bytes == 0 || (bytes % DESC_SIZE) != 0 || bytes > limit) {
            broken("indirect table at " + slotName(slot) + " has len " + bytes + ": must be a non-zero multiple of "
                    + DESC_SIZE + " no larger than " + limit + " (queue size " + size + ")");
            return false;
        }
        int r = memory.regionOf(addr);
        long base = r < 0 ? -1 : addr - memory.guestPhysicalStart(r);
        if (r < 0 || bytes > memory.regionSize(r) - base) {
            broken("indirect table at " + slotName(slot) + " (GPA 0x" + Long.toHexString(addr) + ", len " + bytes
                    + ") is not inside one guest memory region (queue size " + size + ")");
            return false;
        }
        MemorySegment table = memory.segment(r);
        int entries = (int) (bytes / DESC_SIZE);
        for (int e = 0; e < entries; e++) {
            long off = base + PackedLayout.descriptorOffset(e);
            long a = table.get(TABLE_U64, off + DESC_ADDR);
            int l = table.get(TABLE_U32, off + DESC_LEN);
            int f = Short.toUnsignedInt(table.get(TABLE_U16, off + DESC_FLAGS));
            if ((f & F_INDIRECT) != 0) {
                broken("indirect table at " + slotName(slot) + " entry " + e + " is itself INDIRECT (flags 0x"
                        + Integer.toHexString(f) + "): nested tables are forbidden (queue size " + size + ")");
                return false;
            }
            // Inside a table only WRITE means anything; NEXT and id are ignored as the spec says.
            int result = c.append(memory, a, l, (f & F_WRITE) != 0);
            if (result != DescriptorChain.APPENDED) {
                broken(refusal(result, "indirect table at " + slotName(slot) + " entry " + e, a, l));
                return false;
            }
        }
        return true;
    }

    private String refusal(int result, String where, long addr, int len) {
        String buffer = where + " (GPA 0x" + Long.toHexString(addr) + ", len " + Integer.toUnsignedString(len) + ")";
        return switch (result) {
            case DescriptorChain.OUTSIDE_MEMORY -> memory.regionOf(addr) < 0
                    ? buffer + " is outside guest memory (queue size " + size + ")"
                    : buffer + " runs into a hole in guest memory (queue size " + size + ")";
            case DescriptorChain.READABLE_AFTER_WRITABLE -> buffer + " is device-readable after a device-writable buffer"
                    + " (queue size " + size + ")";
            case DescriptorChain.TOO_LONG -> buffer + " takes the chain past 2^32 bytes (queue size " + size + ")";
            case DescriptorChain.TOO_MANY_BUFFERS -> buffer + " takes the chain past " + DescriptorChain.MAX_BUFFERS
                    + " buffers (queue size " + size + ")";
            default -> buffer + " was refused with code " + result + " (queue size " + size + ")";
        };
    }

    private DescriptorChain broken(String reason) {
        health.markBroken(reason);
        return null;
    }

    @Override
    public void addUsed(DescriptorChain chain, int bytesWritten) {
        if (Long.compareUnsigned(Integer.toUnsignedLong(bytesWritten), chain.writableBytes()) > 0) {
            throw new IllegalArgumentException("bytesWritten " + Integer.toUnsignedString(bytesWritten)
                    + " exceeds the chain's " + chain.writableBytes() + " writable bytes");
        }
        stage(chain.token(), bytesWritten, chain.writableBytes());
        if (dirtyLog != null) {
            dirtyLog.markWritten(chain, Integer.toUnsignedLong(bytesWritten));
            if (chain.head() < size) {
                releaseCopy(chain.head()); // completed through the flyweight: its copy is not needed
            }
        }
    }

    /** {@inheritDoc} The chain's writable total is not known here, so with IN_ORDER the entry ends a merged run. */
    @Override
    public void addUsed(int token, int bytesWritten) {
        stage(token, bytesWritten, -1);
        if (dirtyLog != null && !health.isBroken()) {
            logWrittenByToken(token, bytesWritten);
        }
    }

    /**
     * Rebuilds the chain of {@code token} from the device's own copy of its ring descriptors (its ring
     * slots may hold other descriptors by now) or, for a chain fetched before logging started, from
     * the inflight region, and marks what was written. A chain with neither cannot be found again: it
     * is counted and reported once.
     */
    private void logWrittenByToken(int token, int bytesWritten) {
        int id = token & 0xFFFF;
        int first = id < size ? copyOfId[id] : -1;
        int n = 0;
        if (first >= 0) {
            for (int e = first; e != size; e = copyNext[e]) {
                scratchAddr[n] = copyAddr[e];
                scratchLen[n] = copyLen[e];
                scratchFlags[n] = copyFlags[e];
                n++;
            }
            releaseCopy(id);
        } else if (inflight != null && id < size && entryOfId[id] != NOT_IN_FLIGHT) {
            n = inflight.copyChain(entryOfId[id] & ~STAGED, scratchAddr, scratchLen, scratchFlags);
        }
        if (n == 0) {
            unlogged++;
            if (unlogged == 1) {
                LOG.log(System.Logger.Level.WARNING, "{0}: buffer id {1} was completed by token while dirty logging,"
                        + " fetched before logging started and not tracked: its writes cannot be marked", health.queueName(), id);
            }
            return;
        }
        DescriptorChain c = build(logChain, 0, false, n, id, scratchAddr, scratchLen, scratchFlags);
        if (c != null) {
            dirtyLog.markWritten(c, Integer.toUnsignedLong(bytesWritten));
        }
    }

    /** While logging: copies the ring descriptors of the chain just fetched (id below the size) into the copy pool. */
    private void keepCopy(int id, int from, boolean fromRing, int n, long[] addr, int[] len, int[] flags) {
        if (id >= size) {
            return;
        }
        releaseCopy(id); // a stale copy of an id the device completed untracked, before logging
        int first = size;
        int last = size;
        for (int i = 0, k = from; i < n; i++, k++) {
            if (fromRing && k == size) {
                k = 0;
            }
            int e = copyFree;
            if (e == size) {
                releaseCopyChain(first);
                return; // cannot happen: at most size descriptors are in flight
            }
            copyFree = copyNext[e];
            copyAddr[e] = addr[k];
            copyLen[e] = len[k];
            copyFlags[e] = flags[k];
            copyNext[e] = size;
            if (last == size) {
                first = e;
            } else {
                copyNext[last] = e;
            }
            last = e;
        }
        copyOfId[id] = first;
    }

    private void releaseCopy(int id) {
        int first = copyOfId[id];
        if (first >= 0) {
            copyOfId[id] = -1;
            releaseCopyChain(first);
        }
    }

    private void releaseCopyChain(int first) {
        int e = first;
        while (e != size) {
            int next = copyNext[e];
            copyNext[e] = copyFree;
            copyFree = e;
            e = next;
        }
    }

    private void stage(int token, int bytesWritten, long writable) {
        if (health.isBroken()) {
            return;
        }
        int slots = token >>> 16;
        if (slots < 1 || slots > size) {
            throw new IllegalArgumentException("token 0x" + Integer.toHexString(token) + " was not issued by a queue of size " + size);
        }
        if (staged == stagedId.length) {
            throw new IllegalStateException("more used entries staged than the " + size
                    + " the ring can hold; was a token completed twice?");
        }
        if (inflight != null) {
            int id = token & 0xFFFF;
            int entry = id < size ? entryOfId[id] : NOT_IN_FLIGHT;
            if (entry == NOT_IN_FLIGHT || (entry & STAGED) != 0) {
                throw new IllegalArgumentException("buffer id " + id + " is not in flight"
                        + (entry != NOT_IN_FLIGHT ? " (already completed, not yet published)" : ""));
            }
            stagedEntry[staged] = entry;
            entryOfId[id] = entry | STAGED;
        }
        int i = staged++;
        stagedId[i] = token & 0xFFFF;
        stagedLen[i] = bytesWritten;
        stagedSlots[i] = slots;
        stagedWritable[i] = writable;
    }

    @Override
    public void publish() {
        int count = staged;
        if (count == 0) {
            return;
        }
        staged = 0;
        if (health.isBroken()) {
            return;
        }
        PackedInflightQueue track = inflight;
        if (track != null) {
            publishBegins(track, count);
        }
        MemorySegment ring = this.ring;
        int slot = usedSlot;
        int wrap = usedWrap;
        long firstOff = PackedLayout.descriptorOffset(slot);
        int firstFlags = -1;
        int total = 0;
        int i = 0;
        while (i < count) {
            int slots = stagedSlots[i];
            if (inOrder) {
                // IN_ORDER: an entry the device filled completely may be folded into the next one.
                while (i + 1 < count && stagedWritable[i] >= 0 && Integer.toUnsignedLong(stagedLen[i]) == stagedWritable[i]) {
                    i++;
                    slots += stagedSlots[i];
                }
            }
            int id = stagedId[i];
            int len = stagedLen[i];
            i++;
            long off = PackedLayout.descriptorOffset(slot);
            spId(ring, off, id);
            spLen(ring, off, len);
            int flags = PackedLayout.usedFlags(wrap) | (len != 0 ? F_WRITE : 0);
            if (firstFlags < 0) {
                firstFlags = flags;
            } else {
                spFlags(ring, off, flags);
            }
            total += slots;
            slot += slots;
            if (slot >= size) {
                slot -= size;
                wrap ^= 1;
            }
        }
        soFlags(ring, firstOff, firstFlags);
        if (usedLogAddress >= 0) {
            logUsedDescriptors(usedSlot, total);
        }
        usedSlot = slot;
        usedWrap = wrap;
        inFlightSlots -= total;
        publishedSinceCheck += total;
        if (track != null) {
            // Steps 4 and 5, after the first used flags' release store: clear the chains, then commit.
            for (int k = 0; k < count; k++) {
                track.clearInflight(stagedEntry[k]);
                entryOfId[stagedId[k]] = NOT_IN_FLIGHT;
            }
            track.commitBatch();
        }
    }

    /** Steps 1 and 2 of a tracked publish, before the ring: the chains' entries go free, then the used position after the batch. */
    private void publishBegins(PackedInflightQueue track, int count) {
        int slots = 0;
        for (int k = 0; k < count; k++) {
            track.releaseChain(stagedEntry[k]);
            slots += stagedSlots[k];
        }
        int end = usedSlot + slots; // never more than a ring: slots in flight are at most the size
        track.setUsedPosition(end >= size ? end - size : end, end >= size ? usedWrap ^ 1 : usedWrap);
    }

    /** Marks the ring slots a publish of {@code slots} slots from {@code from} covers (wrapping). */
    private void logUsedDescriptors(int from, int slots) {
        int tail = Math.min(slots, size - from);
        dirtyLog.mark(ringGpa + PackedLayout.descriptorOffset(from), (long) DESC_SIZE * tail);
        if (slots > tail) {
            dirtyLog.mark(ringGpa, (long) DESC_SIZE * (slots - tail));
        }
    }

    /** Marks the device event structure the queue just wrote, at the ring's log address. */
    private void logDeviceEvent() {
        DirtyLog log = dirtyLog;
        if (log != null && usedLogAddress >= 0) {
            log.mark(usedLogAddress + PackedLayout.EVENT_OFF_WRAP, PackedLayout.EVENT_AREA_SIZE);
        }
    }

    @Override
    public void logDirty(DirtyLog log, long usedLogAddress) {
        if (log != null && logChain == null) {
            int n = Math.max(size, 1);
            logChain = new DescriptorChain();
            copyOfId = new int[n];
            copyNext = new int[n];
            copyAddr = new long[n];
            copyLen = new int[n];
            copyFlags = new int[n];
            scratchAddr = new long[n];
            scratchLen = new int[n];
            scratchFlags = new int[n];
        }
        if (log == null || dirtyLog == null) {
            // Logging starts or stops: no copy is current (chains fetched while it was off have none).
            if (copyOfId != null) {
                java.util.Arrays.fill(copyOfId, -1);
                for (int i = 0; i < copyNext.length; i++) {
                    copyNext[i] = i + 1;
                }
                copyNext[copyNext.length - 1] = size;
                copyFree = 0;
            }
        }
        this.dirtyLog = log;
        this.usedLogAddress = log == null ? -1 : usedLogAddress;
    }

    /** Chains completed by token while logging whose writes could not be marked (diagnostics). */
    public long unloggedCompletions() {
        return unlogged;
    }

    @Override
    public DirtyLog dirtyLog() {
        return dirtyLog;
    }

    @Override
    public int trackInflight(InflightBuffer buffer, int queueIndex) {
        buffer.checkAttachable(health.queueName(), RingKind.PACKED, inflight != null, availPosition() != startAvail || staged != 0);
        if (health.isBroken()) {
            return 0; // its rings are unusable: leave the region for a queue that can serve it
        }
        PackedInflightQueue region;
        PackedInflightRecovery recovery;
        try {
            if (buffer.queueSize() != size) {
                throw new InflightRegionException(InflightRegionException.Kind.QUEUE_SIZE_MISMATCH,
                        "the inflight buffer holds queues of size " + buffer.queueSize() + ", the ring has size " + size);
            }
            region = buffer.packedQueue(queueIndex);
            MemorySegment r = ring;
            recovery = region.recover(s -> lvFlags(r, PackedLayout.descriptorOffset(s)), usedSlot, usedWrap);
            if (!recovery.fresh()) {
                checkAgainstRing(recovery);
            }
        } catch (InflightRegionException e) {
            health.markBroken("inflight region of queue " + queueIndex + " refused: " + e.getMessage());
            throw e;
        }
        int[] entries = new int[size];
        java.util.Arrays.fill(entries, NOT_IN_FLIGHT);
        int chains = recovery.chainsInCounterOrder().size();
        int descriptors = 0;
        for (PackedInflightRecovery.Chain c : recovery.chainsInCounterOrder()) {
            descriptors += c.slots();
        }
        resubmitId = new int[chains];
        resubmitFirst = new int[chains];
        resubmitSlots = new int[chains];
        resubmitAddr = new long[descriptors];
        resubmitLen = new int[descriptors];
        resubmitFlags = new int[descriptors];
        int at = 0;
        for (int k = 0; k < chains; k++) {
            PackedInflightRecovery.Chain c = recovery.chainsInCounterOrder().get(k);
            resubmitId[k] = c.id();
            resubmitFirst[k] = at;
            resubmitSlots[k] = c.slots();
            for (PackedInflightRecovery.Descriptor d : c.descriptors()) {
                resubmitAddr[at] = d.addr();
                resubmitLen[at] = d.len();
                resubmitFlags[at] = d.flags();
                at++;
            }
            entries[c.id()] = c.entry();
        }
        if (!recovery.fresh()) {
            scrubRolledBack(recovery);
            availSlot = recovery.nextAvailSlot();
            availWrap = recovery.nextAvailWrap();
            usedSlot = recovery.usedSlot();
            usedWrap = recovery.usedWrap();
            signalledSlot = usedSlot;
            inFlightSlots = descriptors;
        }
        entryOfId = entries;
        stagedEntry = new int[size];
        resubmitCount = chains;
        resubmitAt = 0;
        counter = recovery.nextCounter();
        inflight = region;
        // A fresh region is every first start: worth a line only when debugging.
        System.Logger.Level level = recovery.fresh() ? System.Logger.Level.DEBUG : System.Logger.Level.INFO;
        LOG.log(level, "{0}: inflight tracking on ({1}), resuming at avail {2}/{3}, used {4}/{5}"
                        + " (base was avail {6}), {7} chains to resubmit, batch {8}",
                health.queueName(), recovery.fresh() ? "fresh region" : "recovered", availSlot, availWrap, usedSlot,
                usedWrap, startAvail, chains, recovery.batchCommitted() ? "committed"
                        : recovery.rolledBackSlots() > 0 ? "rolled back" : "none in progress");
        return chains;
    }

    /**
     * What a region must agree with in the ring: the next used slot does not already show used (else
     * the region is behind what the driver saw), ids are below the size and distinct, and every
     * recorded chain is a list (NEXT on all descriptors but the last, INDIRECT only alone).
     */
    private void checkAgainstRing(PackedInflightRecovery recovery) {
        int flags = lvFlags(ring, PackedLayout.descriptorOffset(recovery.usedSlot()));
        if (PackedLayout.isUsed(flags, recovery.usedWrap())) {
            throw new InflightRegionException(InflightRegionException.Kind.RING_MISMATCH,
                    "the region's used position " + recovery.usedSlot() + "/" + recovery.usedWrap()
                            + " already shows a used descriptor (flags 0x" + Integer.toHexString(flags)
                            + "): the region is behind the ring");
        }
        boolean[] seen = new boolean[size];
        for (PackedInflightRecovery.Chain c : recovery.chainsInCounterOrder()) {
            if (c.id() >= size || seen[c.id()]) {
                throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                        "inflight chain at entry " + c.entry() + " has buffer id " + c.id()
                                + (c.id() >= size ? ", not below the queue size " + size : ", which another chain has too"));
            }
            seen[c.id()] = true;
            int n = c.slots();
            for (int i = 0; i < n; i++) {
                int f = c.descriptors().get(i).flags();
                boolean next = (f & F_NEXT) != 0;
                if (next != (i < n - 1) || (next && (f & F_INDIRECT) != 0)) {
                    throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                            "inflight chain at entry " + c.entry() + ": descriptor " + i + " of " + n + " has flags 0x"
                                    + Integer.toHexString(f) + ", not a list");
                }
            }
        }
    }

    /**
     * A rolled-back batch may have left used descriptors past its first slot (stored before the first
     * one's flags, which the kill prevented). Their chains are resubmitted, so the driver must never
     * read them: once the new device publishes up to such a slot, the driver would take the stale
     * one for a completion. Give those slots back their available pattern for the lap they are in.
     */
    private void scrubRolledBack(PackedInflightRecovery recovery) {
        int slot = recovery.usedSlot();
        int wrap = recovery.usedWrap();
        for (int k = 0; k < recovery.rolledBackSlots(); k++) {
            long off = PackedLayout.descriptorOffset(slot);
            if (PackedLayout.isUsed(lvFlags(ring, off), wrap)) {
                soFlags(ring, off, PackedLayout.availableFlags(wrap));
            }
            if (++slot == size) {
                slot = 0;
                wrap ^= 1;
            }
        }
    }

    @Override
    public boolean isTrackingInflight() {
        return inflight != null;
    }

    @Override
    public boolean needsNotification() {
        int since = publishedSinceCheck;
        if (since == 0 || health.isBroken()) {
            return false;
        }
        // Full fence (P5): the used flags stored by publish() must be globally visible before the
        // driver's event structure is read. Otherwise the driver may read the old flags, enable
        // notifications and sleep while this side reads its old DISABLE: the call is lost and the
        // ring hangs.
        Fences.storeLoad();
        int word = lvEvent(driverEvent);
        int oldSlot = signalledSlot;
        signalledSlot = usedSlot;
        publishedSinceCheck = 0;
        int flags = (word >>> PackedLayout.EVENT_FLAGS_SHIFT) & PackedLayout.EVENT_FLAGS_MASK;
        if (flags == PackedLayout.RING_EVENT_FLAGS_DISABLE) {
            return false;
        }
        if (flags != PackedLayout.RING_EVENT_FLAGS_DESC || !eventIdx || since >= size) {
            return true; // ENABLE, reserved, DESC without EVENT_IDX, or a window too wide to judge
        }
        return PackedEventWindow.passedSince(word & 0xFFFF, oldSlot, usedSlot, usedWrap, size);
    }

    @Override
    public boolean enableNotification() {
        if (health.isBroken()) {
            return false;
        }
        int word = eventIdx
                ? PackedLayout.eventWord(PackedLayout.RING_EVENT_FLAGS_DESC, availSlot, availWrap)
                : PackedLayout.eventWord(PackedLayout.RING_EVENT_FLAGS_ENABLE, 0, 0);
        soEvent(deviceEvent, word);
        deviceEventShadow = word;
        logDeviceEvent();
        // Full fence (P7 on this side): the enable must be visible before the re-check reads the
        // ring, or a driver that just looked at the old DISABLE skips its kick and we sleep anyway.
        Fences.storeLoad();
        return resubmitAt < resubmitCount
                || PackedLayout.isAvailable(lvFlags(ring, PackedLayout.descriptorOffset(availSlot)), availWrap);
    }

    @Override
    public void disableNotification() {
        if (health.isBroken()) {
            return;
        }
        int word = PackedLayout.eventWord(PackedLayout.RING_EVENT_FLAGS_DISABLE, 0, 0);
        if (deviceEventShadow != word) {
            soEvent(deviceEvent, word);
            deviceEventShadow = word;
            logDeviceEvent();
        }
    }

    @Override
    public boolean hasAvailable() {
        return !health.isBroken() && (resubmitAt < resubmitCount
                || PackedLayout.isAvailable(lvFlags(ring, PackedLayout.descriptorOffset(availSlot)), availWrap));
    }

    @Override
    public int availPosition() {
        return availSlot | (availWrap << PackedLayout.EVENT_WRAP_BIT);
    }

    /** {@inheritDoc} Slot | wrap << 15. */
    @Override
    public int usedPosition() {
        return usedSlot | (usedWrap << PackedLayout.EVENT_WRAP_BIT);
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
        return "PackedDeviceQueue[" + health.queueName() + ", size=" + size + ", avail=" + availSlot + "/" + availWrap
                + ", used=" + usedSlot + "/" + usedWrap + (health.isBroken() ? ", broken: " + health.reason() : "") + "]";
    }
}
