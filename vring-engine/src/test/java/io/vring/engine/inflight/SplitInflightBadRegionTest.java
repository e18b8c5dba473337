package io.vring.engine.inflight;

import io.vring.engine.memory.SharedMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;

import static io.vring.engine.inflight.InflightRegionException.Kind.CORRUPT;
import static io.vring.engine.inflight.InflightRegionException.Kind.QUEUE_SIZE_MISMATCH;
import static io.vring.engine.inflight.InflightRegionException.Kind.REGION_TOO_SMALL;
import static io.vring.engine.inflight.InflightRegionException.Kind.UNSUPPORTED_VERSION;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A split region handed back after a crash is checked before it is trusted; a refusal says why and writes nothing. */
class SplitInflightBadRegionTest {
    private static final int Q = 8;

    private SharedMemory memory;
    private MemorySegment buffer;
    private SplitInflightQueue queue;

    @BeforeEach
    void setUp() {
        memory = SharedMemory.create("split-inflight-bad", SplitInflightLayout.regionSize(1, Q));
        buffer = memory.segment();
        queue = SplitInflightQueue.of(buffer, 0, Q);
        queue.initialize();
    }

    @AfterEach
    void tearDown() {
        memory.close();
    }

    private InflightRegionException refused(InflightRegionException.Kind kind, int usedIdx) {
        byte[] before = buffer.toArray(JAVA_BYTE);
        InflightRegionException e = assertThrows(InflightRegionException.class, () -> queue.recover(usedIdx));
        assertEquals(kind, e.kind(), e.getMessage());
        assertArrayEquals(before, buffer.toArray(JAVA_BYTE), "a refused region is left as it was");
        return e;
    }

    @Test
    void aBufferTooSmallForTheQueueIsRefused() {
        InflightRegionException e = assertThrows(InflightRegionException.class,
                () -> SplitInflightQueue.of(buffer, 1, Q));
        assertEquals(REGION_TOO_SMALL, e.kind());
        assertTrue(e.getMessage().contains("queue 1"), e.getMessage());
    }

    @Test
    void aVersionOtherThanOneIsRefused() {
        buffer.set(JAVA_BYTE, SplitInflightLayout.VERSION, (byte) 2);
        assertTrue(refused(UNSUPPORTED_VERSION, 0).getMessage().contains("version 2"));
    }

    @Test
    void aDescNumOtherThanTheQueueSizeIsRefused() {
        buffer.set(JAVA_BYTE, SplitInflightLayout.DESC_NUM, (byte) 16);
        refused(QUEUE_SIZE_MISMATCH, 0);
    }

    @Test
    void anInflightByteOtherThanZeroOrOneIsRefused() {
        buffer.set(JAVA_BYTE, SplitInflightLayout.entry(3) + SplitInflightLayout.ENTRY_INFLIGHT, (byte) 7);
        assertTrue(refused(CORRUPT, 0).getMessage().contains("entry 3"));
    }

    @Test
    void twoInflightHeadsWithOneCounterAreRefused() {
        queue.markInflight(1, 9);
        queue.markInflight(2, 9);
        assertTrue(refused(CORRUPT, 0).getMessage().contains("share counter 9"));
    }

    @Test
    void aUsedIdxFurtherBehindTheRingThanTheQueueSizeIsRefused() {
        refused(CORRUPT, Q + 1);
    }

    @Test
    void aBatchListThatLeavesTheQueueIsRefused() {
        buffer.set(JAVA_BYTE, SplitInflightLayout.LAST_BATCH_HEAD, (byte) 200);
        refused(CORRUPT, 1);
    }
}
