package io.vring.engine.inflight;

import io.vring.engine.memory.SharedMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The split inflight region against bytes laid out by hand at the literal offsets of the reference's
 * §5.3 tables (QueueRegionSplit, DescStateSplit), never through the layout constants: what QEMU
 * hands back from libvhost-user or DPDK is read correctly, and what the queue writes is what they
 * would read.
 */
class SplitInflightGoldenBytesTest {
    private static final int Q = 8;
    /** alignUp(16 + 16 * 8, 64), computed by hand. */
    private static final int STRIDE = 192;

    private SharedMemory memory;
    private MemorySegment buffer;

    @BeforeEach
    void setUp() {
        memory = SharedMemory.create("split-inflight-golden", 2 * STRIDE);
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

    @ParameterizedTest(name = "{0} queues of {1}: {2} bytes")
    @CsvSource({"1, 1, 64", "1, 2, 64", "1, 4, 128", "1, 128, 2112", "1, 256, 4160", "1, 1024, 16448",
            "2, 8, 384", "3, 2, 192", "8, 256, 33280", "1, 32768, 524352"})
    void regionSizeIsNumQueuesTimesTheStrideAlignedTo64(int queues, int size, long bytes) {
        assertEquals(bytes, SplitInflightLayout.regionSize(queues, size));
    }

    @Test
    void strideMatchesLibvhostUserAndDpdkForEveryQueueSize() {
        for (int q = 1; q <= 32768; q++) {
            long vhostUser = (16L * q + 2 + 63) & -64;
            long dpdk = (16L * q + 16 + 63) & -64;
            assertEquals(vhostUser, SplitInflightLayout.stride(q), "libvhost-user stride, Q=" + q);
            assertEquals(dpdk, SplitInflightLayout.stride(q), "DPDK stride, Q=" + q);
        }
    }

    @Test
    void aRegionWrittenByHandIsRecoveredHalfPublishedBatchAndAll() {
        long base = STRIDE; // queue 1
        put(base + 8, 1, 2);      // version
        put(base + 10, Q, 2);     // desc_num
        put(base + 12, 3, 2);     // last_batch_head = 3
        put(base + 14, 5, 2);     // used_idx = 5, the ring says 7: a batch of two was half published
        put(base + 16 + 16 * 3 + 6, 6, 2); // desc[3].next = 6
        put(base + 16 + 16 * 6 + 6, 1, 2); // desc[6].next = 1 (older batch, not walked)
        long[][] inflight = {{3, 40}, {6, 41}, {1, 12}, {4, 10}};
        for (long[] e : inflight) {
            put(base + 16 + 16 * e[0], 1, 1);
            put(base + 16 + 16 * e[0] + 8, e[1], 8);
        }

        SplitInflightRecovery r = SplitInflightQueue.of(buffer, 1, Q).recover(7);

        assertArrayEquals(new int[] {4, 1}, r.headsInCounterOrder());
        assertEquals(9, r.nextAvail());
        assertEquals(13, r.nextCounter());
        assertEquals(2, r.batchFinished());
        assertFalse(r.fresh());
        assertEquals(0, get(base + 16 + 16 * 3, 1), "desc[3].inflight");
        assertEquals(0, get(base + 16 + 16 * 6, 1), "desc[6].inflight");
        assertEquals(1, get(base + 16 + 16 * 1, 1), "desc[1].inflight");
        assertEquals(7, get(base + 14, 2), "used_idx");
        assertEquals(0, get(0, STRIDE), "queue 0's region is untouched");
    }

    @Test
    void initializeWritesVersionOneAndDescNumAndNothingElse() {
        put(STRIDE + 40, -1L, 8);
        SplitInflightQueue.of(buffer, 1, Q).initialize();
        assertEquals(0, get(STRIDE, 8), "features");
        assertEquals(1, get(STRIDE + 8, 2), "version");
        assertEquals(Q, get(STRIDE + 10, 2), "desc_num");
        for (int off = 12; off < STRIDE; off++) {
            assertEquals(0, get(STRIDE + off, 1), "byte " + off);
        }
    }

    @Test
    void markBatchClearAndUsedIdxWriteTheBytesAtTheReferenceOffsets() {
        SplitInflightQueue q = SplitInflightQueue.of(buffer, 1, Q);
        q.initialize();
        long e5 = STRIDE + 16 + 16 * 5;

        q.markInflight(5, 0x0102_0304_0506_0708L);
        assertEquals(1, get(e5, 1), "inflight");
        assertEquals(0x0102_0304_0506_0708L, get(e5 + 8, 8), "counter, little-endian");
        assertEquals(8, buffer.get(JAVA_BYTE, e5 + 8), "counter's low byte first");

        put(STRIDE + 12, 2, 2);
        q.linkBatch(new int[] {5}, 1);
        assertEquals(2, get(e5 + 6, 2), "next = previous last_batch_head");
        assertEquals(5, get(STRIDE + 12, 2), "last_batch_head");

        q.clearInflight(5);
        assertEquals(0, get(e5, 1), "inflight");
        q.setUsedIdx(0x1234);
        assertEquals(0x34, buffer.get(JAVA_BYTE, STRIDE + 14), "used_idx low byte");
        assertEquals(0x12, buffer.get(JAVA_BYTE, STRIDE + 15), "used_idx high byte");
        assertEquals(0, get(e5 + 1, 5), "padding");
        assertEquals(0, get(0, STRIDE), "queue 0's region is untouched");
    }

    @Test
    void aNeverInitialisedRegionIsInitialisedAtTheUsedIdxAndNothingIsResubmitted() {
        SplitInflightRecovery r = SplitInflightQueue.of(buffer, 0, Q).recover(65533);
        assertTrue(r.fresh());
        assertEquals(0, r.headsInCounterOrder().length);
        assertEquals(65533, r.nextAvail());
        assertEquals(1, get(8, 2));
        assertEquals(Q, get(10, 2));
        assertEquals(65533, get(14, 2));
    }

    @Test
    void resumeIndexWrapsAtSixteenBits() {
        SplitInflightQueue q = SplitInflightQueue.of(buffer, 0, Q);
        q.recover(65535);
        q.markInflight(2, 0);
        q.markInflight(7, 1);
        SplitInflightRecovery r = q.recover(65535);
        assertArrayEquals(new int[] {2, 7}, r.headsInCounterOrder());
        assertEquals(1, r.nextAvail());
        assertEquals(2, r.nextCounter());
    }
}
