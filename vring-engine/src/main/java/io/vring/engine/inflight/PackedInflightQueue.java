package io.vring.engine.inflight;

import io.vring.engine.packed.PackedLayout;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntUnaryOperator;

import static io.vring.engine.inflight.PackedInflightLayout.DESC_NUM;
import static io.vring.engine.inflight.PackedInflightLayout.ENTRY_ADDR;
import static io.vring.engine.inflight.PackedInflightLayout.ENTRY_COUNTER;
import static io.vring.engine.inflight.PackedInflightLayout.ENTRY_FLAGS;
import static io.vring.engine.inflight.PackedInflightLayout.ENTRY_ID;
import static io.vring.engine.inflight.PackedInflightLayout.ENTRY_INFLIGHT;
import static io.vring.engine.inflight.PackedInflightLayout.ENTRY_LAST;
import static io.vring.engine.inflight.PackedInflightLayout.ENTRY_LEN;
import static io.vring.engine.inflight.PackedInflightLayout.ENTRY_NEXT;
import static io.vring.engine.inflight.PackedInflightLayout.ENTRY_NUM;
import static io.vring.engine.inflight.PackedInflightLayout.FREE_HEAD;
import static io.vring.engine.inflight.PackedInflightLayout.OLD_FREE_HEAD;
import static io.vring.engine.inflight.PackedInflightLayout.USED_WORD;
import static io.vring.engine.inflight.PackedInflightLayout.VERSION;
import static io.vring.engine.inflight.PackedInflightLayout.VERSION_1;
import static io.vring.engine.inflight.PackedInflightLayout.entry;

/**
 * One packed queue's part of the inflight buffer (reference §5.5-5.6): a view over the queue's
 * {@link PackedInflightLayout#stride stride} of a shared mapping. Entries form a free list; each
 * fetched chain takes one entry per ring descriptor, recording the descriptor itself, because by
 * the time a restarted back-end looks, the driver may have overwritten the ring slots it came from.
 *
 * <p><b>The two-phase header.</b> {@code free_head} and {@code used_idx/used_wrap_counter} move while
 * a chain is recorded or a batch is published; their {@code old_} copies move only once that is
 * finished. Recovery rolls back to the {@code old_} values, unless the driver can already see the
 * batch, in which case it commits the new ones. So a SIGKILL between any two stores is safe:
 * <ul>
 *   <li>Fetch ({@link #beginChain}, then {@link #addDescriptor} per ring descriptor): the first
 *       entry gets {@code num}, {@code counter}, {@code inflight = 1}; each descriptor goes into
 *       the entry at {@code free_head}, which then advances; after the last descriptor,
 *       {@code old_free_head = free_head} (release: after everything the chain wrote). Killed
 *       before that store: recovery rolls {@code free_head} back, the half-recorded first entry is
 *       on the free list again and loses its inflight flag, and the chain's slots are not counted
 *       in the resume position, so the chain is fetched again from the ring.</li>
 *   <li>Publish a batch: (1) {@link #releaseChain} per completed chain (pushes its entries on the
 *       free list); (2) {@link #setUsedPosition} with the used position after the batch (release:
 *       after (1)); (3) the device writes the used descriptors, the first slot's flags last, with
 *       a release store that keeps (2) before it; (4) {@link #clearInflight} per chain (release:
 *       after (3)); (5) {@link #commitBatch}: {@code old_free_head}, then the old used fields.
 *       Killed before (3): {@code used_idx != old_used_idx}, but the ring slot at
 *       {@code old_used_idx} is still available, so recovery rolls back and the chains are
 *       resubmitted, which is right since the driver saw nothing. Killed after (3): the slot shows
 *       used, recovery commits, the chains are not resubmitted.</li>
 * </ul>
 * The four used fields (bytes 16-23 with the padding) are written as one aligned 8-byte release
 * store, so a used index is never seen with the wrong wrap counter.
 *
 * <p>Single-threaded, like the queue that owns it. Fetch, publish and clear do not allocate;
 * {@link #recover} does.
 */
public final class PackedInflightQueue extends InflightRegionView {
    /** Bytes 22-23 of the used word: padding, kept as found. */
    private static final long USED_WORD_PADDING = 0xFFFF_0000_0000_0000L;


    /** Cached header: free_head, old_free_head and the used word, as last stored. */
    private int freeHead;
    private int oldFreeHead;
    private int usedSlot;
    private int usedWrap;
    private int oldUsedSlot;
    private int oldUsedWrap;

    private PackedInflightQueue(MemorySegment region, int queueSize, StoreProbe probe) {
        super(region, queueSize, probe);
        loadHeader();
    }

    /**
     * The region of queue {@code queueIndex} in an inflight buffer whose queues have {@code queueSize}
     * descriptors.
     *
     * @throws InflightRegionException (REGION_TOO_SMALL) if the buffer does not reach that far
     */
    public static PackedInflightQueue of(MemorySegment buffer, int queueIndex, int queueSize) {
        return of(buffer, queueIndex, queueSize, null);
    }

    static PackedInflightQueue of(MemorySegment buffer, int queueIndex, int queueSize, StoreProbe probe) {
        if (queueSize < 1 || queueSize > PackedLayout.MAX_QUEUE_SIZE) {
            throw new IllegalArgumentException("packed queue size must be 1 to " + PackedLayout.MAX_QUEUE_SIZE
                    + ", got " + queueSize);
        }
        if (queueIndex < 0) {
            throw new IllegalArgumentException("queue index must not be negative, got " + queueIndex);
        }
        long stride = PackedInflightLayout.stride(queueSize);
        long offset = PackedInflightLayout.queueOffset(queueIndex, queueSize);
        if (buffer.byteSize() < offset + stride) {
            throw new InflightRegionException(InflightRegionException.Kind.REGION_TOO_SMALL,
                    "inflight buffer of " + buffer.byteSize() + " bytes cannot hold packed queue " + queueIndex
                            + " of size " + queueSize + " (needs " + (offset + stride) + ")");
        }
        return new PackedInflightQueue(buffer.asSlice(offset, stride), queueSize, probe);
    }

    /** Queue size: entries in the region. */
    public int queueSize() {
        return queueSize;
    }

    /**
     * Lays out a fresh region (GET_INFLIGHT_FD, ring starting at slot 0, wrap 1) as DPDK does: zeroed,
     * every entry's next the one after it, both wrap counters 1, version 1 last.
     */
    public void initialize() {
        initialize(0, 1);
    }

    private void initialize(int slot, int wrap) {
        region.fill((byte) 0);
        for (int i = 0; i < queueSize; i++) {
            sp16(entry(i) + ENTRY_NEXT, i + 1);
        }
        sp16(DESC_NUM, queueSize);
        freeHead = 0;
        oldFreeHead = 0;
        usedSlot = oldUsedSlot = slot;
        usedWrap = oldUsedWrap = wrap;
        sp64(USED_WORD, usedWord(slot, wrap, slot, wrap, 0));
        so16(VERSION, VERSION_1);
        stored();
    }

    /**
     * Fetch, first ring descriptor of a chain: the chain is the {@code counter}-th fetched. Returns its
     * entry, which {@link #releaseChain} takes when it completes. Follow with {@link #addDescriptor}
     * for each ring descriptor, this one included. No allocation.
     */
    public int beginChain(long counter) {
        int first = oldFreeHead;
        if (first != freeHead || first >= queueSize) {
            throw new IllegalStateException("packed inflight: chain begun with free_head " + freeHead
                    + ", old_free_head " + first + " (previous chain unfinished, or more than " + queueSize
                    + " descriptors in flight)");
        }
        long e = entry(first);
        sp16(e + ENTRY_NUM, 0);
        stored();
        sp64(e + ENTRY_COUNTER, counter);
        stored();
        so8(e + ENTRY_INFLIGHT, 1);
        stored();
        return first;
    }

    /**
     * Fetch, each ring descriptor of the chain begun last, in ring order; {@code last} for the one
     * without NEXT. No allocation.
     */
    public void addDescriptor(long addr, int len, int id, int flags, boolean last) {
        int first = oldFreeHead;
        int slot = freeHead;
        if (slot >= queueSize) {
            throw new IllegalStateException("packed inflight: more than " + queueSize + " descriptors in flight");
        }
        long f = entry(first);
        if (last) {
            sp16(f + ENTRY_LAST, slot);
            stored();
        }
        sp16(f + ENTRY_NUM, lp16(f + ENTRY_NUM) + 1);
        stored();
        long e = entry(slot);
        sp64(e + ENTRY_ADDR, addr);
        stored();
        sp32(e + ENTRY_LEN, len);
        stored();
        sp16(e + ENTRY_FLAGS, flags);
        stored();
        sp16(e + ENTRY_ID, id);
        stored();
        freeHead = lp16(e + ENTRY_NEXT);
        so16(FREE_HEAD, freeHead);
        stored();
        if (last) {
            // Release: the chain's entries are complete before the fetch counts as done.
            oldFreeHead = freeHead;
            so16(OLD_FREE_HEAD, oldFreeHead);
            stored();
        }
    }

    /** Publish step 1, per completed chain: its entries go back on the free list. No allocation. */
    public void releaseChain(int entry) {
        int last = lp16(entry(entry) + ENTRY_LAST);
        sp16(entry(last) + ENTRY_NEXT, freeHead);
        stored();
        freeHead = entry;
        so16(FREE_HEAD, entry);
        stored();
    }

    /**
     * Publish step 2, before the used descriptors are written to the ring: the used position after
     * the batch. Release: after the chains were released.
     */
    public void setUsedPosition(int slot, int wrap) {
        usedSlot = slot;
        usedWrap = wrap;
        storeUsedWord();
    }

    /** Publish step 4, per chain, after the ring shows the batch used. Release: after the ring's flags. */
    public void clearInflight(int entry) {
        so8(entry(entry) + ENTRY_INFLIGHT, 0);
        stored();
    }

    /** Publish step 5, last: the batch is finished; old_free_head first, then the old used fields. */
    public void commitBatch() {
        oldFreeHead = freeHead;
        so16(OLD_FREE_HEAD, oldFreeHead);
        stored();
        oldUsedSlot = usedSlot;
        oldUsedWrap = usedWrap;
        storeUsedWord();
    }

    /**
     * Copies the ring descriptors of the chain whose first entry is {@code entry} (in chain order)
     * into the arrays, which must hold the queue size; returns how many. For a device that needs a
     * chain's buffers again after its ring slots were reused (dirty logging). No allocation.
     */
    public int copyChain(int entry, long[] addr, int[] len, int[] flags) {
        int num = lp16(entry(entry) + ENTRY_NUM);
        int e = entry;
        for (int i = 0; i < num && i < queueSize && e < queueSize; i++) {
            long d = entry(e);
            addr[i] = lp64(d + ENTRY_ADDR);
            len[i] = lp32(d + ENTRY_LEN);
            flags[i] = lp16(d + ENTRY_FLAGS);
            if (i == num - 1) {
                return num;
            }
            e = next(e);
        }
        return 0; // not a chain this queue recorded: nothing to rebuild
    }

    /**
     * Ring start: makes the region consistent with the ring and says what to resubmit (§5.6), and
     * where to resume, since QEMU's packed ring base after a crash is stale. Commits a batch whose
     * first used descriptor the ring already shows, rolls back anything else half done, clears the
     * free entries, and collects the inflight chains in counter order. A never-initialised region
     * (version 0) is initialised at used position (0, wrap 1), and nothing is resubmitted.
     *
     * @param ringFlags reads the flags (u16) of a ring slot from guest memory; called at most once
     * @throws InflightRegionException if the region holds what no back-end could have written
     */
    public PackedInflightRecovery recover(IntUnaryOperator ringFlags) {
        return recover(ringFlags, 0, 1);
    }

    /**
     * As {@link #recover(IntUnaryOperator)}, but a never-initialised region is laid out with its used
     * position at ({@code freshSlot}, {@code freshWrap}): where the ring really is when a device that
     * had no region before (or a migrated one) starts tracking. The returned positions are then that
     * position, for both avail and used, and nothing is resubmitted.
     */
    public PackedInflightRecovery recover(IntUnaryOperator ringFlags, int freshSlot, int freshWrap) {
        int version = lv16(VERSION);
        if (version == 0) {
            if (freshSlot < 0 || freshSlot >= queueSize || (freshWrap & ~1) != 0) {
                throw new IllegalArgumentException("fresh used position " + freshSlot + "/" + freshWrap
                        + " outside a ring of " + queueSize);
            }
            initialize(freshSlot, freshWrap);
            return new PackedInflightRecovery(List.of(), freshSlot, freshWrap, freshSlot, freshWrap, 0, false, true, 0);
        }
        if (version != VERSION_1) {
            throw new InflightRegionException(InflightRegionException.Kind.UNSUPPORTED_VERSION,
                    "packed inflight region has version " + version + ", expected " + VERSION_1);
        }
        int descNum = lp16(DESC_NUM);
        if (descNum != queueSize) {
            throw new InflightRegionException(InflightRegionException.Kind.QUEUE_SIZE_MISMATCH,
                    "packed inflight region has desc_num " + descNum + ", the ring has size " + queueSize);
        }
        loadHeader();
        requireIndex("free_head", freeHead, queueSize);
        requireIndex("old_free_head", oldFreeHead, queueSize);
        requireIndex("used_idx", usedSlot, queueSize - 1);
        requireIndex("old_used_idx", oldUsedSlot, queueSize - 1);
        requireIndex("used_wrap_counter", usedWrap, 1);
        requireIndex("old_used_wrap_counter", oldUsedWrap, 1);

        // Decide, read-only: commit a batch the driver can already see, otherwise roll back.
        boolean commit = false;
        if (usedSlot != oldUsedSlot || usedWrap != oldUsedWrap) {
            int flags = ringFlags.applyAsInt(oldUsedSlot) & 0xFFFF;
            commit = !PackedLayout.isAvailable(flags, oldUsedWrap);
        }
        int head = commit ? freeHead : oldFreeHead;
        int slot = commit ? usedSlot : oldUsedSlot;
        int wrap = commit ? usedWrap : oldUsedWrap;
        int batchSlots = usedSlot - oldUsedSlot + (usedWrap != oldUsedWrap ? queueSize : 0);
        int rolledBack = commit ? 0 : batchSlots;
        if (batchSlots < 0 || batchSlots > queueSize) {
            throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                    "packed inflight used position " + usedSlot + "/" + usedWrap + " is not within one ring of "
                            + oldUsedSlot + "/" + oldUsedWrap + " (queue size " + queueSize + ")");
        }

        boolean[] free = new boolean[queueSize];
        for (int e = head, steps = 0; e != queueSize; steps++) {
            if (e > queueSize || free[e] || steps > queueSize) {
                throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                        "packed inflight free list from " + head + " reaches entry " + e + " after " + steps
                                + " steps (queue size " + queueSize + ")");
            }
            free[e] = true;
            e = next(e);
        }
        List<PackedInflightRecovery.Chain> chains = new ArrayList<>();
        boolean[] taken = free.clone();
        int slots = 0;
        for (int first = 0; first < queueSize; first++) {
            int flag = lp8(entry(first) + ENTRY_INFLIGHT);
            if (flag > 1) {
                throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                        "packed inflight entry " + first + " has inflight byte " + flag);
            }
            if (flag == 0 || free[first]) {
                continue;
            }
            PackedInflightRecovery.Chain chain = readChain(first, taken);
            slots += chain.slots();
            chains.add(chain);
        }
        if (slots > queueSize) {
            throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                    "packed inflight chains hold " + slots + " descriptors, queue size " + queueSize);
        }
        chains.sort((a, b) -> Long.compareUnsigned(a.counter(), b.counter()));
        long nextCounter = 0;
        for (int i = 0; i < chains.size(); i++) {
            if (i > 0 && chains.get(i).counter() == chains.get(i - 1).counter()) {
                throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                        "packed inflight entries " + chains.get(i - 1).entry() + " and " + chains.get(i).entry()
                                + " share counter " + Long.toUnsignedString(chains.get(i).counter()));
            }
            nextCounter = chains.get(i).counter() + 1;
        }

        // Write: the chosen side becomes both current and old, then free entries lose their flag.
        freeHead = oldFreeHead = head;
        sp16(FREE_HEAD, head);
        stored();
        so16(OLD_FREE_HEAD, head);
        stored();
        usedSlot = oldUsedSlot = slot;
        usedWrap = oldUsedWrap = wrap;
        storeUsedWord();
        for (int e = 0; e < queueSize; e++) {
            if (free[e] && lp8(entry(e) + ENTRY_INFLIGHT) != 0) {
                clearInflight(e);
            }
        }
        int availSlot = slot + slots;
        int availWrap = wrap;
        if (availSlot >= queueSize) {
            availSlot -= queueSize;
            availWrap ^= 1;
        }
        return new PackedInflightRecovery(chains, availSlot, availWrap, slot, wrap, nextCounter, commit, false, rolledBack);
    }

    private PackedInflightRecovery.Chain readChain(int first, boolean[] taken) {
        long f = entry(first);
        int num = lp16(f + ENTRY_NUM);
        int last = lp16(f + ENTRY_LAST);
        if (num < 1 || num > queueSize) {
            throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                    "packed inflight chain at entry " + first + " has num " + num + " (queue size " + queueSize + ")");
        }
        List<PackedInflightRecovery.Descriptor> descriptors = new ArrayList<>(num);
        int e = first;
        for (int i = 0; ; i++) {
            if (e >= queueSize || taken[e]) {
                throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                        "packed inflight chain at entry " + first + " reaches entry " + e
                                + ", out of range, free or in another chain");
            }
            taken[e] = true;
            long d = entry(e);
            descriptors.add(new PackedInflightRecovery.Descriptor(lp64(d + ENTRY_ADDR), lp32(d + ENTRY_LEN),
                    lp16(d + ENTRY_ID), lp16(d + ENTRY_FLAGS)));
            if (i == num - 1) {
                break;
            }
            e = next(e);
        }
        if (e != last) {
            throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                    "packed inflight chain at entry " + first + " ends at entry " + e + ", its last says " + last);
        }
        return new PackedInflightRecovery.Chain(first, lp64(f + ENTRY_COUNTER),
                descriptors.getLast().id(), descriptors);
    }

    private int next(int entry) {
        return lp16(entry(entry) + ENTRY_NEXT);
    }

    private static void requireIndex(String field, int value, int max) {
        if (value > max) {
            throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                    "packed inflight " + field + " is " + value + ", at most " + max);
        }
    }

    private void loadHeader() {
        freeHead = lp16(FREE_HEAD);
        oldFreeHead = lp16(OLD_FREE_HEAD);
        long word = lp64(USED_WORD);
        usedSlot = (int) (word & 0xFFFF);
        oldUsedSlot = (int) ((word >>> 16) & 0xFFFF);
        usedWrap = (int) ((word >>> 32) & 0xFF);
        oldUsedWrap = (int) ((word >>> 40) & 0xFF);
    }

    /** Release, one aligned 8-byte store: used_idx, old_used_idx and both wrap counters change together. */
    private void storeUsedWord() {
        long padding = lp64(USED_WORD) & USED_WORD_PADDING;
        so64(USED_WORD, usedWord(usedSlot, usedWrap, oldUsedSlot, oldUsedWrap, padding));
        stored();
    }

    private static long usedWord(int slot, int wrap, int oldSlot, int oldWrap, long padding) {
        return slot | (long) oldSlot << 16 | (long) wrap << 32 | (long) oldWrap << 40 | padding;
    }

    @Override
    public String toString() {
        return "PackedInflightQueue[size=" + queueSize + ", free_head=" + freeHead + ", used=" + usedSlot + "/" + usedWrap + "]";
    }
}
