package io.vring.protocol;

import io.vring.engine.RingKind;
import io.vring.engine.VirtioFeatures;
import io.vring.protocol.message.DeviceConfig;
import io.vring.protocol.message.DeviceStateTransfer;
import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.InflightDescription;
import io.vring.protocol.message.MemoryRegion;
import io.vring.protocol.message.MemoryTable;
import io.vring.protocol.message.ProtocolFeatures;
import io.vring.protocol.message.SingleMemoryRegion;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringAddress;
import io.vring.protocol.message.VringFdPayload;
import io.vring.protocol.message.VringState;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.os.Libc;
import io.vring.engine.notify.EventFd;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link BackendServer} driven request by request by a front-end that sends what QEMU sends (and
 * what QEMU would never send), with {@link IncrementBackend} as the device.
 */
class BackendServerTest {
    static final long ALL_RING_FEATURES = VirtioFeatures.bit(VirtioFeatures.VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.EVENT_IDX) | VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC)
            | VirtioFeatures.bit(VirtioFeatures.IN_ORDER);
    static final long PACKED = VirtioFeatures.bit(VirtioFeatures.RING_PACKED);
    static final long PROTOCOL_BIT = 1L << ProtocolFeatures.VIRTIO_PROTOCOL_FEATURES;
    static final long WANTED_PROTOCOL = ProtocolFeatures.bit(ProtocolFeatures.MQ) | ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK)
            | ProtocolFeatures.bit(ProtocolFeatures.CONFIG) | ProtocolFeatures.bit(ProtocolFeatures.STATUS)
            | ProtocolFeatures.bit(ProtocolFeatures.CONFIGURE_MEM_SLOTS) | ProtocolFeatures.bit(ProtocolFeatures.RESET_DEVICE)
            | ProtocolFeatures.bit(ProtocolFeatures.DEVICE_STATE);

    @TempDir
    Path dir;
    Path socket;
    IncrementBackend device;
    BackendServer server;
    long fdsBefore;
    long threadsBefore;
    long memfdMappingsBefore;

    @org.junit.jupiter.api.BeforeAll
    static void warmUp() throws IOException {
        // junixsocket and the JDK open a few fds for good on first use (native library, entropy);
        // a throwaway server and client make them open before the counts are taken.
        Path d = Files.createTempDirectory("warm");
        try (BackendServer s = BackendServer.listen(d.resolve("w.sock"), new IncrementBackend());
             RawFrontend fe = new RawFrontend(d.resolve("w.sock"), 4096)) {
            fe.callU64(FrontendRequest.GET_FEATURES);
        } finally {
            Files.deleteIfExists(d);
        }
    }

    @BeforeEach
    void start() throws IOException {
        fdsBefore = openFds();
        threadsBefore = vringThreads();
        memfdMappingsBefore = memfdMappings();
        socket = dir.resolve("be.sock");
        device = new IncrementBackend();
        server = BackendServer.listen(socket, device);
    }

    @AfterEach
    void stop() throws Exception {
        server.close();
        assertEquals(threadsBefore, vringThreads(), "server or ring worker threads left running");
        assertEquals(fdsBefore, openFds(), () -> "fds leaked: " + fdTargets());
        assertEquals(memfdMappingsBefore, memfdMappings(), "memfd mappings (guest memory, inflight, log) left mapped");
    }

    /** Lines of /proc/self/maps that map a memfd: guest memory, inflight regions and logs all are memfds here. */
    static long memfdMappings() throws IOException {
        return Files.readAllLines(Path.of("/proc/self/maps")).stream().filter(l -> l.contains("/memfd:")).count();
    }

    static long openFds() throws IOException {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.count();
        }
    }

    private static String fdTargets() {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            String unix = Files.readString(Path.of("/proc/net/unix"));
            return fds.map(p -> {
                try {
                    String target = Files.readSymbolicLink(p).toString();
                    if (target.startsWith("socket:[")) {
                        String inode = target.substring(8, target.length() - 1);
                        target += unix.lines().filter(l -> l.contains(" " + inode)).findFirst().orElse("");
                    }
                    return target.startsWith("/root/.m2") ? "" : p.getFileName() + "->" + target;
                } catch (IOException e) {
                    return p.getFileName() + "->?";
                }
            }).toList().toString();
        } catch (IOException e) {
            return e.toString();
        }
    }

    static long vringThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith("vring-")).count();
    }

    private RawFrontend frontend() {
        return new RawFrontend(socket, 1 << 20);
    }

    @ParameterizedTest(name = "{0} ring, busy-poll {1}")
    @CsvSource({"SPLIT,false", "SPLIT,true", "PACKED,false", "PACKED,true"})
    void qemuStartSequenceMovesDataThroughEveryRing(RingKind kind, boolean busyPoll) {
        long features = ALL_RING_FEATURES | PROTOCOL_BIT | (kind == RingKind.PACKED ? PACKED : 0);
        try (RawFrontend fe = frontend()) {
            fe.negotiate(features, WANTED_PROTOCOL);
            assertEquals(2, fe.callU64(FrontendRequest.GET_QUEUE_NUM));
            fe.sendMemTable();
            try (RawFrontend.Ring r0 = fe.new Ring(0, kind, 64, features, busyPoll);
                 RawFrontend.Ring r1 = fe.new Ring(1, kind, 16, features, busyPoll)) {
                r0.start(kind == RingKind.PACKED ? 0x8000_8000 : 0);
                r1.start(kind == RingKind.PACKED ? 0x8000_8000 : 0);
                for (int round = 0; round < 50; round++) { // two descriptors per chain
                    r0.submit(30);
                    r1.submit(8);
                    r0.collect(30, 5000);
                    r1.collect(8, 5000);
                }
                assertEquals(50 * 38, device.processed.get());
                try (Message m = fe.call(FrontendRequest.GET_VRING_BASE, new VringState(0, 0))) {
                    VringState base = VringState.decode(m.payload());
                    if (kind == RingKind.SPLIT) {
                        assertEquals(1500, base.num(), "split base is the next avail index");
                    } else {
                        int slots = 1500 * 2; // the wrap counter starts at 1 and flips at every lap
                        int pos = slots % 64 | ((slots / 64) % 2 == 0 ? 0x8000 : 0);
                        assertEquals(pos | pos << 16, base.num(), "packed base: avail and used position with wrap bits");
                    }
                }
            }
        }
        assertEquals(1, server.stats().ringStarts(kind) / 2, "both rings started with the negotiated layout");
    }

    @Test
    void aStoppedRingRestartsWhereItStoppedAndProcessesWhatIsAlreadyThereWithoutAKick() {
        long features = ALL_RING_FEATURES | PROTOCOL_BIT;
        try (RawFrontend fe = frontend()) {
            fe.negotiate(features, WANTED_PROTOCOL);
            fe.sendMemTable();
            try (RawFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 32, features, false)) {
                r.start(0);
                r.submit(10);
                r.collect(10, 5000);
                int base;
                try (Message m = fe.call(FrontendRequest.GET_VRING_BASE, new VringState(0, 0))) {
                    base = VringState.decode(m.payload()).num();
                }
                assertEquals(10, base);
                r.submit(5); // published while the ring is stopped; the restarted ring must find them itself
                try (RawFrontend.Ring again = fe.new Ring(0, RingKind.SPLIT, 32, features, false)) {
                    // Same ring areas: restart with the base it reported.
                    fe.send(FrontendRequest.SET_VRING_NUM, new VringState(0, 32));
                    fe.send(FrontendRequest.SET_VRING_BASE, new VringState(0, base));
                    fe.send(FrontendRequest.SET_VRING_ADDR, r.address());
                    fe.send(FrontendRequest.SET_VRING_CALL, new VringFdPayload(0, false), r.call.fd());
                    fe.send(FrontendRequest.SET_VRING_KICK, new VringFdPayload(0, false), again.kick.fd());
                    r.collect(5, 5000);
                }
            }
        }
    }

    @Test
    void setOwnerTwiceIsRefused() {
        try (RawFrontend fe = frontend()) {
            fe.negotiate(ALL_RING_FEATURES | PROTOCOL_BIT, WANTED_PROTOCOL);
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_OWNER, null), "second SET_OWNER fails");
            assertEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_NUM, new VringState(0, 8)), "the session goes on");
        }
    }

    @Test
    void aFrontEndWithoutProtocolFeaturesGetsEnabledRings() {
        long features = ALL_RING_FEATURES; // no bit 30: no GET_PROTOCOL_FEATURES, no SET_VRING_ENABLE
        try (RawFrontend fe = frontend()) {
            assertTrue((fe.callU64(FrontendRequest.GET_FEATURES) & PROTOCOL_BIT) != 0, "bit 30 is offered");
            fe.send(FrontendRequest.SET_OWNER, null);
            fe.send(FrontendRequest.SET_FEATURES, new U64Payload(features));
            fe.sendMemTable();
            try (RawFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, features, false)) {
                fe.send(FrontendRequest.SET_VRING_NUM, new VringState(0, 16));
                fe.send(FrontendRequest.SET_VRING_BASE, new VringState(0, 0));
                fe.send(FrontendRequest.SET_VRING_ADDR, r.address());
                fe.send(FrontendRequest.SET_VRING_CALL, new VringFdPayload(0, false), r.call.fd());
                fe.send(FrontendRequest.SET_VRING_KICK, new VringFdPayload(0, false), r.kick.fd());
                r.submit(8);
                r.collect(8, 5000);
            }
        }
    }

    @Test
    void configIsReadAndWrittenAtAnOffsetAndOutOfRangeIsAnEmptyReply() {
        try (RawFrontend fe = frontend()) {
            fe.negotiate(ALL_RING_FEATURES | PROTOCOL_BIT, WANTED_PROTOCOL);
            assertEquals(0, fe.sendAcked(FrontendRequest.SET_CONFIG, new DeviceConfig(4, 0, new byte[] {1, 2, 3})));
            try (Message m = fe.call(FrontendRequest.GET_CONFIG, DeviceConfig.request(2, 8))) {
                DeviceConfig c = DeviceConfig.decode(m.payload());
                assertEquals(2, c.offset());
                assertArrayEquals(new byte[] {0, 0, 1, 2, 3, 0, 0, 0}, c.data());
            }
            try (Message m = fe.call(FrontendRequest.GET_CONFIG, DeviceConfig.request(12, 8))) {
                assertEquals(0, DeviceConfig.decode(m.payload()).length(), "a range past the config space is an error reply");
            }
        }
    }

    @Test
    void requestsForFeaturesThatWereNotNegotiatedAreRefusedAndTheSessionGoesOn() {
        try (RawFrontend fe = frontend()) {
            long acked = fe.negotiate(ALL_RING_FEATURES | PROTOCOL_BIT, ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK));
            assertEquals(ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK), acked);
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_STATUS, new U64Payload(1)), "STATUS not negotiated");
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_ENDIAN, new VringState(0, 0)), "CROSS_ENDIAN never offered");
            try (EventFd logFd = EventFd.create()) {
                assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_LOG_FD, null, logFd.fd()), "dirty log not offered");
            }
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_PROTOCOL_FEATURES,
                    new U64Payload(ProtocolFeatures.bit(ProtocolFeatures.PAGEFAULT) | ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK))),
                    "postcopy never offered");
            fe.send(FrontendRequest.IOTLB_MSG, new io.vring.protocol.message.Payload() {
                @Override
                public int encodedSize() {
                    return 32;
                }

                @Override
                public void encode(java.nio.ByteBuffer dst) {
                    dst.put(new byte[32]);
                }
            });
            assertNotEquals(0, U64Payload.decode(fe.connection.receive().payload()).value(), "IOTLB never offered: u64 failure");
            assertNotEquals(0, fe.callU64(FrontendRequest.POSTCOPY_END), "postcopy never offered: u64 failure");
            assertEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_NUM, new VringState(1, 8)));
        }
        assertTrue(server.stats().refusedRequests() >= 6);
    }

    @Test
    void ringIndexOutOfRangeAndBadQueueSizesAreRefused() {
        try (RawFrontend fe = frontend()) {
            fe.negotiate(ALL_RING_FEATURES | PROTOCOL_BIT, WANTED_PROTOCOL);
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_NUM, new VringState(2, 8)), "ring 2 of 2");
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_NUM, new VringState(0, 0)), "size 0");
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_NUM, new VringState(0, 65536)), "size 65536");
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_ENABLE, new VringState(0, 2)), "enable 2");
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_BASE, new VringState(0, 0x1_0000)), "split base bits 16+");
        }
    }

    @Test
    void overlappingOrUnmappableRegionsAndRingsOutsideTheTableAreRefused() throws IOException {
        try (RawFrontend fe = frontend(); SharedMemory small = SharedMemory.create("small", 4096)) {
            fe.negotiate(ALL_RING_FEATURES | PROTOCOL_BIT, WANTED_PROTOCOL);
            long half = fe.memory.size() / 2;
            MemoryRegion a = new MemoryRegion(0, half, RawFrontend.USER_BASE, 0);
            MemoryRegion overlapsA = new MemoryRegion(half / 2, half, RawFrontend.USER_BASE + half * 4, half / 2);
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_MEM_TABLE, new MemoryTable(List.of(a, overlapsA)),
                    fe.memory.fd(), fe.memory.fd()), "GPA overlap");
            MemoryRegion pastTheFile = new MemoryRegion(0, 8192, RawFrontend.USER_BASE, 0);
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_MEM_TABLE, new MemoryTable(List.of(pastTheFile)),
                    small.fd()), "region larger than its file: mapping it would SIGBUS");
            fe.sendMemTable();
            fe.send(FrontendRequest.SET_VRING_NUM, new VringState(0, 8));
            fe.send(FrontendRequest.SET_VRING_ADDR, new VringAddress(0, 0, 0x1000, 0x2000, 0x3000, 0));
            try (EventFd kick = EventFd.create()) {
                assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_KICK, new VringFdPayload(0, false), kick.fd()),
                        "ring addresses that are no front-end address of any region");
            }
            assertEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_NUM, new VringState(1, 8)), "the session goes on");
        }
    }

    @Test
    void malformedMessagesCloseTheConnectionAndTheNextFrontEndIsServed() throws Exception {
        try (RawFrontend fe = frontend()) {
            fe.connection.send(99, 0x1, java.nio.ByteBuffer.allocate(0));
            assertThrows(VhostUserException.class, fe.connection::receive, "server hangs up on an unknown request");
        }
        try (RawFrontend fe = frontend()) {
            fe.connection.send(FrontendRequest.SET_VRING_NUM.code(), 0x1, java.nio.ByteBuffer.allocate(3));
            assertThrows(VhostUserException.class, fe.connection::receive, "wrong payload size");
        }
        try (RawFrontend fe = frontend()) {
            fe.negotiate(ALL_RING_FEATURES | PROTOCOL_BIT, WANTED_PROTOCOL);
            assertEquals(2, fe.callU64(FrontendRequest.GET_QUEUE_NUM), "the third front-end is served normally");
        }
        awaitSessionsEnded(3);
    }

    @Test
    void aDeviceFailureBreaksOnlyItsQueueSignalsTheErrFdAndSetsNeedsReset() {
        long features = ALL_RING_FEATURES | PROTOCOL_BIT;
        try (RawFrontend fe = frontend(); EventFd err = EventFd.create()) {
            fe.negotiate(features, WANTED_PROTOCOL);
            fe.sendMemTable();
            fe.send(FrontendRequest.SET_VRING_ERR, new VringFdPayload(0, false), err.fd());
            try (RawFrontend.Ring r0 = fe.new Ring(0, RingKind.SPLIT, 16, features, false);
                 RawFrontend.Ring r1 = fe.new Ring(1, RingKind.SPLIT, 16, features, false)) {
                device.failingQueue = 0;
                r1.start(0);
                r0.start(0);
                assertTrue(err.await(5000), "error eventfd signalled");
                assertEquals(BackendSession.DEVICE_NEEDS_RESET,
                        fe.callU64(FrontendRequest.GET_STATUS) & BackendSession.DEVICE_NEEDS_RESET);
                r1.submit(8);
                r1.collect(8, 5000);
            }
        }
        assertEquals(1, server.stats().brokenQueues());
    }

    @Test
    void deviceStateSavedFromOneBackEndLoadsIntoAnother() throws Exception {
        long features = ALL_RING_FEATURES | PROTOCOL_BIT;
        byte[] saved;
        try (RawFrontend fe = frontend()) {
            fe.negotiate(features, WANTED_PROTOCOL);
            fe.sendMemTable();
            try (RawFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, features, false)) {
                r.start(0);
                r.submit(7);
                r.collect(7, 5000);
                fe.call(FrontendRequest.GET_VRING_BASE, new VringState(0, 0)).close();
            }
            saved = transferState(fe, DeviceStateTransfer.SAVE, null);
        }
        assertEquals(4, saved.length);
        IncrementBackend fresh = new IncrementBackend();
        try (BackendServer other = BackendServer.listen(dir.resolve("other.sock"), fresh);
             RawFrontend fe = new RawFrontend(dir.resolve("other.sock"), 1 << 20)) {
            fe.negotiate(features, WANTED_PROTOCOL);
            transferState(fe, DeviceStateTransfer.LOAD, saved);
            assertEquals(7, fresh.processed.get(), "the counter came across");
            assertNotEquals(0, transferStateResult(fe, DeviceStateTransfer.LOAD, new byte[3], out -> { }),
                    "a state the device refuses fails the check");
        }
    }

    /** SET_DEVICE_STATE_FD with a pipe, the transfer, then CHECK_DEVICE_STATE; returns the saved bytes. */
    private static byte[] transferState(RawFrontend fe, int direction, byte[] toLoad) throws IOException {
        assertEquals(0, transferStateResult(fe, direction, toLoad, out -> { }), "CHECK_DEVICE_STATE");
        return lastSaved;
    }

    private static byte[] lastSaved;

    private static long transferStateResult(RawFrontend fe, int direction, byte[] toLoad,
                                            java.util.function.Consumer<byte[]> saved) throws IOException {
        int[] p = pipe();
        int reader = p[0];
        int writer = p[1];
        try {
            boolean save = direction == DeviceStateTransfer.SAVE;
            long r = fe.callU64WithFd(FrontendRequest.SET_DEVICE_STATE_FD, new DeviceStateTransfer(direction, 0),
                    save ? writer : reader);
            assertEquals(0, r & DeviceStateTransfer.REPLY_ERROR_MASK, "transfer accepted");
            assertEquals(DeviceStateTransfer.REPLY_NO_FD, r & DeviceStateTransfer.REPLY_NO_FD, "no fd of its own");
            if (save) {
                Libc.close(writer);
                writer = -1;
                lastSaved = readToEnd(reader);
            } else {
                Libc.close(reader);
                reader = -1;
                writeAll(writer, toLoad);
                Libc.close(writer);
                writer = -1;
            }
        } finally {
            if (reader >= 0) {
                Libc.close(reader);
            }
            if (writer >= 0) {
                Libc.close(writer);
            }
        }
        return fe.callU64(FrontendRequest.CHECK_DEVICE_STATE);
    }

    /** A pipe as a FIFO in a temporary directory: {read end, write end}, both blocking. */
    private static int[] pipe() throws IOException {
        Path fifoDir = Files.createTempDirectory("state");
        Path fifo = fifoDir.resolve("p");
        try {
            assertEquals(0, new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor());
            int r = Libc.open(fifo, Libc.O_RDONLY | Libc.O_NONBLOCK | Libc.O_CLOEXEC); // does not wait for a writer
            int w = Libc.open(fifo, Libc.O_WRONLY | Libc.O_CLOEXEC);
            Libc.fcntl(r, Libc.F_SETFL, 0);
            return new int[] {r, w};
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        } finally {
            Files.deleteIfExists(fifo);
            Files.deleteIfExists(fifoDir);
        }
    }

    private static byte[] readToEnd(int fd) {
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096);
            while (true) {
                assertTrue(Libc.poll(fd, Libc.POLLIN, 5000) != 0, "state arrives and ends");
                long n = Libc.read(fd, buf, 4096);
                if (n <= 0) {
                    return out.toByteArray();
                }
                out.writeBytes(buf.asSlice(0, n).toArray(ValueLayout.JAVA_BYTE));
            }
        }
    }

    private static void writeAll(int fd, byte[] data) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(Math.max(1, data.length));
            MemorySegment.copy(data, 0, buf, ValueLayout.JAVA_BYTE, 0, data.length);
            long done = 0;
            while (done < data.length) {
                done += Libc.write(fd, buf.asSlice(done), data.length - done);
            }
        }
    }

    @Test
    void memoryRegionsAddedAndRemovedWhileTrafficRuns() {
        long features = ALL_RING_FEATURES | PROTOCOL_BIT;
        try (RawFrontend fe = frontend(); SharedMemory extra = SharedMemory.create("extra", 1 << 20)) {
            fe.negotiate(features, WANTED_PROTOCOL);
            assertEquals(BackendSession.MAX_MEM_SLOTS, fe.callU64(FrontendRequest.GET_MAX_MEM_SLOTS));
            assertEquals(0, fe.sendAcked(FrontendRequest.ADD_MEM_REG, new SingleMemoryRegion(fe.region()), fe.memory.fd()));
            MemoryRegion second = new MemoryRegion(0x4000_0000L, extra.size(), RawFrontend.USER_BASE + 0x4000_0000L, 0);
            try (RawFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 32, features, false)) {
                r.start(0);
                for (int round = 0; round < 20; round++) {
                    r.submit(16);
                    long ack = round % 2 == 0
                            ? fe.sendAcked(FrontendRequest.ADD_MEM_REG, new SingleMemoryRegion(second), extra.fd())
                            : fe.sendAcked(FrontendRequest.REM_MEM_REG, new SingleMemoryRegion(second));
                    assertEquals(0, ack, "region change acked in round " + round);
                    r.collect(16, 5000);
                }
                assertNotEquals(0, fe.sendAcked(FrontendRequest.REM_MEM_REG, new SingleMemoryRegion(second)),
                        "removing a region that is not there");
            }
        }
        assertEquals(320, device.processed.get());
    }

    @Test
    void resetDeviceStopsRingsAndTheDeviceStartsAgain() {
        long features = ALL_RING_FEATURES | PROTOCOL_BIT;
        try (RawFrontend fe = frontend()) {
            fe.negotiate(features, WANTED_PROTOCOL);
            fe.sendMemTable();
            try (RawFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, features, false)) {
                r.start(0);
                r.submit(4);
                r.collect(4, 5000);
                assertEquals(0, fe.sendAcked(FrontendRequest.RESET_DEVICE, null));
                assertEquals(1, device.resets.get());
            }
            fe.send(FrontendRequest.SET_STATUS, new U64Payload(0));
            assertEquals(0, fe.callU64(FrontendRequest.GET_STATUS));
            try (RawFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, features, false)) {
                r.start(0);
                r.submit(4);
                r.collect(4, 5000);
            }
        }
    }

    @ParameterizedTest(name = "{0} ring")
    @CsvSource({"SPLIT", "PACKED"})
    void requestsInFlightWhenTheFrontEndReconnectsAreResubmittedFromTheInflightRegion(RingKind kind) throws Exception {
        long features = ALL_RING_FEATURES | PROTOCOL_BIT | (kind == RingKind.PACKED ? PACKED : 0);
        features &= ~VirtioFeatures.bit(VirtioFeatures.IN_ORDER); // chains complete out of order here
        long protocol = WANTED_PROTOCOL | ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD);
        int size = 16;
        try (SharedMemory guest = SharedMemory.create("guest", 1 << 20)) {
            int inflightFd;
            long mmapSize;
            RawFrontend.Ring ring;
            int[] completions = new int[size];
            device.holdMultiplesOfThree = true;
            try (RawFrontend fe = new RawFrontend(socket, guest)) {
                assertTrue((fe.negotiate(features, protocol) & ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD)) != 0);
                try (Message m = fe.call(FrontendRequest.GET_INFLIGHT_FD, new InflightDescription(0, 0, 1, size))) {
                    InflightDescription d = InflightDescription.decode(m.payload());
                    assertEquals(1, m.fdCount(), "the region's memfd comes with the reply");
                    assertEquals(io.vring.engine.inflight.InflightBuffer.size(kind, 1, size), d.mmapSize());
                    mmapSize = d.mmapSize();
                    inflightFd = m.takeFd(0);
                }
                fe.send(FrontendRequest.SET_INFLIGHT_FD, new InflightDescription(mmapSize, 0, 1, size), inflightFd);
                fe.sendMemTable();
                ring = fe.new Ring(0, kind, size, features, false);
                ring.start(kind == RingKind.PACKED ? 0x8000_8000 : 0);
                ring.submit(8); // values 0..7: 0, 3, 6 are held by the device
                ring.collectIds(5, completions, 5000);
                // The front-end goes away with three requests in flight (a back-end crash looks the same to it).
            }
            device.holdMultiplesOfThree = false;
            try (RawFrontend fe = new RawFrontend(socket, guest)) {
                fe.negotiate(features, protocol);
                fe.send(FrontendRequest.SET_INFLIGHT_FD, new InflightDescription(mmapSize, 0, 1, size), inflightFd);
                fe.sendMemTable();
                RawFrontend.Ring again = fe.new Ring(0, kind, size, features, false, ring);
                // QEMU after a lost connection: the base is the used index (split), a stale position (packed).
                again.start(kind == RingKind.PACKED ? 0x8000_8000 : 5);
                again.collectIds(3, completions, 5000);
                for (int i = 0; i < 8; i++) {
                    assertEquals(1, completions[i], "value " + i + " completed exactly once");
                }
                again.close();
            } finally {
                ring.close();
                Libc.close(inflightFd);
            }
        }
    }

    @ParameterizedTest(name = "{0} ring")
    @CsvSource({"SPLIT", "PACKED"})
    void withLogAllTheDeviceMarksThePagesItWroteAndTheUsedRingInTheDirtyLog(RingKind kind) {
        long features = ALL_RING_FEATURES | PROTOCOL_BIT | (kind == RingKind.PACKED ? PACKED : 0);
        long protocol = WANTED_PROTOCOL | ProtocolFeatures.bit(ProtocolFeatures.LOG_SHMFD);
        try (RawFrontend fe = frontend(); SharedMemory log = SharedMemory.create("dirty-log", 4096)) {
            assertTrue((fe.negotiate(features, protocol) & ProtocolFeatures.bit(ProtocolFeatures.LOG_SHMFD)) != 0);
            assertTrue((fe.callU64(FrontendRequest.GET_FEATURES) & BackendSession.LOG_ALL_BIT) != 0, "LOG_ALL offered");
            fe.sendMemTable();
            try (RawFrontend.Ring r = fe.new Ring(0, kind, 16, features, false)) {
                r.start(kind == RingKind.PACKED ? 0x8000_8000 : 0);
                r.submit(4);
                r.collect(4, 5000);
                assertEquals(0, log.segment().get(java.lang.foreign.ValueLayout.JAVA_LONG, 0), "nothing logged before SET_LOG_BASE");
                fe.connection.sendRequest(FrontendRequest.SET_LOG_BASE, new io.vring.protocol.message.LogDescription(4096, 0),
                        false, log.fd());
                fe.connection.receive().close();
                // Migration starts: LOG_ALL, then the used ring's log address on the running ring.
                assertEquals(0, fe.sendAcked(FrontendRequest.SET_FEATURES, new U64Payload(features | BackendSession.LOG_ALL_BIT)));
                VringAddress a = r.address();
                long usedGpa = r.plan.rings().deviceArea();
                assertEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_ADDR, new VringAddress(0, VringAddress.FLAG_LOG,
                        a.descUserAddr(), a.usedUserAddr(), a.availUserAddr(), usedGpa)), "acked: the ring logs from here on");
                r.submit(4);
                r.collect(4, 5000);
                for (int v = 4; v < 8; v++) {
                    long page = (r.dataGpa + (v % 16) * RawFrontend.DATA_PER_CHAIN + 4) / 4096;
                    assertTrue(isDirty(log, page), "page " + page + " with the answer to request " + v + " is dirty; log word 0 = 0x" + Long.toHexString(log.segment().get(java.lang.foreign.ValueLayout.JAVA_LONG, 0)) + ", dataGpa 0x" + Long.toHexString(r.dataGpa));
                }
                // Split: the used ring at the log address. Packed: used descriptors go into the descriptor ring.
                long usedPage = (kind == RingKind.SPLIT ? usedGpa : r.plan.rings().descriptorArea()) / 4096;
                assertTrue(isDirty(log, usedPage), "page " + usedPage + " of the device's used-entry stores is dirty");
                assertEquals(0, log.segment().get(java.lang.foreign.ValueLayout.JAVA_BYTE, 4095), "pages never written stay clean");
            }
        }
    }

    private static boolean isDirty(SharedMemory log, long page) {
        return (log.segment().get(java.lang.foreign.ValueLayout.JAVA_BYTE, page / 8) & (1 << (page % 8))) != 0;
    }

    @Test
    void requestsOutOfOrderAreRefusedAndTheSessionGoesOn() {
        long features = ALL_RING_FEATURES | PROTOCOL_BIT;
        try (RawFrontend fe = frontend(); EventFd kick = EventFd.create()) {
            fe.negotiate(features, WANTED_PROTOCOL);
            fe.send(FrontendRequest.SET_VRING_NUM, new VringState(0, 16));
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_KICK, new VringFdPayload(0, false), kick.fd()),
                    "a ring cannot start before the memory table");
            fe.sendMemTable();
            assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_KICK, new VringFdPayload(0, false), kick.fd()),
                    "nor before its addresses");
            try (RawFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, features, false)) {
                r.start(0);
                assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_NUM, new VringState(0, 8)), "resize a running ring");
                assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_BASE, new VringState(0, 3)), "rebase a running ring");
                assertNotEquals(0, fe.sendAcked(FrontendRequest.SET_DEVICE_STATE_FD,
                        new io.vring.protocol.message.DeviceStateTransfer(0, 0), kick.fd()) & 0xFF,
                        "device state while a ring runs");
                r.submit(4);
                r.collect(4, 5000);
            }
        }
    }

    @Test
    void aDisabledRingKeepsItsChainsAndServesThemOnceEnabledAgain() throws InterruptedException {
        long features = ALL_RING_FEATURES | PROTOCOL_BIT;
        try (RawFrontend fe = frontend()) {
            fe.negotiate(features, WANTED_PROTOCOL);
            fe.sendMemTable();
            try (RawFrontend.Ring r = fe.new Ring(0, RingKind.SPLIT, 16, features, false)) {
                r.start(0);
                r.submit(2);
                r.collect(2, 5000);
                assertEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_ENABLE, new VringState(0, 0)));
                r.submit(3);
                Thread.sleep(200);
                assertEquals(-1, r.driver.pollUsed(), "a disabled ring is not processed");
                assertEquals(2, device.processed.get());
                assertEquals(0, fe.sendAcked(FrontendRequest.SET_VRING_ENABLE, new VringState(0, 1)));
                r.collect(3, 5000);
                assertEquals(5, device.processed.get());
            }
        }
    }

    private void awaitSessionsEnded(long n) throws InterruptedException {
        long deadline = System.currentTimeMillis() + 5000;
        while (server.stats().sessionsEnded() < n && System.currentTimeMillis() < deadline) {
            Thread.sleep(10);
        }
        assertEquals(n, server.stats().sessionsEnded());
    }
}
