package io.vring.backends.blk;

import io.vring.engine.RingKind;
import io.vring.engine.VirtioFeatures;
import io.vring.protocol.BackendServer;
import io.vring.protocol.Message;
import io.vring.protocol.message.DeviceConfig;
import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringState;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;

import static io.vring.backends.blk.BlkFrontend.AREA_SIZE;
import static io.vring.backends.blk.BlkFrontend.DATA_MAX;
import static io.vring.backends.blk.BlkFrontend.LE_INT;
import static io.vring.backends.blk.BlkFrontend.LE_LONG;
import static io.vring.backends.blk.BlkFrontend.blkFeatures;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link BlkBackend} served by a real {@code BackendServer} on a socket and driven by
 * {@link BlkFrontend}: the virtio-blk requests a guest sends, good and bad, over driver queues in
 * a memfd.
 */
class BlkBackendTest {
    static final long DISK_BYTES = 8 << 20;
    static final long SECTORS = DISK_BYTES / 512;
    /** The pattern test's disk: big enough for thousands of requests per pass, so the disk's order shows. */
    static final long PATTERN_BYTES = 32 << 20;
    static final long ALL_BLK = blkFeatures(BlkLayout.F_SEG_MAX, BlkLayout.F_BLK_SIZE, BlkLayout.F_FLUSH,
            BlkLayout.F_CONFIG_WCE, BlkLayout.F_MQ, BlkLayout.F_DISCARD, BlkLayout.F_WRITE_ZEROES, BlkLayout.F_RO);
    static final long TIMEOUT = 10_000;

    @TempDir
    Path dir;
    Path socket;
    BlkBackend device;
    BackendServer server;
    long fdsBefore;
    long threadsBefore;

    @BeforeAll
    static void warmUp() throws IOException {
        // junixsocket and the JDK open a few fds for good on first use: open them before counting.
        Path d = Files.createTempDirectory("blk-warm");
        try (BlkBackend b = new BlkBackend(DiskImage.ram(4096, false), 1, 1, "warm");
             BackendServer s = BackendServer.listen(d.resolve("w.sock"), b);
             BlkFrontend fe = new BlkFrontend(d.resolve("w.sock"), 1 << 20)) {
            fe.callU64(FrontendRequest.GET_FEATURES);
        } finally {
            Files.deleteIfExists(d.resolve("w.sock"));
            Files.deleteIfExists(d);
        }
    }

    @BeforeEach
    void counts() throws IOException {
        fdsBefore = openFds();
        threadsBefore = vringThreads();
        socket = dir.resolve("blk.sock");
    }

    void serve(DiskImage image, int queues, int ioThreads) {
        device = new BlkBackend(image, queues, ioThreads, "vring-test-disk");
        server = BackendServer.listen(socket, device);
    }

    /**
     * After every test: once the server closed, no server or ring thread runs, and the device's I/O
     * threads idle with nothing queued (they stay for the next front-end); once the device closed
     * too, no vring thread and no fd is left.
     */
    @AfterEach
    void nothingLeaks() throws Exception {
        if (server != null) {
            server.close();
        }
        try {
            assertEquals(threadsBefore, vringThreads() - ioThreads(), "server or ring threads left running after the server closed");
        } finally {
            if (device != null) {
                device.close();
            }
        }
        assertEquals(threadsBefore, vringThreads(), "I/O threads left running after the device closed");
        assertEquals(fdsBefore, openFds(), "fds leaked");
    }

    static long ioThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith("vring-blk-io-")).count();
    }

    static long openFds() throws IOException {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.count();
        }
    }

    static long vringThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith("vring-")).count();
    }

    /** A front-end with memory for {@code rings} rings of {@code size} and their request areas, negotiated, memory sent. */
    BlkFrontend frontend(int rings, int size, long wanted) {
        BlkFrontend fe = new BlkFrontend(socket, (long) rings * size * AREA_SIZE + (1 << 20));
        fe.negotiate(wanted);
        fe.sendMemTable();
        return fe;
    }

    // ---- data ----

    @ParameterizedTest(name = "{0} image, {1} ring, seed {2}")
    @CsvSource({"RAM,SPLIT,1", "RAM,PACKED,2", "FILE,SPLIT,3"})
    void aSeededPatternWrittenFromFourQueuesWithManyInFlightReadsBackIntact(String backing, RingKind kind, long seed)
            throws Exception {
        System.out.println("aSeededPatternWritten...: seed " + seed + ", " + backing + ", " + kind);
        DiskImage image;
        if (backing.equals("FILE")) {
            Path file = dir.resolve("disk.img");
            try (var f = new java.io.RandomAccessFile(file.toFile(), "rw")) {
                f.setLength(PATTERN_BYTES);
            }
            image = DiskImage.file(file, false);
        } else {
            image = DiskImage.ram(PATTERN_BYTES, false);
        }
        int queues = 4;
        int size = 64;
        serve(image, queues, BlkBackend.DEFAULT_IO_THREADS);
        long features = ALL_BLK | (kind == RingKind.PACKED ? VirtioFeatures.bit(VirtioFeatures.RING_PACKED) : 0);
        byte[] expected = new byte[(int) PATTERN_BYTES];
        new SplittableRandom(seed).nextBytes(expected);
        long driverOutOfOrder = 0;
        try (BlkFrontend fe = frontend(queues, size, features)) {
            List<BlkFrontend.Ring> rings = new ArrayList<>();
            ExecutorService drivers = Executors.newFixedThreadPool(queues);
            try {
                for (int q = 0; q < queues; q++) {
                    BlkFrontend.Ring r = fe.new Ring(q, kind, size, features);
                    rings.add(r);
                    r.start(kind == RingKind.PACKED ? 0x8000_8000 : 0);
                }
                for (boolean writing : new boolean[] {true, false}) {
                    List<Future<?>> done = new ArrayList<>();
                    for (BlkFrontend.Ring r : rings) {
                        long ringSeed = seed * 31 + r.index * 7 + (writing ? 0 : 1);
                        done.add(drivers.submit(() -> {
                            drive(fe, r, queues, new SplittableRandom(ringSeed), expected, writing);
                            return null;
                        }));
                    }
                    for (Future<?> f : done) {
                        f.get(60, TimeUnit.SECONDS);
                    }
                }
                for (BlkFrontend.Ring r : rings) {
                    driverOutOfOrder += r.outOfOrder;
                }
            } finally {
                drivers.shutdownNow();
                assertTrue(drivers.awaitTermination(10, TimeUnit.SECONDS));
                rings.forEach(BlkFrontend.Ring::close);
            }
        }
        long deviceOutOfOrder = device.stats().outOfOrderCompletions();
        System.out.println("  " + device.stats() + "; the driver saw " + driverOutOfOrder + " chains come back out of order");
        assertEquals(PATTERN_BYTES, device.stats().bytesWritten());
        assertEquals(PATTERN_BYTES, device.stats().bytesRead());
        assertTrue(deviceOutOfOrder > 0, "requests finished out of order at least once");
        assertTrue(driverOutOfOrder > 0, "the driver saw chains come back out of order at least once");
    }

    /**
     * Ring {@code r} owns the 32 KiB blocks {@code b % queues == r.index} and covers each with
     * requests of random length (1..64 sectors), data over 1..3 descriptors, header sometimes split,
     * as many in flight as the ring holds; reads compare against {@code expected}.
     */
    static void drive(BlkFrontend fe, BlkFrontend.Ring r, int queues, SplittableRandom random, byte[] expected, boolean writing) {
        MemorySegment mem = fe.mem;
        int blockSectors = DATA_MAX / 1024; // 32 KiB blocks
        List<long[]> pieces = new ArrayList<>(); // {sector, sectors}
        for (long b = r.index; b < PATTERN_BYTES / 512 / blockSectors; b += queues) {
            for (int done = 0; done < blockSectors; ) {
                int n = 1 + random.nextInt(blockSectors - done);
                pieces.add(new long[] {b * blockSectors + done, n});
                done += n;
            }
        }
        long[] sectorOfArea = new long[r.driver.size()];
        int[] bytesOfArea = new int[r.driver.size()];
        int next = 0;
        int outstanding = 0;
        while (next < pieces.size() || outstanding > 0) {
            boolean submitted = false;
            while (next < pieces.size() && r.hasFreeArea() && r.driver.freeDescriptors() >= 6) {
                long sector = pieces.get(next)[0];
                int bytes = (int) pieces.get(next)[1] * 512;
                next++;
                int a = r.begin(writing ? BlkLayout.T_OUT : BlkLayout.T_IN, sector);
                if (writing) {
                    MemorySegment.copy(expected, (int) (sector * 512), mem, ValueLayout.JAVA_BYTE, r.data(a), bytes);
                }
                if (random.nextBoolean()) {
                    r.driver.addReadable(r.header(a), 16);
                } else {
                    int cut = 1 + random.nextInt(15);
                    r.driver.addReadable(r.header(a), cut);
                    r.driver.addReadable(r.header(a) + cut, 16 - cut);
                }
                int parts = 1 + random.nextInt(3);
                int at = 0;
                for (int p = 0; p < parts; p++) {
                    int len = p == parts - 1 ? bytes - at : random.nextInt(bytes - at + 1);
                    if (len == 0) {
                        continue;
                    }
                    if (writing) {
                        r.driver.addReadable(r.data(a) + at, len);
                    } else {
                        r.driver.addWritable(r.data(a) + at, len);
                    }
                    at += len;
                }
                r.driver.addWritable(r.status(a), 1);
                r.submit(a);
                sectorOfArea[a] = sector;
                bytesOfArea[a] = bytes;
                outstanding++;
                submitted = true;
            }
            if (submitted) {
                r.publish();
            }
            if (outstanding > 0) {
                int a = r.awaitUsed(TIMEOUT);
                outstanding--;
                assertEquals(BlkLayout.S_OK, r.statusOf(a), "status of the request at sector " + sectorOfArea[a]);
                if (writing) {
                    assertEquals(1, r.usedLength, "OUT used length: the status byte");
                } else {
                    assertEquals(bytesOfArea[a] + 1, r.usedLength, "IN used length: data and status");
                    byte[] got = new byte[bytesOfArea[a]];
                    MemorySegment.copy(mem, ValueLayout.JAVA_BYTE, r.data(a), got, 0, got.length);
                    byte[] want = new byte[got.length];
                    System.arraycopy(expected, (int) (sectorOfArea[a] * 512), want, 0, want.length);
                    assertArrayEquals(want, got, "data read back at sector " + sectorOfArea[a]);
                }
            }
        }
    }

    @Test
    void aHeaderSplitOverDescriptorsAndHeaderDataAndStatusSharingDescriptorsAreUnderstood() throws Exception {
        serve(DiskImage.ram(DISK_BYTES, false), 1, 2);
        try (BlkFrontend fe = frontend(1, 16, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, ALL_BLK)) {
            r.start(0);
            MemorySegment mem = fe.mem;
            // OUT: header and data in one readable descriptor (the data right after the header), status alone.
            int a = r.begin(BlkLayout.T_OUT, 10);
            long packed = r.data(a); // the header here, 1024 bytes of data right behind it
            MemorySegment.copy(mem, r.header(a), mem, packed, 16);
            for (int i = 0; i < 1024; i++) {
                mem.set(ValueLayout.JAVA_BYTE, packed + 16 + i, (byte) (i * 7));
            }
            r.driver.addReadable(packed, 16 + 1024);
            r.driver.addWritable(r.status(a), 1);
            r.submit(a);
            r.publish();
            assertEquals(a, r.awaitUsed(TIMEOUT));
            assertEquals(BlkLayout.S_OK, r.statusOf(a));
            // IN: header in three pieces, data and status in one writable descriptor.
            int b = r.begin(BlkLayout.T_IN, 10);
            r.driver.addReadable(r.header(b), 3);
            r.driver.addReadable(r.header(b) + 3, 9);
            r.driver.addReadable(r.header(b) + 12, 4);
            r.driver.addWritable(r.data(b), 1024 + 1);
            r.submit(b);
            r.publish();
            assertEquals(b, r.awaitUsed(TIMEOUT));
            assertEquals(1025, r.usedLength, "used length: 1024 data bytes and the status");
            assertEquals(BlkLayout.S_OK, mem.get(ValueLayout.JAVA_BYTE, r.data(b) + 1024), "status is the last writable byte");
            for (int i = 0; i < 1024; i++) {
                assertEquals((byte) (i * 7), mem.get(ValueLayout.JAVA_BYTE, r.data(b) + i), "byte " + i);
            }
        }
    }

    // ---- bad requests ----

    @Test
    void everyBadRequestGetsItsStatusAndTheQueueGoesOn() throws Exception {
        serve(DiskImage.ram(DISK_BYTES, false), 1, 2);
        long noFlush = ALL_BLK & ~VirtioFeatures.bit(BlkLayout.F_FLUSH) & ~VirtioFeatures.bit(BlkLayout.F_CONFIG_WCE);
        try (BlkFrontend fe = frontend(1, 32, noFlush); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 32, noFlush)) {
            r.start(0);
            MemorySegment mem = fe.mem;
            expect(r, r.read(0, 1000), BlkLayout.S_IOERR, "IN of 1000 bytes: not whole sectors");
            expect(r, r.write(0, 513), BlkLayout.S_IOERR, "OUT of 513 bytes");
            expect(r, r.read(SECTORS - 1, 1024), BlkLayout.S_IOERR, "IN running one sector past the end");
            expect(r, r.write(SECTORS, 512), BlkLayout.S_IOERR, "OUT starting at the end");
            expect(r, r.read(-1L, 512), BlkLayout.S_IOERR, "IN at sector 2^64-1");
            expect(r, r.read(SECTORS - 1, 512), BlkLayout.S_OK, "IN of the last sector");
            expect(r, r.bare(99, 0), BlkLayout.S_UNSUPP, "unknown type 99");
            expect(r, r.bare(BlkLayout.T_FLUSH, 0), BlkLayout.S_UNSUPP, "FLUSH not negotiated");
            expect(r, r.bare(2, 0), BlkLayout.S_UNSUPP, "legacy SCSI command");
            // A header of 8 bytes.
            int a = r.begin(BlkLayout.T_IN, 0);
            r.driver.addReadable(r.header(a), 8);
            r.driver.addWritable(r.data(a), 512);
            r.driver.addWritable(r.status(a), 1);
            r.submit(a);
            expect(r, a, BlkLayout.S_IOERR, "header of 8 bytes");
            // DISCARD / WRITE_ZEROES ranges.
            expect(r, range(r, BlkLayout.T_DISCARD, 0, 8, BlkLayout.RANGE_FLAG_UNMAP), BlkLayout.S_UNSUPP, "discard with unmap");
            expect(r, range(r, BlkLayout.T_WRITE_ZEROES, 0, 8, 4), BlkLayout.S_UNSUPP, "write-zeroes with an unknown flag");
            expect(r, range(r, BlkLayout.T_DISCARD, SECTORS - 4, 8, 0), BlkLayout.S_IOERR, "discard past the end");
            expect(r, range(r, BlkLayout.T_WRITE_ZEROES, 0, (int) BlkBackend.MAX_RANGE_SECTORS + 1, 0), BlkLayout.S_IOERR,
                    "write-zeroes over max_write_zeroes_sectors");
            int bad = r.begin(BlkLayout.T_DISCARD, 0);
            r.driver.addReadable(r.header(bad), 16 + 10);
            r.driver.addWritable(r.status(bad), 1);
            r.submit(bad);
            expect(r, bad, BlkLayout.S_IOERR, "a 10-byte range");
            int none = r.bare(BlkLayout.T_WRITE_ZEROES, 0);
            expect(r, none, BlkLayout.S_IOERR, "write-zeroes without ranges");
            // Still working: write then read a sector.
            int w = r.begin(BlkLayout.T_OUT, 5);
            mem.asSlice(r.data(w), 512).fill((byte) 0x5a);
            r.driver.addReadable(r.header(w), 16);
            r.driver.addReadable(r.data(w), 512);
            r.driver.addWritable(r.status(w), 1);
            r.submit(w);
            expect(r, w, BlkLayout.S_OK, "a good write after the bad requests");
            int rd = r.read(5, 512);
            expect(r, rd, BlkLayout.S_OK, "a good read after the bad requests");
            assertEquals((byte) 0x5a, mem.get(ValueLayout.JAVA_BYTE, r.data(rd) + 511));
        }
        assertEquals(10, device.stats().refusedWithIoErr(), device.stats().toString());
        assertEquals(5, device.stats().refusedWithUnsupp(), device.stats().toString());
    }

    /** A DISCARD / WRITE_ZEROES request with one range. */
    static int range(BlkFrontend.Ring r, int type, long sector, int sectors, int flags) {
        int a = r.begin(type, 0);
        MemorySegment mem = r.mem();
        long at = r.header(a) + 16;
        mem.set(LE_LONG, at, sector);
        mem.set(LE_INT, at + 8, sectors);
        mem.set(LE_INT, at + 12, flags);
        r.driver.addReadable(r.header(a), 32);
        r.driver.addWritable(r.status(a), 1);
        r.submit(a);
        return a;
    }

    static void expect(BlkFrontend.Ring r, int area, byte status, String what) {
        r.publish();
        int a = r.awaitUsed(TIMEOUT);
        assertEquals(area, a, what + ": the chain that came back");
        assertEquals(status, r.statusOf(a), what);
    }

    @Test
    void aReadOfMoreThanOneGibIsRefusedWithoutTouchingTheDisk() {
        serve(DiskImage.ram(DISK_BYTES, false), 1, 2);
        long big = BlkRing.MAX_REQUEST_BYTES + 512;
        // A memfd is only backed where it is touched: the 1 GiB buffer costs address space, not memory.
        try (BlkFrontend fe = new BlkFrontend(socket, big + (4 << 20))) {
            fe.negotiate(ALL_BLK);
            fe.sendMemTable();
            try (BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, ALL_BLK)) {
                r.start(0);
                long buffer = fe.memory.allocate(big, 4096);
                int a = r.begin(BlkLayout.T_IN, 0);
                r.driver.addReadable(r.header(a), 16);
                r.driver.addWritable(buffer, (int) big);
                r.driver.addWritable(r.status(a), 1);
                r.submit(a);
                expect(r, a, BlkLayout.S_IOERR, "IN of 1 GiB + 512 bytes");
            }
        }
        assertEquals(0, device.stats().reads());
    }

    @Test
    void aRequestWithoutAStatusByteBreaksTheQueueAndTheDeviceNeedsAReset() throws Exception {
        serve(DiskImage.ram(DISK_BYTES, false), 1, 2);
        try (BlkFrontend fe = frontend(1, 16, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, ALL_BLK)) {
            r.start(0);
            int a = r.begin(BlkLayout.T_OUT, 0);
            r.driver.addReadable(r.header(a), 16);
            r.driver.addReadable(r.data(a), 512);
            r.submit(a);
            r.publish();
            long deadline = System.currentTimeMillis() + TIMEOUT;
            while ((fe.callU64(FrontendRequest.GET_STATUS) & 0x40) == 0) {
                assertTrue(System.currentTimeMillis() < deadline, "DEVICE_NEEDS_RESET within the timeout");
                Thread.sleep(5);
            }
            assertEquals(BlkFrontend.NO_STATUS, r.statusOf(a), "nothing was written");
            assertFalse(r.hasUsedWithin(100), "the chain is not used");
        }
    }

    // ---- read-only, flush, get-id, discard, write-zeroes ----

    @Test
    void aReadOnlyImageIsOfferedAsRoAndRefusesEveryWrite() throws Exception {
        Path file = dir.resolve("ro.img");
        byte[] content = new byte[1 << 20];
        new SplittableRandom(7).nextBytes(content);
        Files.write(file, content);
        serve(DiskImage.file(file, true), 1, 2);
        try (BlkFrontend fe = frontend(1, 16, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, ALL_BLK)) {
            long offered = fe.callU64(FrontendRequest.GET_FEATURES);
            assertTrue(VirtioFeatures.has(offered, BlkLayout.F_RO), "RO offered");
            assertFalse(VirtioFeatures.has(offered, BlkLayout.F_DISCARD), "no DISCARD on a read-only disk");
            assertFalse(VirtioFeatures.has(offered, BlkLayout.F_WRITE_ZEROES), "no WRITE_ZEROES on a read-only disk");
            r.start(0);
            expect(r, r.write(0, 4096), BlkLayout.S_IOERR, "OUT on a read-only disk");
            expect(r, range(r, BlkLayout.T_WRITE_ZEROES, 0, 8, 0), BlkLayout.S_UNSUPP, "WRITE_ZEROES not negotiated");
            expect(r, r.bare(BlkLayout.T_FLUSH, 0), BlkLayout.S_OK, "FLUSH is harmless");
            int a = r.read(8, 4096);
            expect(r, a, BlkLayout.S_OK, "IN on a read-only disk");
            byte[] got = new byte[4096];
            MemorySegment.copy(fe.mem, ValueLayout.JAVA_BYTE, r.data(a), got, 0, 4096);
            byte[] want = new byte[4096];
            System.arraycopy(content, 8 * 512, want, 0, 4096);
            assertArrayEquals(want, got);
        }
        assertArrayEquals(content, Files.readAllBytes(file), "the image is untouched");
    }

    @Test
    void flushGetIdDiscardAndWriteZeroesDoWhatTheySay() throws Exception {
        Path file = dir.resolve("disk.img");
        byte[] ones = new byte[(int) DISK_BYTES];
        java.util.Arrays.fill(ones, (byte) 1);
        Files.write(file, ones);
        serve(DiskImage.file(file, false), 1, 2);
        try (BlkFrontend fe = frontend(1, 16, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, ALL_BLK)) {
            r.start(0);
            expect(r, r.bare(BlkLayout.T_FLUSH, 0), BlkLayout.S_OK, "FLUSH");
            assertEquals(1, device.stats().flushes());
            // GET_ID: 20 bytes, NUL-padded.
            int id = r.read(0, 512);
            fe.mem.set(LE_INT, r.header(id), BlkLayout.T_GET_ID);
            expect(r, id, BlkLayout.S_OK, "GET_ID");
            assertEquals(21, r.usedLength, "20 id bytes and the status");
            byte[] got = new byte[20];
            MemorySegment.copy(fe.mem, ValueLayout.JAVA_BYTE, r.data(id), got, 0, 20);
            byte[] want = new byte[20];
            byte[] serial = "vring-test-disk".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
            System.arraycopy(serial, 0, want, 0, serial.length);
            assertArrayEquals(want, got);
            // GET_ID into 8 bytes gets 8.
            int shortId = r.begin(BlkLayout.T_GET_ID, 0);
            fe.mem.asSlice(r.data(shortId), 16).fill((byte) 0x77);
            r.driver.addReadable(r.header(shortId), 16);
            r.driver.addWritable(r.data(shortId), 8);
            r.driver.addWritable(r.status(shortId), 1);
            r.submit(shortId);
            expect(r, shortId, BlkLayout.S_OK, "GET_ID into 8 bytes");
            assertEquals(9, r.usedLength);
            assertEquals((byte) 0x77, fe.mem.get(ValueLayout.JAVA_BYTE, r.data(shortId) + 8), "nothing past the buffer");
            // WRITE_ZEROES over sectors 100..163 (with the may-unmap flag), DISCARD over 200..207.
            expect(r, range(r, BlkLayout.T_WRITE_ZEROES, 100, 64, BlkLayout.RANGE_FLAG_UNMAP), BlkLayout.S_OK, "WRITE_ZEROES");
            expect(r, range(r, BlkLayout.T_DISCARD, 200, 8, 0), BlkLayout.S_OK, "DISCARD");
        }
        byte[] disk = Files.readAllBytes(file);
        for (int i = 0; i < disk.length; i++) {
            byte want = i >= 100 * 512 && i < 164 * 512 ? 0 : (byte) 1;
            if (disk[i] != want) {
                throw new AssertionError("byte " + i + " (sector " + i / 512 + ") is " + disk[i] + ", want " + want);
            }
        }
    }

    @Test
    void writethroughModeFlushesEveryWrite() throws Exception {
        GatedImage image = new GatedImage(DISK_BYTES, Long.MAX_VALUE);
        serve(image, 1, 2);
        try (BlkFrontend fe = frontend(1, 16, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, ALL_BLK)) {
            r.start(0);
            expect(r, r.write(0, 512), BlkLayout.S_OK, "a write in writeback mode");
            assertEquals(0, image.flushes.get(), "writeback: no flush");
            assertEquals(0, fe.sendAcked(FrontendRequest.SET_CONFIG, new DeviceConfig(BlkLayout.CONFIG_WRITEBACK, 0, new byte[] {0})));
            assertEquals(0, fe.config(BlkLayout.CONFIG_WRITEBACK, 1)[0], "writeback reads 0");
            expect(r, r.write(0, 512), BlkLayout.S_OK, "a write in writethrough mode");
            assertEquals(1, image.flushes.get(), "writethrough: the write was flushed");
            assertTrue(fe.sendAcked(FrontendRequest.SET_CONFIG, new DeviceConfig(BlkLayout.CONFIG_CAPACITY, 0, new byte[8])) != 0,
                    "capacity is read-only");
        }
    }

    // ---- config ----

    @Test
    void theConfigSpaceHasEveryFieldAtTheOffsetQemuReads() {
        serve(DiskImage.ram(DISK_BYTES, false), 3, 1);
        try (BlkFrontend fe = frontend(1, 16, ALL_BLK)) {
            byte[] qemu = fe.config(0, 57); // what QEMU 7.2 asks for
            assertEquals(57, qemu.length);
            ByteBuffer c = ByteBuffer.wrap(qemu).order(ByteOrder.LITTLE_ENDIAN);
            assertEquals(SECTORS, c.getLong(0), "capacity in 512-byte sectors");
            assertEquals(0, c.getInt(8), "size_max (not offered)");
            assertEquals(BlkBackend.SEG_MAX, c.getInt(12), "seg_max");
            assertEquals(512, c.getInt(20), "blk_size");
            assertEquals(1, c.get(32), "writeback");
            assertEquals(3, c.getShort(34), "num_queues");
            assertEquals(BlkBackend.MAX_RANGE_SECTORS, c.getInt(36), "max_discard_sectors");
            assertEquals(BlkRequest.MAX_RANGES, c.getInt(40), "max_discard_seg");
            assertEquals(1, c.getInt(44), "discard_sector_alignment");
            assertEquals(BlkBackend.MAX_RANGE_SECTORS, c.getInt(48), "max_write_zeroes_sectors");
            assertEquals(BlkRequest.MAX_RANGES, c.getInt(52), "max_write_zeroes_seg");
            assertEquals(0, c.get(56), "write_zeroes_may_unmap");
            assertEquals(60, fe.config(0, 60).length, "the whole struct");
            assertArrayEquals(java.util.Arrays.copyOfRange(qemu, 34, 36), fe.config(34, 2), "a read at an offset");
            assertEquals(0, fe.config(0, 61).length, "past the struct: refused");
            assertEquals(3, fe.callU64(FrontendRequest.GET_QUEUE_NUM));
        }
    }

    // ---- in flight ----

    @Test
    void requestsFinishOutOfOrderWhenTheDiskFinishesThemOutOfOrder() throws Exception {
        GatedImage image = new GatedImage(DISK_BYTES, 1 << 20); // requests at or past 1 MiB wait
        serve(image, 1, 2);
        try (BlkFrontend fe = frontend(1, 16, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, ALL_BLK)) {
            r.start(0);
            int slow = r.read((1 << 20) / 512, 4096);
            int fast = r.read(0, 4096);
            r.publish();
            image.awaitWaiting(1, TIMEOUT);
            assertEquals(fast, r.awaitUsed(TIMEOUT), "the later request comes back first");
            image.open();
            assertEquals(slow, r.awaitUsed(TIMEOUT));
            assertEquals(BlkLayout.S_OK, r.statusOf(slow));
            assertEquals(1, r.outOfOrder);
        }
        assertEquals(1, device.stats().outOfOrderCompletions());
    }

    @Test
    void getVringBaseWithRequestsInFlightAnswersOnlyOnceTheyFinished() throws Exception {
        GatedImage image = new GatedImage(DISK_BYTES, 0); // every read and write waits
        serve(image, 1, 4);
        try (BlkFrontend fe = frontend(1, 32, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 32, ALL_BLK)) {
            r.start(0);
            int[] valueOfArea = new int[32];
            for (int i = 0; i < 8; i++) {
                int a = r.begin(BlkLayout.T_OUT, i * 8L);
                fe.mem.asSlice(r.data(a), 4096).fill((byte) (i + 1));
                r.driver.addReadable(r.header(a), 16);
                r.driver.addReadable(r.data(a), 4096);
                r.driver.addWritable(r.status(a), 1);
                r.submit(a);
                valueOfArea[a] = i + 1;
            }
            r.publish();
            image.awaitWaiting(4, TIMEOUT); // four I/O threads hold four writes, four more are queued
            ExecutorService control = Executors.newSingleThreadExecutor();
            try {
                Future<Integer> base = control.submit(() -> {
                    try (Message m = fe.call(FrontendRequest.GET_VRING_BASE, new VringState(0, 0))) {
                        return VringState.decode(m.payload()).num();
                    }
                });
                assertThrows(TimeoutException.class, () -> base.get(300, TimeUnit.MILLISECONDS),
                        "GET_VRING_BASE must wait for the writes on the disk");
                assertFalse(r.hasUsedWithin(50), "nothing used while the disk holds the writes");
                image.open();
                assertEquals(8, base.get(TIMEOUT, TimeUnit.MILLISECONDS), "base after the 8 requests");
            } finally {
                control.shutdownNow();
            }
            for (int i = 0; i < 8; i++) {
                int a = r.awaitUsed(TIMEOUT); // published before the reply
                assertEquals(BlkLayout.S_OK, r.statusOf(a));
                int value = valueOfArea[a];
                assertEquals((byte) value, image.byteAt((value - 1) * 8L * 512 + 4095), "write " + value + " reached the disk");
            }
            assertEquals(0, r.driver.outstanding());
        }
        assertEquals(8, device.stats().writes());
    }

    @Test
    void aResetWithRequestsOnTheDiskWaitsForThemThenForgetsThem() throws Exception {
        GatedImage image = new GatedImage(DISK_BYTES, 0);
        serve(image, 1, 2);
        try (BlkFrontend fe = frontend(1, 32, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 32, ALL_BLK)) {
            r.start(0);
            for (int i = 0; i < 4; i++) {
                r.write(i * 8L, 4096);
            }
            r.publish();
            image.awaitWaiting(2, TIMEOUT);
            ExecutorService control = Executors.newSingleThreadExecutor();
            try {
                Future<Long> reset = control.submit(() -> fe.sendAcked(FrontendRequest.SET_STATUS, new U64Payload(0)));
                assertThrows(TimeoutException.class, () -> reset.get(300, TimeUnit.MILLISECONDS),
                        "the reset waits while the disk writes into guest memory");
                image.open();
                assertEquals(0, reset.get(TIMEOUT, TimeUnit.MILLISECONDS));
            } finally {
                control.shutdownNow();
            }
            assertFalse(r.hasUsedWithin(100), "a reset device reports nothing for requests of before the reset");
            assertEquals(4, device.stats().writes(), "the writes themselves happened");
        }
        // A new driver on the reset device.
        try (BlkFrontend fe = frontend(1, 32, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 32, ALL_BLK)) {
            r.start(0);
            expect(r, r.read(0, 4096), BlkLayout.S_OK, "a read after the reset");
        }
    }

    @Test
    void aSecondFrontEndFindsTheDiskAsTheFirstLeftIt() {
        serve(DiskImage.ram(DISK_BYTES, false), 2, 2);
        for (int session = 0; session < 2; session++) {
            try (BlkFrontend fe = frontend(2, 16, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(1, RingKind.SPLIT, 16, ALL_BLK)) {
                r.start(0);
                int check = r.read(100, 512);
                expect(r, check, BlkLayout.S_OK, "read in session " + session);
                assertEquals((byte) session, fe.mem.get(ValueLayout.JAVA_BYTE, r.data(check) + 17), "what the last session wrote");
                int w = r.begin(BlkLayout.T_OUT, 100);
                fe.mem.asSlice(r.data(w), 512).fill((byte) (session + 1));
                r.driver.addReadable(r.header(w), 16);
                r.driver.addReadable(r.data(w), 512);
                r.driver.addWritable(r.status(w), 1);
                r.submit(w);
                expect(r, w, BlkLayout.S_OK, "write in session " + session);
            }
        }
    }

    @Test
    void aDiskThatFailsGivesIoerrAndTheQueueGoesOn() throws Exception {
        Path file = dir.resolve("shrinking.img");
        try (var f = new java.io.RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(DISK_BYTES);
        }
        serve(DiskImage.file(file, false), 1, 2);
        try (BlkFrontend fe = frontend(1, 16, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, ALL_BLK)) {
            r.start(0);
            try (var f = new java.io.RandomAccessFile(file.toFile(), "rw")) {
                f.setLength(DISK_BYTES / 2); // someone truncated the image under the running device
            }
            expect(r, r.read(SECTORS - 8, 4096), BlkLayout.S_IOERR, "a read of what is no longer there");
            expect(r, r.read(0, 4096), BlkLayout.S_OK, "a read of what is");
        }
        assertEquals(1, device.stats().ioErrors());
    }

    // ---- allocation ----

    @Test
    void theRingWorkerAllocatesNothingPerRequestInSteadyState() throws Exception {
        serve(DiskImage.ram(DISK_BYTES, false), 1, 2);
        com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        try (BlkFrontend fe = frontend(1, 128, ALL_BLK); BlkFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 128, ALL_BLK)) {
            r.start(0);
            roundsOfReadsAndWrites(r, 400); // warm-up: the JIT compiles the worker's path
            Thread worker = Thread.getAllStackTraces().keySet().stream()
                    .filter(t -> t.getName().startsWith("vring-") && t.getName().endsWith("/q0")).findFirst().orElseThrow();
            long before = threads.getThreadAllocatedBytes(worker.threadId());
            int requests = roundsOfReadsAndWrites(r, 400);
            long allocated = threads.getThreadAllocatedBytes(worker.threadId()) - before;
            System.out.println("ring worker " + worker.getName() + ": " + allocated + " bytes allocated over " + requests + " requests");
            assertTrue(allocated < 16 * 1024, allocated + " bytes over " + requests + " requests");
        }
    }

    /** Rounds of 32 requests (16 writes of 4 KiB, 16 reads) in flight at once; returns the number of requests. */
    static int roundsOfReadsAndWrites(BlkFrontend.Ring r, int rounds) {
        for (int round = 0; round < rounds; round++) {
            for (int i = 0; i < 16; i++) {
                r.write(i * 8L, 4096);
                r.read(128 + i * 8L, 4096);
            }
            r.publish();
            for (int i = 0; i < 32; i++) {
                assertEquals(BlkLayout.S_OK, r.statusOf(r.awaitUsed(TIMEOUT)));
            }
        }
        return rounds * 32;
    }
}
