package io.vring.engine.inflight;

import io.vring.engine.memory.SharedMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.MemorySegment;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The packed inflight region against bytes laid out by hand at the literal offsets of the
 * reference's §5.5 tables (QueueRegionPacked, DescStatePacked, entries from offset 32), never
 * through the layout constants: what DPDK leaves is read correctly, and what the queue writes is
 * what DPDK would read.
 */
class PackedInflightGoldenBytesTest {
    private static final int Q = 4;
    /** alignUp(32 + 32 * 4, 64), computed by hand. */
    private static final int STRIDE = 192;

    private SharedMemory memory;
    private MemorySegment buffer;

    @BeforeEach
    void setUp() {
        memory = SharedMemory.create("packed-inflight-golden", 2 * STRIDE);
        buffer = memory.segment();
    }

    @AfterEach
    void tearDown() {
        memory.close();
    }

    private void put(long offset, long value, int bytes) {
        for (int i = 0; i < bytes; i++) {
            buffer.set(JAVA_BYTE, offset + i, (byte) (value >>> (8 * i)));
        }
    }

    private long get(long offset, int bytes) {
        long v = 0;
        for (int i = 0; i < bytes; i++) {
            v |= (buffer.get(JAVA_BYTE, offset + i) & 0xFFL) << (8 * i);
        }
        return v;
    }

    private void putEntry(long base, int i, int inflight, int next, int last, int num, long counter,
                          int id, int flags, int len, long addr) {
        long e = base + 32 + 32L * i;
        put(e, inflight, 1);
        put(e + 2, next, 2);
        put(e + 4, last, 2);
        put(e + 6, num, 2);
        put(e + 8, counter, 8);
        put(e + 16, id, 2);
        put(e + 18, flags, 2);
        put(e + 20, len, 4);
        put(e + 24, addr, 8);
    }

    @ParameterizedTest(name = "{0} queues of {1}: {2} bytes")
    @CsvSource({"1, 1, 64", "1, 2, 128", "1, 3, 128", "1, 4, 192", "1, 256, 8256", "4, 128, 16640",
            "2, 1024, 65664"})
    void regionSizeIsNumQueuesTimesTheStrideAlignedTo64(int queues, int size, long bytes) {
        assertEquals(bytes, PackedInflightLayout.regionSize(queues, size));
    }

    @Test
    void strideMatchesDpdkForEveryQueueSize() {
        for (int q = 1; q <= 32768; q++) {
            assertEquals((32L * q + 29 + 63) & -64, PackedInflightLayout.stride(q), "Q=" + q);
        }
    }

    /**
     * Queue 1 holds two inflight chains, A (entries 0-1, counter 7, id 5) and B (entry 2, counter 3,
     * id 9); entry 3 is free but has a stale inflight flag. With {@code published}, B's completion
     * was half published (free_head already took B back, used_idx moved by one) and the ring shows it.
     */
    private void layOutTwoChains(boolean halfPublishedB) {
        long b = STRIDE;
        put(b + 8, 1, 2);
        put(b + 10, Q, 2);
        put(b + 12, halfPublishedB ? 2 : 3, 2); // free_head
        put(b + 14, 3, 2);                      // old_free_head
        put(b + 16, halfPublishedB ? 2 : 1, 2); // used_idx
        put(b + 18, 1, 2);                      // old_used_idx
        put(b + 20, 1, 1);                      // used_wrap_counter
        put(b + 21, 1, 1);                      // old_used_wrap_counter
        putEntry(b, 0, 1, 1, 1, 2, 7, 5, 0x81, 0x100, 0x1000);
        putEntry(b, 1, 0, 2, 0, 0, 0, 5, 0x80, 0x200, 0x2000);
        putEntry(b, 2, 1, 3, 2, 1, 3, 9, 0x82, 0x300, 0x3000);
        putEntry(b, 3, 1, 4, 0, 0, 0, 0, 0, 0, 0);
    }

    @Test
    void aRegionWrittenByHandGivesItsChainsInCounterOrderAndTheResumePosition() {
        layOutTwoChains(false);
        PackedInflightRecovery r = PackedInflightQueue.of(buffer, 1, Q).recover(slot -> {
            throw new AssertionError("the ring need not be read when used_idx == old_used_idx");
        });
        assertEquals(List.of(9, 5), r.chainsInCounterOrder().stream().map(PackedInflightRecovery.Chain::id).toList());
        PackedInflightRecovery.Chain a = r.chainsInCounterOrder().get(1);
        assertEquals(0, a.entry());
        assertEquals(7, a.counter());
        assertEquals(List.of(new PackedInflightRecovery.Descriptor(0x1000, 0x100, 5, 0x81),
                new PackedInflightRecovery.Descriptor(0x2000, 0x200, 5, 0x80)), a.descriptors());
        assertEquals(0, r.nextAvailSlot(), "slot 1 + 3 descriptors wraps past the end of a ring of 4");
        assertEquals(0, r.nextAvailWrap());
        assertEquals(1, r.usedSlot());
        assertEquals(1, r.usedWrap());
        assertEquals(8, r.nextCounter());
        assertEquals(0, get(STRIDE + 32 + 32 * 3, 1), "the free entry's stale flag is cleared");
        assertEquals(0, get(0, STRIDE), "queue 0's region is untouched");
    }

    @Test
    void aBatchTheRingAlreadyShowsUsedIsCommittedAndNotResubmitted() {
        layOutTwoChains(true);
        int usedFlagsWrap1 = 0x8080;
        PackedInflightRecovery r = PackedInflightQueue.of(buffer, 1, Q).recover(slot -> {
            assertEquals(1, slot, "the ring is read at old_used_idx");
            return usedFlagsWrap1;
        });
        assertTrue(r.batchCommitted());
        assertEquals(List.of(5), r.chainsInCounterOrder().stream().map(PackedInflightRecovery.Chain::id).toList());
        assertEquals(2, r.usedSlot());
        assertEquals(0, r.nextAvailSlot());
        assertEquals(0, r.nextAvailWrap());
        assertEquals(2, get(STRIDE + 12, 2), "free_head");
        assertEquals(2, get(STRIDE + 14, 2), "old_free_head");
        assertEquals(2, get(STRIDE + 18, 2), "old_used_idx");
        assertEquals(0, get(STRIDE + 32 + 32 * 2, 1), "B is no longer in flight");
    }

    @Test
    void aBatchTheRingStillShowsAvailableIsRolledBackAndResubmitted() {
        layOutTwoChains(true);
        int availableFlagsWrap1 = 0x0080;
        PackedInflightRecovery r = PackedInflightQueue.of(buffer, 1, Q).recover(slot -> availableFlagsWrap1);
        assertFalse(r.batchCommitted());
        assertEquals(List.of(9, 5), r.chainsInCounterOrder().stream().map(PackedInflightRecovery.Chain::id).toList());
        assertEquals(1, r.usedSlot());
        assertEquals(3, get(STRIDE + 12, 2), "free_head rolled back");
        assertEquals(1, get(STRIDE + 16, 2), "used_idx rolled back");
    }

    @Test
    void initializeLaysOutTheFreeListAndWrapCountersAsDpdkDoes() {
        PackedInflightQueue.of(buffer, 1, Q).initialize();
        long b = STRIDE;
        assertEquals(0, get(b, 8), "features");
        assertEquals(1, get(b + 8, 2), "version");
        assertEquals(Q, get(b + 10, 2), "desc_num");
        assertEquals(0, get(b + 12, 4), "free_head, old_free_head");
        assertEquals(0, get(b + 16, 4), "used_idx, old_used_idx");
        assertEquals(1, get(b + 20, 1), "used_wrap_counter");
        assertEquals(1, get(b + 21, 1), "old_used_wrap_counter");
        for (int i = 0; i < Q; i++) {
            assertEquals(i + 1, get(b + 32 + 32 * i + 2, 2), "desc[" + i + "].next");
        }
    }

    @Test
    void fetchReleaseAndCommitWriteTheBytesAtTheReferenceOffsets() {
        PackedInflightQueue q = PackedInflightQueue.of(buffer, 1, Q);
        q.initialize();
        long b = STRIDE;
        long e0 = b + 32;
        long e1 = b + 64;

        assertEquals(0, q.beginChain(0x1122_3344_5566_7788L));
        q.addDescriptor(0xAABB_CCDD_0011_2233L, 0x0102_0304, 0x0506, 0x0081, false);
        assertEquals(1, get(b + 12, 2), "free_head moves per descriptor");
        assertEquals(0, get(b + 14, 2), "old_free_head waits for the chain's end");
        q.addDescriptor(0x4000, 0x10, 0x0506, 0x0082, true);

        assertEquals(1, get(e0, 1), "inflight");
        assertEquals(1, get(e0 + 4, 2), "last");
        assertEquals(2, get(e0 + 6, 2), "num");
        assertEquals(0x1122_3344_5566_7788L, get(e0 + 8, 8), "counter");
        assertEquals(0x0506, get(e0 + 16, 2), "id");
        assertEquals(0x0081, get(e0 + 18, 2), "flags");
        assertEquals(0x0102_0304, get(e0 + 20, 4), "len");
        assertEquals(0xAABB_CCDD_0011_2233L, get(e0 + 24, 8), "addr");
        assertEquals(0x33, buffer.get(JAVA_BYTE, e0 + 24), "addr's low byte first");
        assertEquals(0x4000, get(e1 + 24, 8), "second descriptor's addr");
        assertEquals(0x82, get(e1 + 18, 2), "second descriptor's flags");
        assertEquals(2, get(b + 12, 2), "free_head");
        assertEquals(2, get(b + 14, 2), "old_free_head");

        q.releaseChain(0);
        assertEquals(2, get(e1 + 2, 2), "the chain's last entry links to the old free head");
        assertEquals(0, get(b + 12, 2), "free_head");
        q.setUsedPosition(2, 1);
        assertEquals(2, get(b + 16, 2), "used_idx");
        assertEquals(0, get(b + 18, 2), "old_used_idx waits for the commit");
        q.clearInflight(0);
        assertEquals(0, get(e0, 1), "inflight");
        q.commitBatch();
        assertEquals(0, get(b + 14, 2), "old_free_head");
        assertEquals(2, get(b + 18, 2), "old_used_idx");
        assertEquals(1, get(b + 20, 1), "used_wrap_counter");
        assertEquals(1, get(b + 21, 1), "old_used_wrap_counter");
        assertEquals(0, get(b + 22, 10), "padding");
        assertEquals(0, get(0, STRIDE), "queue 0's region is untouched");
    }
}
