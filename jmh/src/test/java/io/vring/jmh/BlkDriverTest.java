package io.vring.jmh;

import io.vring.backends.blk.BlkBackend;
import io.vring.backends.blk.DiskImage;
import io.vring.protocol.BackendClient;
import io.vring.protocol.BackendServer;
import io.vring.protocol.FrontendDevice;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The blk benchmarks' driver against both back-ends as the benchmarks start them
 * ({@link ExternalBackend}: {@code vring blk} in a child JVM, qemu-storage-daemon): a request is
 * counted only if it really moved the right 4 KiB. qemu-storage-daemon comes with Debian's
 * qemu-system-common (qemu-system-x86 depends on it); without it that case is skipped, or fails
 * with {@code -Dvring.qsd.required=true} (CI).
 */
class BlkDriverTest {
    private static final int DEPTH = 32;
    private static final long IMAGE_BYTES = 8L << 20;

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"vring", "qsd"})
    void readsAndWritesAtDepth32MoveTheBlocksTheyNameAndAFailedRequestIsNotCounted(String backend) {
        if (backend.equals("qsd")) {
            boolean installed = Files.isExecutable(ExternalBackend.QEMU_STORAGE_DAEMON);
            if (Boolean.getBoolean("vring.qsd.required")) {
                assertTrue(installed, "qemu-storage-daemon is required (-Dvring.qsd.required=true) but not installed:"
                        + " apt-get install qemu-system-common");
            }
            assumeTrue(installed, "qemu-storage-daemon is not installed");
        }
        long seed = System.nanoTime();
        System.out.println("BlkDriverTest " + backend + " seed " + seed);
        SplittableRandom random = new SplittableRandom(seed);
        assertTimeoutPreemptively(Duration.ofSeconds(90), () -> {
            try (ShmImage image = ShmImage.create("test-" + backend, IMAGE_BYTES, seed)) {
                long blocks = image.sizeBytes() / BlkDriver.BLOCK;
                long[] picked = distinctBlocks(random, blocks);
                byte[][] written = new byte[DEPTH][BlkDriver.BLOCK];
                try (ExternalBackend process = backend.equals("vring") ? ExternalBackend.vringBlk(image.path())
                        : ExternalBackend.qemuStorageDaemon(image.path());
                     FrontendDevice device = FrontendDevice.start(BackendClient.connect(process.socket()), BlkDriver.config(DEPTH))) {
                    BlkDriver driver = new BlkDriver(device.ring(0), DEPTH);

                    // 32 reads in flight: each slot holds its block's bytes as the file has them
                    for (int slot = 0; slot < DEPTH; slot++) {
                        driver.buffer(slot).fill((byte) 0);
                        driver.submit(slot, false, picked[slot]);
                    }
                    driver.publish();
                    completeAll(driver);
                    for (int slot = 0; slot < DEPTH; slot++) {
                        assertArrayEquals(fileBlock(image.path(), picked[slot]), bytes(driver.buffer(slot)),
                                "read of block " + picked[slot] + " into slot " + slot);
                    }

                    // 32 writes of fresh bytes, then 32 reads of the same blocks into other slots
                    for (int slot = 0; slot < DEPTH; slot++) {
                        random.nextBytes(written[slot]);
                        driver.buffer(slot).copyFrom(MemorySegment.ofArray(written[slot]));
                        driver.submit(slot, true, picked[slot]);
                    }
                    driver.publish();
                    completeAll(driver);
                    for (int slot = 0; slot < DEPTH; slot++) {
                        driver.buffer(slot).fill((byte) 0);
                        driver.submit(slot, false, picked[(slot + 1) % DEPTH]);
                    }
                    driver.publish();
                    completeAll(driver);
                    for (int slot = 0; slot < DEPTH; slot++) {
                        assertArrayEquals(written[(slot + 1) % DEPTH], bytes(driver.buffer(slot)),
                                "block " + picked[(slot + 1) % DEPTH] + " read back into slot " + slot);
                    }

                    // one block past the end: the device answers IOERR, and the driver throws instead of counting it
                    driver.submit(0, false, blocks);
                    driver.publish();
                    IllegalStateException refused = assertThrows(IllegalStateException.class, () -> driver.complete(5_000));
                    assertTrue(refused.getMessage().contains("status"), refused.getMessage());
                }
                // the back-end is gone: what it acknowledged is in the image file
                for (int slot = 0; slot < DEPTH; slot++) {
                    assertArrayEquals(written[slot], fileBlock(image.path(), picked[slot]), "block " + picked[slot] + " in the file");
                }
            }
        });
    }

    /**
     * What the benchmark's invocation does (complete, submit, publish) allocates nothing on the
     * front-end thread once warm: a round of 20,000 requests at depth 32 with 0 bytes allocated must
     * come within 12 rounds (the JIT may charge its own work to the thread in the first ones). The
     * back-end runs in this JVM here; only this thread's bytes are counted.
     */
    @Test
    void theBenchmarkInvocationAllocatesNothingOnTheFrontEndThread() throws Exception {
        com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long seed = System.nanoTime();
        System.out.println("BlkDriverTest allocation seed " + seed);
        SplittableRandom random = new SplittableRandom(seed);
        Path dir = Files.createTempDirectory("vring-blkdriver");
        Path socket = dir.resolve("blk.sock");
        assertTimeoutPreemptively(Duration.ofSeconds(120), () -> {
            try (BlkBackend blk = new BlkBackend(DiskImage.ram(IMAGE_BYTES, false), 1, BlkBackend.DEFAULT_IO_THREADS, "alloc");
                 BackendServer server = BackendServer.listen(socket, blk);
                 FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket), BlkDriver.config(DEPTH))) {
                BlkDriver driver = new BlkDriver(device.ring(0), DEPTH);
                long blocks = IMAGE_BYTES / BlkDriver.BLOCK;
                for (int slot = 0; slot < DEPTH; slot++) {
                    driver.submit(slot, slot % 2 == 0, random.nextLong(blocks));
                }
                driver.publish();
                long[] perRound = new long[12];
                int round = 0;
                long allocated;
                do {
                    long before = threads.getCurrentThreadAllocatedBytes();
                    for (int i = 0; i < 20_000; i++) {
                        int slot = driver.complete(5_000);
                        driver.submit(slot, (i & 1) == 0, random.nextLong(blocks));
                        driver.publish();
                    }
                    allocated = threads.getCurrentThreadAllocatedBytes() - before;
                    perRound[round++] = allocated;
                } while (allocated != 0 && round < perRound.length);
                System.out.println("BlkDriverTest allocation: bytes per round " + Arrays.toString(Arrays.copyOf(perRound, round)));
                assertEquals(0, allocated, "bytes the front-end thread allocated in each round: "
                        + Arrays.toString(Arrays.copyOf(perRound, round)));
                completeAll(driver);
            } finally {
                Files.deleteIfExists(socket);
                Files.deleteIfExists(dir);
            }
        });
    }

    private static void completeAll(BlkDriver driver) {
        boolean[] seen = new boolean[DEPTH];
        for (int i = 0; i < DEPTH; i++) {
            int slot = driver.complete(5_000);
            assertTrue(!seen[slot], "slot " + slot + " completed twice");
            seen[slot] = true;
        }
        assertEquals(0, driver.inFlight());
    }

    private static long[] distinctBlocks(SplittableRandom random, long blocks) {
        return random.longs(0, blocks).distinct().limit(DEPTH).toArray();
    }

    private static byte[] bytes(MemorySegment segment) {
        return segment.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }

    private static byte[] fileBlock(Path image, long block) throws IOException {
        ByteBuffer buffer = ByteBuffer.allocate(BlkDriver.BLOCK);
        try (FileChannel file = FileChannel.open(image, StandardOpenOption.READ)) {
            while (buffer.hasRemaining()) {
                if (file.read(buffer, block * BlkDriver.BLOCK + buffer.position()) < 0) {
                    break;
                }
            }
        }
        byte[] out = Arrays.copyOf(buffer.array(), buffer.position());
        assertEquals(BlkDriver.BLOCK, out.length, "block " + block + " lies in the file");
        return out;
    }
}
