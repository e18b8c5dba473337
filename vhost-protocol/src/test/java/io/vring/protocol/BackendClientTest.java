package io.vring.protocol;

import io.vring.engine.RingAddresses;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.os.Libc;
import io.vring.protocol.ScriptedBackend.Action;
import io.vring.protocol.ScriptedBackend.Seen;
import io.vring.protocol.message.DeviceConfig;
import io.vring.protocol.message.DeviceStateTransfer;
import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.MessageHeader;
import io.vring.protocol.message.ProtocolFeatures;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringState;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The front-end's requests, byte for byte, against a back-end the test plays on a socket pair; and
 * every kind of bad reply refused, with the client then unusable rather than out of step.
 */
class BackendClientTest {
    private static final long V1 = VirtioFeatures.bit(VirtioFeatures.VERSION_1);
    private static final long EVENT_IDX = VirtioFeatures.bit(VirtioFeatures.EVENT_IDX);
    private static final long PACKED = VirtioFeatures.bit(VirtioFeatures.RING_PACKED);
    private static final long BIT30 = 1L << 30;
    private static final Duration SHORT = Duration.ofMillis(1_500);
    private static final Duration LIMIT = Duration.ofSeconds(10);

    private static long proto(int... bits) {
        long mask = 0;
        for (int b : bits) {
            mask |= ProtocolFeatures.bit(b);
        }
        return mask;
    }

    private interface Body {
        void run(BackendClient client, ScriptedBackend backend) throws Exception;
    }

    private static void withBackend(long features, long protocol, ScriptedBackend.Responder override, Body body) {
        assertTimeoutPreemptively(LIMIT, () -> {
            ConnectionPair pair = Connection.pair();
            try (BackendClient client = BackendClient.over(pair.first(), SHORT);
                 ScriptedBackend backend = new ScriptedBackend(pair.second(), features, protocol, override)) {
                body.run(client, backend);
            }
        });
    }

    private static void withBackend(long features, long protocol, Body body) {
        withBackend(features, protocol, (s, m, c) -> Action.DEFAULT, body);
    }

    // ---- the start sequence ----

    @Test
    void startSendsQemuSequenceWithMemorySlotsAndReplyAck() {
        long offeredProtocol = proto(ProtocolFeatures.MQ, ProtocolFeatures.REPLY_ACK, ProtocolFeatures.CONFIGURE_MEM_SLOTS,
                ProtocolFeatures.STATUS, ProtocolFeatures.CONFIG, ProtocolFeatures.SHMEM);
        withBackend(V1 | EVENT_IDX | BIT30, offeredProtocol, (client, backend) -> {
            try (FrontendDevice device = FrontendDevice.start(client, FrontendConfig.of(2, 8))) {
                List<Seen> seen = backend.seen();
                List<String> expected = new ArrayList<>(List.of("GET_FEATURES", "GET_PROTOCOL_FEATURES",
                        "SET_PROTOCOL_FEATURES", "GET_QUEUE_NUM", "GET_MAX_MEM_SLOTS", "SET_OWNER", "SET_FEATURES",
                        "SET_STATUS", "ADD_MEM_REG"));
                for (int i = 0; i < 2; i++) {
                    expected.addAll(List.of("SET_VRING_NUM", "SET_VRING_BASE", "SET_VRING_ADDR", "SET_VRING_CALL",
                            "SET_VRING_ERR", "SET_VRING_KICK"));
                }
                expected.addAll(List.of("SET_VRING_ENABLE", "SET_VRING_ENABLE", "SET_STATUS"));
                assertEquals(expected, backend.names());

                // Protocol features: what both want, sent before REPLY_ACK is in force (no NEED_REPLY).
                long negotiated = proto(ProtocolFeatures.MQ, ProtocolFeatures.REPLY_ACK,
                        ProtocolFeatures.CONFIGURE_MEM_SLOTS, ProtocolFeatures.STATUS, ProtocolFeatures.CONFIG);
                assertEquals(negotiated, seen.get(2).buffer().getLong(0));
                assertEquals(MessageHeader.VERSION, seen.get(2).flags());
                // GETs never ask for an ack; everything after SET_PROTOCOL_FEATURES without a reply does.
                for (Seen s : seen) {
                    FrontendRequest type = FrontendRequest.of(s.code()).orElseThrow();
                    boolean afterNegotiation = seen.indexOf(s) > 2;
                    int want = MessageHeader.VERSION | (!type.alwaysReplies() && afterNegotiation ? MessageHeader.NEED_REPLY : 0);
                    assertEquals(want, s.flags(), s.toString());
                }
                // SET_FEATURES: the intersection, bit 30 kept; indirect was wanted but not offered.
                assertEquals(V1 | EVENT_IDX | BIT30, seen.get(6).buffer().getLong(0));
                assertEquals(V1 | EVENT_IDX, device.features());
                assertEquals(FrontendDevice.STATUS_ACKNOWLEDGE | FrontendDevice.STATUS_DRIVER | FrontendDevice.STATUS_FEATURES_OK,
                        seen.get(7).buffer().getLong(0));
                assertEquals(0xF, seen.get(seen.size() - 1).buffer().getLong(0));

                // ADD_MEM_REG: padding, then the rings' region at its GPA with our mapping's address, and its memfd.
                FrontendRegion region = device.regions().getFirst();
                ByteBuffer add = seen.get(8).buffer();
                assertEquals(40, seen.get(8).payload().length);
                assertEquals(1, seen.get(8).fds());
                assertEquals(0, add.getLong(0));
                assertEquals(1 << 20, add.getLong(8));
                assertEquals(region.size(), add.getLong(16));
                assertEquals(region.segment().address(), add.getLong(24));
                assertEquals(0, add.getLong(32));

                for (int i = 0; i < 2; i++) {
                    int at = 9 + 6 * i;
                    FrontendRing ring = device.ring(i);
                    assertArrayEquals(bytes(8, b -> b.putInt(0, ring.index()).putInt(4, 8)), seen.get(at).payload());
                    assertArrayEquals(bytes(8, b -> b.putInt(0, ring.index()).putInt(4, 0)), seen.get(at + 1).payload());
                    RingAddresses rings = ring.placement().rings();
                    long va0 = region.userAddress() - region.guestPhysicalAddress();
                    assertArrayEquals(bytes(40, b -> b.putInt(0, ring.index()).putInt(4, 0)
                            .putLong(8, va0 + rings.descriptorArea()).putLong(16, va0 + rings.deviceArea())
                            .putLong(24, va0 + rings.driverArea()).putLong(32, 0)), seen.get(at + 2).payload());
                    for (int k = 3; k < 6; k++) { // CALL, ERR, KICK: the ring index and one eventfd
                        assertEquals(ring.index(), seen.get(at + k).buffer().getLong(0));
                        assertEquals(1, seen.get(at + k).fds());
                    }
                }
                assertArrayEquals(bytes(8, b -> b.putInt(0, 1).putInt(4, 1)), seen.get(seen.size() - 2).payload());
            }
            assertEquals(null, backend.failure());
        });
    }

    @Test
    void startWithoutReplyAckOrSlotsSendsOneMemoryTableAndPackedBusyPollRings() {
        withBackend(V1 | PACKED | BIT30, proto(ProtocolFeatures.MQ), (client, backend) -> {
            FrontendConfig config = FrontendConfig.of(1, 16).packed().withBusyPoll(true);
            try (FrontendDevice device = FrontendDevice.start(client, config)) {
                backend.awaitSeen(14);
                assertEquals(List.of("GET_FEATURES", "GET_PROTOCOL_FEATURES", "SET_PROTOCOL_FEATURES", "GET_QUEUE_NUM",
                        "SET_OWNER", "SET_FEATURES", "SET_MEM_TABLE", "SET_VRING_NUM", "SET_VRING_BASE", "SET_VRING_ADDR",
                        "SET_VRING_CALL", "SET_VRING_ERR", "SET_VRING_KICK", "SET_VRING_ENABLE"), backend.names());
                List<Seen> seen = backend.seen();
                for (Seen s : seen) {
                    assertEquals(MessageHeader.VERSION, s.flags(), "no REPLY_ACK, no NEED_REPLY: " + s);
                }
                Seen table = seen.get(6);
                assertEquals(8 + 32, table.payload().length);
                assertEquals(1, table.buffer().getInt(0));
                assertEquals(1, table.fds());
                // Packed, fresh: both wrap counters 1.
                assertEquals(0x8000_8000, seen.get(8).buffer().getInt(4));
                // Busy-poll: call and kick with NOFD and no fd; err keeps its eventfd.
                assertEquals(0x100, seen.get(10).buffer().getLong(0));
                assertEquals(0, seen.get(10).fds());
                assertEquals(0, seen.get(11).buffer().getLong(0));
                assertEquals(1, seen.get(11).fds());
                assertEquals(0x100, seen.get(12).buffer().getLong(0));
                assertEquals(0, seen.get(12).fds());
                assertTrue(device.ring(0).busyPoll());
                assertEquals(V1 | PACKED, device.features());
            }
        });
    }

    @Test
    void backendChannelIsOneSocketWhoseRequestsReachTheListener() {
        long protocol = proto(ProtocolFeatures.BACKEND_REQ, ProtocolFeatures.REPLY_ACK, ProtocolFeatures.CONFIG);
        FrontendClient[] toFrontend = new FrontendClient[1];
        java.util.concurrent.atomic.AtomicInteger changes = new java.util.concurrent.atomic.AtomicInteger();
        withBackend(V1 | BIT30, protocol, (s, m, c) -> {
            if (s.name().equals("SET_BACKEND_REQ_FD")) {
                toFrontend[0] = FrontendClient.adopt(m.takeFd(0), protocol);
            }
            return Action.DEFAULT;
        }, (client, backend) -> {
            FrontendConfig config = FrontendConfig.of(1, 8).withBackendEvents(new FrontendServer.Listener() {
                @Override
                public void configChanged() {
                    changes.incrementAndGet();
                }
            });
            try (FrontendDevice device = FrontendDevice.start(client, config)) {
                Seen req = backend.seen().get(3);
                assertEquals("SET_BACKEND_REQ_FD", req.name());
                assertEquals(1, req.fds());
                assertEquals(0, req.payload().length);
                assertEquals(MessageHeader.VERSION | MessageHeader.NEED_REPLY, req.flags());
                assertTrue(device.backendChannel().isRunning(),
                        device.backendChannel().endReason() + " / scripted: " + backend.failure());
                toFrontend[0].configChanged(); // returns once the front-end acked it
                assertEquals(1, changes.get());
                toFrontend[0].close();
            }
        });
    }

    @Test
    void aBackendWithoutVersion1IsRefusedAndNothingLeaks() {
        withBackend(EVENT_IDX | BIT30, 0, (client, backend) -> {
            VhostUserException e = assertThrows(VhostUserException.class,
                    () -> FrontendDevice.start(client, FrontendConfig.of(1, 8)));
            assertEquals(VhostUserError.FeatureMismatch, e.kind());
        });
    }

    @Test
    void tooFewQueuesIsAFeatureMismatch() {
        withBackend(V1 | BIT30, proto(ProtocolFeatures.MQ), (client, backend) -> {
            backend.queues = 1;
            VhostUserException e = assertThrows(VhostUserException.class,
                    () -> FrontendDevice.start(client, FrontendConfig.of(2, 8)));
            assertEquals(VhostUserError.FeatureMismatch, e.kind());
        });
    }

    // ---- gates ----

    @Test
    void aGatedRequestIsRefusedBeforeAnythingIsSent() {
        withBackend(V1 | BIT30, proto(ProtocolFeatures.MQ), (client, backend) -> {
            assertEquals(VhostUserError.InvalidOperation, assertThrows(VhostUserException.class, client::getQueueNum).kind());
            assertEquals(VhostUserError.InvalidOperation,
                    assertThrows(VhostUserException.class, client::getProtocolFeatures).kind());
            assertEquals(VhostUserError.InvalidOperation,
                    assertThrows(VhostUserException.class, () -> client.setFeatures(V1)).kind());
            assertTrue(backend.seen().isEmpty());
            assertFalse(client.isBroken());
            assertEquals(V1 | BIT30, client.getFeatures());
            assertEquals(VhostUserError.FeatureMismatch,
                    assertThrows(VhostUserException.class, () -> client.setFeatures(V1 | PACKED)).kind());
        });
    }

    // ---- bad replies ----

    private interface BadReply {
        void send(Connection c);
    }

    private static void assertRefusedReply(BadReply reply, VhostUserError expected) {
        withBackend(V1 | BIT30, 0, (s, m, c) -> {
            if (s.name().equals("GET_FEATURES")) {
                reply.send(c);
                return Action.HANDLED;
            }
            return Action.DEFAULT;
        }, (client, backend) -> {
            VhostUserException e = assertThrows(VhostUserException.class, client::getFeatures);
            assertEquals(expected, e.kind(), e.getMessage());
            assertTrue(client.isBroken());
            assertEquals(VhostUserError.SocketBroken, assertThrows(VhostUserException.class, client::getFeatures).kind());
            assertEquals(1, backend.seen().size(), "nothing is sent once broken");
        });
    }

    private static ByteBuffer u64(long v) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, v);
    }

    @Test
    void replyWithAnotherCodeIsRefused() {
        assertRefusedReply(c -> c.send(FrontendRequest.GET_PROTOCOL_FEATURES.code(), 0x5, u64(V1)), VhostUserError.InvalidMessage);
    }

    @Test
    void replyWithoutTheReplyFlagIsRefused() {
        assertRefusedReply(c -> c.send(FrontendRequest.GET_FEATURES.code(), 0x1, u64(V1)), VhostUserError.InvalidMessage);
    }

    @Test
    void replyThatEchoesNeedReplyIsRefused() {
        assertRefusedReply(c -> c.send(FrontendRequest.GET_FEATURES.code(), 0xD, u64(V1)), VhostUserError.InvalidMessage);
    }

    @Test
    void replyOfTheWrongSizeIsRefused() {
        assertRefusedReply(c -> c.send(FrontendRequest.GET_FEATURES.code(), 0x5,
                ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN)), VhostUserError.InvalidMessage);
    }

    @Test
    void replyWithAnUnexpectedFdIsRefusedAndTheFdClosed() {
        try (io.vring.engine.notify.EventFd stray = io.vring.engine.notify.EventFd.create()) {
            assertRefusedReply(c -> c.send(FrontendRequest.GET_FEATURES.code(), 0x5, u64(V1), stray.fd()),
                    VhostUserError.IncorrectFds);
        }
    }

    @Test
    void peerThatNeverRepliesTimesOutInsteadOfHanging() {
        assertRefusedReply(c -> { }, VhostUserError.SocketBroken);
    }

    @Test
    void peerThatClosesInsteadOfReplyingIsADisconnect() {
        assertRefusedReply(Connection::close, VhostUserError.Disconnect);
    }

    @Test
    void peerThatClosesInsideAReplyIsAPartialMessage() {
        assertRefusedReply(c -> {
            ByteBuffer half = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
            half.putInt(0, FrontendRequest.GET_FEATURES.code()).putInt(4, 0x5).putInt(8, 8);
            c.writeRaw(half);
            c.close();
        }, VhostUserError.PartialMessage);
    }

    @Test
    void getVringBaseAnsweredForAnotherRingIsRefused() {
        withBackend(V1 | BIT30, 0, (s, m, c) -> {
            if (s.name().equals("GET_VRING_BASE")) {
                c.sendReply(FrontendRequest.GET_VRING_BASE, new VringState(3, 0));
                return Action.HANDLED;
            }
            return Action.DEFAULT;
        }, (client, backend) -> {
            VhostUserException e = assertThrows(VhostUserException.class, () -> client.getVringBase(1));
            assertEquals(VhostUserError.InvalidMessage, e.kind());
            assertTrue(client.isBroken());
        });
    }

    @Test
    void aRefusedAckIsABackendErrorAndTheClientCarriesOn() {
        withBackend(V1 | BIT30, proto(ProtocolFeatures.REPLY_ACK), (s, m, c) -> {
            if (s.name().equals("SET_VRING_NUM")) {
                c.sendAck(FrontendRequest.SET_VRING_NUM, false);
                return Action.HANDLED;
            }
            return Action.DEFAULT;
        }, (client, backend) -> {
            client.negotiateProtocolFeatures(proto(ProtocolFeatures.REPLY_ACK));
            VhostUserException e = assertThrows(VhostUserException.class, () -> client.setVringNum(0, 256));
            assertEquals(VhostUserError.BackendInternalError, e.kind());
            assertFalse(client.isBroken());
            client.setOwner();
            assertEquals("SET_OWNER", backend.names().getLast());
        });
    }

    @Test
    void getConfigChecksTheAnsweredRangeAndTreatsAnEmptyReplyAsRefusal() {
        withBackend(V1 | BIT30, proto(ProtocolFeatures.CONFIG), (s, m, c) -> {
            if (s.name().equals("GET_CONFIG")) {
                int size = s.buffer().getInt(4);
                c.sendReply(FrontendRequest.GET_CONFIG, new DeviceConfig(s.buffer().getInt(0), 0,
                        size == 4 ? new byte[] {1, 2, 3, 4} : size == 6 ? new byte[0] : new byte[2]));
                return Action.HANDLED;
            }
            return Action.DEFAULT;
        }, (client, backend) -> {
            client.negotiateProtocolFeatures(proto(ProtocolFeatures.CONFIG));
            assertArrayEquals(new byte[] {1, 2, 3, 4}, client.getConfig(8, 4));
            Seen request = backend.seen().getLast();
            assertArrayEquals(bytes(16, b -> b.putInt(0, 8).putInt(4, 4).putInt(8, 0)), request.payload());
            assertEquals(VhostUserError.BackendInternalError,
                    assertThrows(VhostUserException.class, () -> client.getConfig(0, 6)).kind());
            assertFalse(client.isBroken());
            assertEquals(VhostUserError.InvalidMessage,
                    assertThrows(VhostUserException.class, () -> client.getConfig(0, 5)).kind());
            assertTrue(client.isBroken());
        });
    }

    // ---- device state over the pipe ----

    @Test
    void saveReadsThePipeToEndOfFileThenChecks() {
        byte[] state = new byte[200_000]; // more than a default pipe holds: the back-end writes before replying
        new java.util.SplittableRandom(7).nextBytes(state);
        withBackend(V1 | BIT30, proto(ProtocolFeatures.DEVICE_STATE), (s, m, c) -> {
            if (s.name().equals("SET_DEVICE_STATE_FD")) {
                assertEquals(DeviceStateTransfer.SAVE, s.buffer().getInt(0));
                int fd = m.takeFd(0);
                writeFully(fd, state);
                Libc.close(fd);
                c.sendReply(FrontendRequest.SET_DEVICE_STATE_FD, new U64Payload(DeviceStateTransfer.REPLY_NO_FD));
                return Action.HANDLED;
            }
            return Action.DEFAULT;
        }, (client, backend) -> {
            client.negotiateProtocolFeatures(proto(ProtocolFeatures.DEVICE_STATE));
            assertArrayEquals(state, client.saveDeviceState());
            assertEquals(List.of("SET_DEVICE_STATE_FD", "CHECK_DEVICE_STATE"),
                    backend.names().subList(backend.names().size() - 2, backend.names().size()));
        });
    }

    @Test
    void loadWritesThePipeClosesItThenChecks() {
        byte[] state = new byte[100_000];
        new java.util.SplittableRandom(8).nextBytes(state);
        byte[][] received = new byte[1][];
        withBackend(V1 | BIT30, proto(ProtocolFeatures.DEVICE_STATE), (s, m, c) -> {
            if (s.name().equals("SET_DEVICE_STATE_FD")) {
                assertEquals(DeviceStateTransfer.LOAD, s.buffer().getInt(0));
                int fd = m.takeFd(0);
                Thread.ofVirtual().start(() -> {
                    received[0] = readToEnd(fd);
                    Libc.close(fd);
                });
                c.sendReply(FrontendRequest.SET_DEVICE_STATE_FD, new U64Payload(DeviceStateTransfer.REPLY_NO_FD));
                return Action.HANDLED;
            }
            return Action.DEFAULT;
        }, (client, backend) -> {
            client.negotiateProtocolFeatures(proto(ProtocolFeatures.DEVICE_STATE));
            client.loadDeviceState(state);
            assertEquals("CHECK_DEVICE_STATE", backend.names().getLast());
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (received[0] == null && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertNotNull(received[0]);
            assertArrayEquals(state, received[0]);
        });
    }

    @Test
    void aStateReplyThatPromisesAnFdButSendsNoneIsRefused() {
        withBackend(V1 | BIT30, proto(ProtocolFeatures.DEVICE_STATE), (s, m, c) -> {
            if (s.name().equals("SET_DEVICE_STATE_FD")) {
                c.sendReply(FrontendRequest.SET_DEVICE_STATE_FD, new U64Payload(0)); // bit 8 clear: an fd should follow
                return Action.HANDLED;
            }
            return Action.DEFAULT;
        }, (client, backend) -> {
            client.negotiateProtocolFeatures(proto(ProtocolFeatures.DEVICE_STATE));
            assertEquals(VhostUserError.IncorrectFds, assertThrows(VhostUserException.class, client::saveDeviceState).kind());
            assertTrue(client.isBroken());
        });
    }

    @Test
    void inflightRegionIsMappedFromTheReplyAndHandedBackUnchanged() {
        try (io.vring.engine.memory.SharedMemory region = io.vring.engine.memory.SharedMemory.create("inflight", 8192)) {
            region.segment().set(ValueLayout.JAVA_BYTE, 4096 + 5, (byte) 42);
            withBackend(V1 | BIT30, proto(ProtocolFeatures.INFLIGHT_SHMFD), (s, m, c) -> {
                if (s.name().equals("GET_INFLIGHT_FD")) {
                    ByteBuffer req = s.buffer();
                    boolean decline = req.getShort(16) == 3;
                    c.sendReply(FrontendRequest.GET_INFLIGHT_FD, new io.vring.protocol.message.InflightDescription(
                            decline ? 0 : 4096, decline ? 0 : 4096, req.getShort(16), req.getShort(18)),
                            decline ? new int[0] : new int[] {region.fd()});
                    return Action.HANDLED;
                }
                return Action.DEFAULT;
            }, (client, backend) -> {
                client.negotiateProtocolFeatures(proto(ProtocolFeatures.INFLIGHT_SHMFD));
                assertEquals(null, client.getInflightFd(3, 128), "mmap_size 0: declined");
                try (BackendClient.InflightArea area = client.getInflightFd(2, 256)) {
                    assertArrayEquals(bytes(24, b -> b.putShort(16, (short) 2).putShort(18, (short) 256)),
                            backend.seen().getLast().payload());
                    assertEquals(4096, area.memory().size());
                    assertEquals(42, area.memory().segment().get(ValueLayout.JAVA_BYTE, 5), "mapped at mmap_offset");
                    client.setInflightFd(area);
                    backend.awaitSeen(6); // no REPLY_ACK: SET_INFLIGHT_FD is not waited for
                    Seen set = backend.seen().getLast();
                    assertEquals("SET_INFLIGHT_FD", set.name());
                    assertEquals(1, set.fds());
                    assertArrayEquals(bytes(24, b -> b.putLong(0, 4096).putLong(8, 4096).putShort(16, (short) 2)
                            .putShort(18, (short) 256)), set.payload());
                }
            });
        }
    }

    @Test
    void acceptWaitsForABackendThatConnectsAndGivesUpInTime() throws Exception {
        java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("vring-accept");
        java.nio.file.Path socket = dir.resolve("fe.sock");
        try {
            assertTimeoutPreemptively(LIMIT, () -> {
                VhostUserException e = assertThrows(VhostUserException.class,
                        () -> BackendClient.accept(socket, Duration.ofMillis(200), SHORT));
                assertEquals(VhostUserError.SocketConnect, e.kind());
                Thread connector = Thread.ofVirtual().start(() -> {
                    for (int i = 0; i < 100; i++) {
                        try (Connection c = Connection.connect(socket)) {
                            try (Message m = c.receive()) {
                                c.sendReply(FrontendRequest.GET_FEATURES, new U64Payload(V1));
                            }
                            return;
                        } catch (VhostUserException notYet) {
                            try {
                                Thread.sleep(20);
                            } catch (InterruptedException ie) {
                                return;
                            }
                        }
                    }
                });
                try (BackendClient client = BackendClient.accept(socket, Duration.ofSeconds(5), SHORT)) {
                    assertEquals(V1, client.getFeatures());
                }
                connector.join();
            });
        } finally {
            java.nio.file.Files.deleteIfExists(socket);
            java.nio.file.Files.deleteIfExists(dir);
        }
    }

    // ---- helpers ----

    private interface Filler {
        void fill(ByteBuffer b);
    }

    private static byte[] bytes(int size, Filler filler) {
        ByteBuffer b = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
        filler.fill(b);
        return b.array();
    }

    private static void writeFully(int fd, byte[] data) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(data.length);
            MemorySegment.copy(data, 0, buf, ValueLayout.JAVA_BYTE, 0, data.length);
            long done = 0;
            while (done < data.length) {
                done += Libc.write(fd, buf.asSlice(done), data.length - done);
            }
        }
    }

    private static byte[] readToEnd(int fd) {
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(4096);
            for (;;) {
                long n = Libc.read(fd, buf, 4096);
                if (n <= 0) {
                    return out.toByteArray();
                }
                out.write(buf.asSlice(0, n).toArray(ValueLayout.JAVA_BYTE), 0, (int) n);
            }
        }
    }
}
