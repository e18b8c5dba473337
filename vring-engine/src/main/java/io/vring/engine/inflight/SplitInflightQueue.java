package io.vring.engine.inflight;

import io.vring.engine.split.SplitLayout;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import static io.vring.engine.inflight.SplitInflightLayout.DESC_NUM;
import static io.vring.engine.inflight.SplitInflightLayout.ENTRY_COUNTER;
import static io.vring.engine.inflight.SplitInflightLayout.ENTRY_INFLIGHT;
import static io.vring.engine.inflight.SplitInflightLayout.ENTRY_NEXT;
import static io.vring.engine.inflight.SplitInflightLayout.FEATURES;
import static io.vring.engine.inflight.SplitInflightLayout.LAST_BATCH_HEAD;
import static io.vring.engine.inflight.SplitInflightLayout.USED_IDX;
import static io.vring.engine.inflight.SplitInflightLayout.VERSION;
import static io.vring.engine.inflight.SplitInflightLayout.VERSION_1;
import static io.vring.engine.inflight.SplitInflightLayout.entry;

/**
 * One split queue's part of the inflight buffer (reference §5.3-5.4): a view over the queue's
 * {@link SplitInflightLayout#stride stride} of a shared mapping, written as the device pops and
 * publishes so that a restarted back-end can resubmit what was popped and never completed.
 *
 * <p><b>Order of stores, and why a SIGKILL anywhere is safe.</b> A kill stops the process between
 * two stores; the mapping keeps every store made before it. The JIT may reorder plain stores, so the
 * stores that must land in order are release stores.
 * <ul>
 *   <li>Pop ({@link #markInflight}): {@code counter}, then {@code inflight = 1} (release, so an entry
 *       marked in flight always has its counter). Killed before the mark: the head is in neither
 *       the used ring nor the region, and the resume index {@code used idx + inflight count} points
 *       at its avail slot, so the next incarnation pops it again. Marks must follow pop order.</li>
 *   <li>Publish, for a batch of heads: (1) {@link #linkBatch} (each head's {@code next} = the head
 *       before it, then {@code last_batch_head} = the last head, release); (2) the device
 *       writes the used elements and publishes the used ring idx with a release store, which keeps
 *       (1) before it; (3) {@link #clearInflight} each head (release: after the used idx);
 *       (4) {@link #setUsedIdx} (release: after the clears). Killed before (2): the batch is still in
 *       flight and is resubmitted, correctly, since the driver saw nothing. Killed after (2) and
 *       before (4): the region's used_idx lags the ring's by the batch size, and recovery walks that
 *       many heads from {@code last_batch_head} clearing them, so none is completed twice.</li>
 * </ul>
 *
 * <p>Single-threaded, like the queue that owns it. Mark, batch and clear do not allocate;
 * {@link #recover} does.
 */
public final class SplitInflightQueue extends InflightRegionView {


    private SplitInflightQueue(MemorySegment region, int queueSize, StoreProbe probe) {
        super(region, queueSize, probe);
    }

    /**
     * The region of queue {@code queueIndex} in an inflight buffer whose queues have {@code queueSize}
     * descriptors.
     *
     * @throws InflightRegionException (REGION_TOO_SMALL) if the buffer does not reach that far
     */
    public static SplitInflightQueue of(MemorySegment buffer, int queueIndex, int queueSize) {
        return of(buffer, queueIndex, queueSize, null);
    }

    static SplitInflightQueue of(MemorySegment buffer, int queueIndex, int queueSize, StoreProbe probe) {
        if (!SplitLayout.isValidQueueSize(queueSize)) {
            throw new IllegalArgumentException("split queue size must be a power of two up to "
                    + SplitLayout.MAX_QUEUE_SIZE + ", got " + queueSize);
        }
        if (queueIndex < 0) {
            throw new IllegalArgumentException("queue index must not be negative, got " + queueIndex);
        }
        long stride = SplitInflightLayout.stride(queueSize);
        long offset = SplitInflightLayout.queueOffset(queueIndex, queueSize);
        if (buffer.byteSize() < offset + stride) {
            throw new InflightRegionException(InflightRegionException.Kind.REGION_TOO_SMALL,
                    "inflight buffer of " + buffer.byteSize() + " bytes cannot hold split queue " + queueIndex
                            + " of size " + queueSize + " (needs " + (offset + stride) + ")");
        }
        return new SplitInflightQueue(buffer.asSlice(offset, stride), queueSize, probe);
    }

    /** Queue size: entries in the region. */
    public int queueSize() {
        return queueSize;
    }

    /**
     * Lays out a fresh region (GET_INFLIGHT_FD, rings starting at index 0): zeroes it, then version 1
     * and desc_num. Version goes last, so a region killed half-way reads as uninitialised.
     */
    public void initialize() {
        region.fill((byte) 0);
        sp64(FEATURES, 0L);
        sp16(DESC_NUM, queueSize);
        so16(VERSION, VERSION_1);
        stored();
    }

    /**
     * Pop: records that {@code head} was taken from the avail ring as the {@code counter}-th request.
     * Call in pop order, before the request is acted on. No allocation.
     */
    public void markInflight(int head, long counter) {
        long e = entry(head);
        sp64(e + ENTRY_COUNTER, counter);
        stored();
        // Release: the counter lands before the flag, so an entry marked in flight always has its counter.
        so8(e + ENTRY_INFLIGHT, 1);
        stored();
    }

    /**
     * Publish step 1, before the used ring idx is published: links the batch's {@code count} heads
     * into the batch list ({@code next} of each = the head before it, the first one's = the old
     * {@code last_batch_head}), then {@code last_batch_head} = the last head. One release store for
     * the batch: it keeps every {@code next} before it, and the used idx release store keeps all of
     * this before the driver sees the batch. No allocation.
     */
    public void linkBatch(int[] heads, int count) {
        int previous = lp16(LAST_BATCH_HEAD);
        for (int k = 0; k < count; k++) {
            sp16(entry(heads[k]) + ENTRY_NEXT, previous);
            stored();
            previous = heads[k];
        }
        so16(LAST_BATCH_HEAD, previous);
        stored();
    }

    /**
     * Publish step 3, for each head of the batch, after the used ring idx is published: {@code head} is
     * no longer in flight. Release: cannot move before the used idx store, or a kill between the two
     * would lose the request.
     */
    public void clearInflight(int head) {
        so8(entry(head) + ENTRY_INFLIGHT, 0);
        stored();
    }

    /**
     * Publish step 4, after the clears: the region now agrees with the used ring at {@code usedIdx}.
     * Release: cannot move before the clears.
     */
    public void setUsedIdx(int usedIdx) {
        so16(USED_IDX, usedIdx);
        stored();
    }

    /** The region's used_idx (tests and diagnostics). */
    public int usedIdx() {
        return lv16(USED_IDX);
    }

    /** True if {@code head} is marked in flight (tests and diagnostics). */
    public boolean isInflight(int head) {
        return lv8(entry(head) + ENTRY_INFLIGHT) != 0;
    }

    /**
     * Ring start: makes the region consistent with the used ring and says what to resubmit (§5.4).
     * Finishes a half-published batch (the region's used_idx behind {@code usedIdxInRing}), collects
     * the heads still in flight and orders them by counter. A never-initialised region (version 0)
     * is initialised with used_idx = {@code usedIdxInRing}, and nothing is resubmitted.
     *
     * @param usedIdxInRing the used ring's idx as the guest memory holds it now
     * @throws InflightRegionException if the region holds what no back-end could have written
     */
    public SplitInflightRecovery recover(int usedIdxInRing) {
        int used = usedIdxInRing & 0xFFFF;
        int version = lv16(VERSION);
        if (version == 0) {
            region.fill((byte) 0);
            sp16(DESC_NUM, queueSize);
            sp16(USED_IDX, used);
            so16(VERSION, VERSION_1);
            stored();
            return new SplitInflightRecovery(new int[0], used, 0, 0, true);
        }
        if (version != VERSION_1) {
            throw new InflightRegionException(InflightRegionException.Kind.UNSUPPORTED_VERSION,
                    "split inflight region has version " + version + ", expected " + VERSION_1);
        }
        int descNum = lp16(DESC_NUM);
        if (descNum != queueSize) {
            throw new InflightRegionException(InflightRegionException.Kind.QUEUE_SIZE_MISMATCH,
                    "split inflight region has desc_num " + descNum + ", the ring has size " + queueSize);
        }
        // Read and check everything before writing anything: a refused region is left as it was.
        int regionUsed = lp16(USED_IDX);
        int batch = (used - regionUsed) & 0xFFFF;
        if (batch > queueSize) {
            throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                    "split inflight used_idx " + regionUsed + " is " + batch + " behind the used ring's "
                            + used + ", more than the queue size " + queueSize);
        }
        int[] batchHeads = new int[batch];
        int head = lp16(LAST_BATCH_HEAD);
        for (int i = 0; i < batch; i++) {
            if (head >= queueSize) {
                throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                        "split inflight batch list reaches head " + head + ", queue size " + queueSize);
            }
            batchHeads[i] = head;
            head = lp16(entry(head) + ENTRY_NEXT);
        }
        boolean[] inBatch = new boolean[queueSize];
        for (int h : batchHeads) {
            inBatch[h] = true;
        }
        long[] counters = new long[queueSize];
        Integer[] order = new Integer[queueSize];
        int n = 0;
        for (int i = 0; i < queueSize; i++) {
            int flag = lp8(entry(i) + ENTRY_INFLIGHT);
            if (flag > 1) {
                throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                        "split inflight entry " + i + " has inflight byte " + flag);
            }
            if (flag == 1 && !inBatch[i]) {
                counters[i] = lp64(entry(i) + ENTRY_COUNTER);
                order[n++] = i;
            }
        }
        Arrays.sort(order, 0, n, (a, b) -> Long.compareUnsigned(counters[a], counters[b]));
        int[] heads = new int[n];
        long nextCounter = 0;
        for (int i = 0; i < n; i++) {
            heads[i] = order[i];
            if (i > 0 && counters[heads[i]] == counters[heads[i - 1]]) {
                throw new InflightRegionException(InflightRegionException.Kind.CORRUPT,
                        "split inflight heads " + heads[i - 1] + " and " + heads[i] + " share counter "
                                + Long.toUnsignedString(counters[heads[i]]));
            }
            nextCounter = counters[heads[i]] + 1;
        }
        // Now finish the half-published batch: clears first, used_idx last, as a publish does.
        for (int h : batchHeads) {
            clearInflight(h);
        }
        if (batch != 0) {
            setUsedIdx(used);
        }
        return new SplitInflightRecovery(heads, (used + n) & 0xFFFF, nextCounter, batch, false);
    }

    @Override
    public String toString() {
        return "SplitInflightQueue[size=" + queueSize + ", used_idx=" + usedIdx() + "]";
    }
}
