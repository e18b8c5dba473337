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

/** A packed region handed back after a crash is checked before it is trusted; a refusal says why and writes nothing. */
class PackedInflightBadRegionTest {
    private static final int Q = 8;

    private SharedMemory memory;
    private MemorySegment buffer;
    private PackedInflightQueue queue;

    @BeforeEach
    void setUp() {
        memory = SharedMemory.create("packed-inflight-bad", PackedInflightLayout.regionSize(1, Q));
        buffer = memory.segment();
        queue = PackedInflightQueue.of(buffer, 0, Q);
        queue.initialize();
    }

    @AfterEach
    void tearDown() {
        memory.close();
    }

    private void fetch(long counter, int descriptors) {
        queue.beginChain(counter);
        for (int i = 0; i < descriptors; i++) {
            queue.addDescriptor(0x1000L * (i + 1), 16, 3, 0x80, i == descriptors - 1);
        }
    }

    private InflightRegionException refused(InflightRegionException.Kind kind) {
        byte[] before = buffer.toArray(JAVA_BYTE);
        InflightRegionException e = assertThrows(InflightRegionException.class,
                () -> PackedInflightQueue.of(buffer, 0, Q).recover(slot -> 0x0080));
        assertEquals(kind, e.kind(), e.getMessage());
        assertArrayEquals(before, buffer.toArray(JAVA_BYTE), "a refused region is left as it was");
        return e;
    }

    @Test
    void aBufferTooSmallForTheQueueIsRefused() {
        InflightRegionException e = assertThrows(InflightRegionException.class,
                () -> PackedInflightQueue.of(buffer, 0, 2 * Q));
        assertEquals(REGION_TOO_SMALL, e.kind());
    }

    @Test
    void aVersionOtherThanOneIsRefused() {
        buffer.set(JAVA_BYTE, PackedInflightLayout.VERSION, (byte) 3);
        refused(UNSUPPORTED_VERSION);
    }

    @Test
    void aDescNumOtherThanTheQueueSizeIsRefused() {
        buffer.set(JAVA_BYTE, PackedInflightLayout.DESC_NUM, (byte) 4);
        refused(QUEUE_SIZE_MISMATCH);
    }

    @Test
    void aWrapCounterOtherThanZeroOrOneIsRefused() {
        buffer.set(JAVA_BYTE, PackedInflightLayout.OLD_USED_WRAP_COUNTER, (byte) 2);
        assertTrue(refused(CORRUPT).getMessage().contains("old_used_wrap_counter"));
    }

    @Test
    void aFreeListWithACycleIsRefused() {
        buffer.set(JAVA_BYTE, PackedInflightLayout.entry(5) + PackedInflightLayout.ENTRY_NEXT, (byte) 2);
        assertTrue(refused(CORRUPT).getMessage().contains("free list"));
    }

    @Test
    void twoChainsWithOneCounterAreRefused() {
        fetch(4, 1);
        fetch(4, 2);
        assertTrue(refused(CORRUPT).getMessage().contains("share counter 4"));
    }

    @Test
    void aChainLongerThanTheQueueIsRefused() {
        fetch(1, 2);
        buffer.set(JAVA_BYTE, PackedInflightLayout.entry(0) + PackedInflightLayout.ENTRY_NUM, (byte) 9);
        assertTrue(refused(CORRUPT).getMessage().contains("num 9"));
    }

    @Test
    void aChainWhoseLastDisagreesWithItsLinksIsRefused() {
        fetch(1, 2);
        buffer.set(JAVA_BYTE, PackedInflightLayout.entry(0) + PackedInflightLayout.ENTRY_LAST, (byte) 0);
        refused(CORRUPT);
    }

    @Test
    void aChainThatRunsIntoTheFreeListIsRefused() {
        fetch(1, 2);
        buffer.set(JAVA_BYTE, PackedInflightLayout.entry(0) + PackedInflightLayout.ENTRY_NUM, (byte) 3);
        buffer.set(JAVA_BYTE, PackedInflightLayout.entry(0) + PackedInflightLayout.ENTRY_LAST, (byte) 2);
        assertTrue(refused(CORRUPT).getMessage().contains("free or in another chain"));
    }
}
