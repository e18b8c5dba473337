package io.vring.engine.memory;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.BitSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The dirty log's bytes are the front-end's bitmap: page {@code gpa / 4096} is bit {@code page % 8} of
 * byte {@code page / 8}, set for every page a write touched and for no other, never past the mapping.
 */
class DirtyLogTest {
    private static final int LOG_BYTES = 64; // 512 pages

    private final SharedMemory memory = SharedMemory.create("dirty-log-test", 4096);

    @AfterEach
    void close() {
        memory.close();
    }

    private MemorySegment logBytes() {
        return memory.segment().asSlice(0, LOG_BYTES);
    }

    /** The bitmap the reference's formula gives for these pages. */
    private static byte[] expected(long... pages) {
        byte[] b = new byte[LOG_BYTES];
        for (long p : pages) {
            b[(int) (p / 8)] |= (byte) (1 << (p % 8));
        }
        return b;
    }

    @Test
    void eachPageIsBitPageMod8OfBytePageDiv8() {
        DirtyLog log = DirtyLog.over(logBytes());
        long[] pages = {0, 1, 7, 8, 9, 63, 64, 65, 127, 200, 511};
        for (long p : pages) {
            log.mark(p * 4096 + 123, 1);
        }
        assertArrayEquals(expected(pages), logBytes().toArray(JAVA_BYTE));
        assertEquals(512, log.pages());
        assertEquals(0, log.missedPages());
    }

    @Test
    void aRangeMarksEveryPageItTouchesAndNoOther() {
        DirtyLog log = DirtyLog.over(logBytes());
        log.mark(0x1FFF, 2);                 // last byte of page 1, first of page 2
        log.mark(0x3C000, 11 * 4096);        // pages 60..70: across a 64-bit word boundary
        log.mark(0x10_0000, 4096);           // exactly page 256
        log.mark(0x20_0000, 0);              // nothing
        assertArrayEquals(expected(1, 2, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 256), logBytes().toArray(JAVA_BYTE));
    }

    @Test
    void aWholeWordAndMoreIsMarkedWordByWord() {
        DirtyLog log = DirtyLog.over(logBytes());
        log.mark(0, 200 * 4096);
        long[] pages = new long[200];
        for (int i = 0; i < 200; i++) {
            pages[i] = i;
        }
        assertArrayEquals(expected(pages), logBytes().toArray(JAVA_BYTE));
    }

    @Test
    void pagesPastTheLogAreCountedAndNothingPastItIsWritten() {
        memory.segment().asSlice(LOG_BYTES, 64).fill((byte) 0x5A);
        DirtyLog log = DirtyLog.over(logBytes());
        log.mark(510L * 4096, 4 * 4096); // pages 510..513: two inside, two past
        assertArrayEquals(expected(510, 511), logBytes().toArray(JAVA_BYTE));
        assertEquals(2, log.missedPages());
        for (byte b : memory.segment().asSlice(LOG_BYTES, 64).toArray(JAVA_BYTE)) {
            assertEquals(0x5A, b, "the canary after the log");
        }
        log.mark(-4096, 4096); // the top page of the address space
        assertEquals(3, log.missedPages());
    }

    @Test
    void aLogMustBeANativeAlignedMapping() {
        assertThrows(IllegalArgumentException.class, () -> DirtyLog.over(MemorySegment.ofArray(new byte[64])));
        assertThrows(IllegalArgumentException.class, () -> DirtyLog.over(memory.segment().asSlice(4, 64)));
    }

    /**
     * Two markers setting interleaved bits of the same words while a front-end clears the words with
     * an atomic exchange, as QEMU does: every mark ends up either in what the front-end collected or
     * still in the log. A plain read-modify-write would lose bits.
     */
    @Test
    void concurrentMarksSurviveAFrontEndThatClearsWordsMeanwhile() throws Exception {
        DirtyLog log = DirtyLog.over(logBytes());
        MemorySegment words = logBytes();
        int rounds = 20_000;
        CountDownLatch start = new CountDownLatch(1);
        Thread[] markers = new Thread[2];
        for (int t = 0; t < 2; t++) {
            int parity = t;
            markers[t] = new Thread(() -> {
                try {
                    start.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (int r = 0; r < rounds; r++) {
                    log.mark((long) ((r % 256) * 2 + parity) * 4096, 1);
                }
            });
            markers[t].start();
        }
        BitSet collected = new BitSet();
        java.lang.invoke.VarHandle word = java.lang.foreign.ValueLayout.JAVA_LONG.varHandle();
        start.countDown();
        while (markers[0].isAlive() || markers[1].isAlive()) {
            for (int w = 0; w < LOG_BYTES / 8; w++) {
                long bits = (long) word.getAndSet(words, (long) w * 8, 0L);
                for (int b = 0; b < 64; b++) {
                    if ((bits & (1L << b)) != 0) {
                        collected.set(w * 64 + b);
                    }
                }
            }
        }
        for (Thread m : markers) {
            m.join(TimeUnit.SECONDS.toMillis(30));
            assertFalse(m.isAlive());
        }
        for (int p = 0; p < 512; p++) {
            if (log.isDirty(p)) {
                collected.set(p);
            }
        }
        assertEquals(512, collected.cardinality(), "every page marked by either thread was collected or is still set");
        assertTrue(collected.get(0) && collected.get(511));
    }
}
