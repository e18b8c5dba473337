package io.vring.protocol;

import io.vring.engine.memory.SharedMemory;
import io.vring.engine.notify.EventFd;
import io.vring.engine.os.Libc;
import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.MemoryRegion;
import io.vring.protocol.message.MemoryTable;
import io.vring.protocol.message.MessageHeader;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringFdPayload;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ConnectionTest {
    private static final long REGION_SIZE = 4096;

    /** Sends {@code n} memfds in a SET_MEM_TABLE and checks each arrives mapped onto the same memory. */
    private static void memfdsArriveAsTheSameMemory(Connection sender, Connection receiver, int n) {
        List<SharedMemory> sent = new ArrayList<>();
        List<MemoryRegion> regions = new ArrayList<>();
        try {
            int[] fds = new int[n];
            for (int i = 0; i < n; i++) {
                SharedMemory m = SharedMemory.create("conn-test-" + i, REGION_SIZE);
                sent.add(m);
                fds[i] = m.fd();
                regions.add(new MemoryRegion(i * REGION_SIZE, REGION_SIZE, 0x7f00_0000_0000L + i * REGION_SIZE, 0));
            }
            sender.sendRequest(FrontendRequest.SET_MEM_TABLE, new MemoryTable(regions), true, fds);
            try (Message m = receiver.receive()) {
                assertEquals(FrontendRequest.SET_MEM_TABLE.code(), m.request());
                assertTrue(m.header().needsReply());
                assertEquals(n, m.fdCount());
                MemoryTable table = MemoryTable.decode(m.payload(), m.fdCount());
                assertEquals(regions, table.regions());
                for (int i = 0; i < n; i++) {
                    try (SharedMemory mapped = SharedMemory.open(m.takeFd(i), REGION_SIZE)) {
                        mapped.segment().set(ValueLayout.JAVA_LONG, 8, 0xC0FFEE00L + i);
                        assertEquals(0xC0FFEE00L + i, sent.get(i).segment().get(ValueLayout.JAVA_LONG, 8),
                                "a write through the received fd shows in the sender's mapping");
                    }
                }
            }
        } finally {
            sent.forEach(SharedMemory::close);
        }
    }

    @ParameterizedTest(name = "{0} memfds over a socket pair")
    @ValueSource(ints = {0, 1, 8})
    void memfdsArriveOverASocketPairAsWorkingMappings(int n) {
        try (ConnectionPair pair = Connection.pair()) {
            memfdsArriveAsTheSameMemory(pair.first(), pair.second(), n);
        }
    }

    @ParameterizedTest(name = "{0} memfds over a socket path")
    @ValueSource(ints = {0, 1, 8})
    void memfdsArriveOverASocketPathAsWorkingMappings(int n, @TempDir Path dir) {
        Path path = dir.resolve("vhost.sock");
        try (Listener listener = Connection.listen(path);
             Connection frontEnd = Connection.connect(path);
             Connection backEnd = listener.accept()) {
            memfdsArriveAsTheSameMemory(frontEnd, backEnd, n);
        }
        assertFalse(Files.exists(path), "closing the listener unlinks the socket");
    }

    @Test
    void aListenerReplacesAStaleSocketFile(@TempDir Path dir) {
        Path path = dir.resolve("stale.sock");
        Connection.listen(path);   // never closed: leaves the socket file behind like a crashed process
        try (Listener listener = Connection.listen(path);
             Connection c = Connection.connect(path);
             Connection s = listener.accept()) {
            c.sendRequest(FrontendRequest.GET_FEATURES, null, false);
            try (Message m = s.receive()) {
                assertEquals(1, m.request());
            }
        }
    }

    @Test
    void connectingToNothingIsASocketConnectError(@TempDir Path dir) {
        VhostUserException e = assertThrows(VhostUserException.class, () -> Connection.connect(dir.resolve("nobody")));
        assertEquals(VhostUserError.SocketConnect, e.kind());
    }

    @Test
    void eventfdsArriveAndSignalTheSameCounter() {
        try (ConnectionPair pair = Connection.pair()) {
            List<EventFd> sent = new ArrayList<>();
            int[] fds = new int[8];
            for (int i = 0; i < 8; i++) {
                sent.add(EventFd.create());
                fds[i] = sent.get(i).fd();
            }
            pair.first().send(FrontendRequest.SET_VRING_CALL.code(), MessageHeader.VERSION,
                    new VringFdPayload(3, false).encode(), fds);
            try (Message m = pair.second().receive()) {
                assertEquals(new VringFdPayload(3, false), VringFdPayload.decode(m.payload()));
                for (int i = 0; i < 8; i++) {
                    try (EventFd received = EventFd.wrap(m.takeFd(i))) {
                        received.signal();
                        assertEquals(1, sent.get(i).drain());
                    }
                }
            }
            sent.forEach(EventFd::close);
        }
    }

    @Test
    void aReplyHasFlagsFiveAndItsPayload() {
        try (ConnectionPair pair = Connection.pair()) {
            pair.second().sendReply(FrontendRequest.GET_FEATURES, new U64Payload(0x1_7100_0000L));
            pair.second().sendAck(FrontendRequest.SET_MEM_TABLE, false);
            try (Message reply = pair.first().receive(); Message ack = pair.first().receive()) {
                assertTrue(reply.header().isReplyTo(FrontendRequest.GET_FEATURES));
                assertEquals(0x1_7100_0000L, U64Payload.decode(reply.payload()).value());
                assertEquals(0x5, ack.header().flags());
                assertEquals(U64Payload.ACK_FAILED, U64Payload.decode(ack.payload()).value());
            }
        }
    }

    @Test
    void sendingNineFdsIsRefused() {
        try (ConnectionPair pair = Connection.pair(); SharedMemory m = SharedMemory.create("nine", 4096)) {
            int[] fds = new int[9];
            java.util.Arrays.fill(fds, m.fd());
            VhostUserException e = assertThrows(VhostUserException.class,
                    () -> pair.first().send(5, 1, ByteBuffer.allocate(0), fds));
            assertEquals(VhostUserError.IncorrectFds, e.kind());
        }
    }

    @Test
    void receivingNineFdsIsRejectedAndTheStreamStaysUsable() {
        try (ConnectionPair pair = Connection.pair(); SharedMemory m = SharedMemory.create("nine", 4096)) {
            int[] fds = new int[9];
            java.util.Arrays.fill(fds, m.fd());
            pair.first().writeRaw(MessageHeader.request(5, 8, false).encode().put(0, (byte) 5), fds);
            pair.first().writeRaw(ByteBuffer.allocate(8));
            VhostUserException e = assertThrows(VhostUserException.class, () -> pair.second().receive());
            assertEquals(VhostUserError.IncorrectFds, e.kind());
            assertTrue(e.getMessage().contains("carried 9 fds, at most 8"), e.getMessage());
            pair.first().sendRequest(FrontendRequest.SET_OWNER, null, false);
            try (Message next = pair.second().receive()) {
                assertEquals(FrontendRequest.SET_OWNER.code(), next.request());
            }
        }
    }

    @Test
    void fdsThatArriveWithThePayloadInsteadOfTheHeaderAreRejected() {
        try (ConnectionPair pair = Connection.pair(); EventFd kick = EventFd.create()) {
            pair.first().writeRaw(MessageHeader.request(12, 8, false).encode());
            pair.first().writeRaw(new VringFdPayload(0, false).encode(), kick.fd());
            VhostUserException e = assertThrows(VhostUserException.class, () -> pair.second().receive());
            assertEquals(VhostUserError.IncorrectFds, e.kind());
            assertFalse(pair.second().isBroken());
        }
    }

    @Test
    void aPeerThatClosesInsideThePayloadGivesAPartialMessage() {
        try (ConnectionPair pair = Connection.pair(); EventFd fd = EventFd.create()) {
            ByteBuffer wire = ByteBuffer.allocate(12 + 4).order(ByteOrder.LITTLE_ENDIAN);
            MessageHeader.request(9, 40, false).encode(wire);
            pair.first().writeRaw(wire.putInt(7).flip(), fd.fd());
            pair.first().close();
            VhostUserException e = assertThrows(VhostUserException.class, () -> pair.second().receive());
            assertEquals(VhostUserError.PartialMessage, e.kind());
            assertTrue(e.getMessage().contains("after 4 of 40 payload bytes"), e.getMessage());
        }
    }

    @Test
    void aPeerThatClosesInsideTheHeaderGivesAPartialMessage() {
        try (ConnectionPair pair = Connection.pair()) {
            pair.first().writeRaw(ByteBuffer.allocate(5));
            pair.first().close();
            assertEquals(VhostUserError.PartialMessage, assertThrows(VhostUserException.class, () -> pair.second().receive()).kind());
        }
    }

    @Test
    void aPeerThatClosesBetweenMessagesGivesADisconnect() {
        try (ConnectionPair pair = Connection.pair()) {
            pair.first().sendRequest(FrontendRequest.GET_FEATURES, null, false);
            pair.first().close();
            try (Message m = pair.second().receive()) {
                assertEquals(1, m.request());
            }
            VhostUserException e = assertThrows(VhostUserException.class, () -> pair.second().receive());
            assertEquals(VhostUserError.Disconnect, e.kind());
        }
    }

    @Test
    void anOversizedSizeIsRejectedAndBreaksTheConnection() {
        try (ConnectionPair pair = Connection.pair(); EventFd fd = EventFd.create()) {
            pair.first().writeRaw(new MessageHeader(5, 1, 1 << 20).encode(), fd.fd());
            VhostUserException e = assertThrows(VhostUserException.class, () -> pair.second().receive());
            assertEquals(VhostUserError.OversizedMsg, e.kind());
            assertTrue(pair.second().isBroken());
            assertEquals(VhostUserError.SocketBroken, assertThrows(VhostUserException.class, () -> pair.second().receive()).kind());
        }
    }

    @Test
    void aBadVersionIsRejectedAndBreaksTheConnection() {
        try (ConnectionPair pair = Connection.pair()) {
            pair.first().writeRaw(new MessageHeader(1, 2, 0).encode());
            assertEquals(VhostUserError.InvalidMessage, assertThrows(VhostUserException.class, () -> pair.second().receive()).kind());
            assertTrue(pair.second().isBroken());
        }
    }

    @Test
    void sendingAnOversizedPayloadOrBadFlagsIsRefused() {
        try (ConnectionPair pair = Connection.pair()) {
            assertEquals(VhostUserError.OversizedMsg, assertThrows(VhostUserException.class,
                    () -> pair.first().send(5, 1, ByteBuffer.allocate(4097))).kind());
            assertEquals(VhostUserError.InvalidMessage, assertThrows(VhostUserException.class,
                    () -> pair.first().send(5, 0x11, ByteBuffer.allocate(0))).kind());
        }
    }

    @Test
    void aLargestPayloadArrivesWhole() {
        try (ConnectionPair pair = Connection.pair()) {
            byte[] bytes = new byte[MessageHeader.MAX_PAYLOAD];
            for (int i = 0; i < bytes.length; i++) {
                bytes[i] = (byte) (i * 7);
            }
            pair.first().send(44, 5, ByteBuffer.wrap(bytes));
            try (Message m = pair.second().receive()) {
                byte[] got = new byte[m.payload().remaining()];
                m.payload().get(got);
                assertArrayEquals(bytes, got);
            }
        }
    }

    @Test
    void aReaderBlockedInReceiveWakesWithDisconnectWhenTheConnectionCloses() throws Exception {
        try (ConnectionPair pair = Connection.pair()) {
            Thread closer = Thread.ofPlatform().start(() -> {
                try {
                    Thread.sleep(100);
                } catch (InterruptedException ignored) {
                    Thread.currentThread().interrupt();
                }
                pair.second().close();
            });
            VhostUserException e = assertThrows(VhostUserException.class, () -> pair.second().receive());
            assertEquals(VhostUserError.Disconnect, e.kind());
            closer.join();
        }
    }

    @Test
    void aTakenFdSurvivesTheConnectionAndClosingItDoesNotLetJunixsocketCloseAReusedNumber() {
        ConnectionPair pair = Connection.pair();
        int taken;
        try (SharedMemory m = SharedMemory.create("taken", 4096)) {
            pair.first().sendRequest(FrontendRequest.SET_LOG_FD, null, false, m.fd());
            try (Message msg = pair.second().receive()) {
                taken = msg.takeFd(0);
            }
        }
        Libc.close(taken);
        // Open fds until one reuses a number junixsocket saw: if it still tracked its copies,
        // closing the socket would close these.
        List<EventFd> reusers = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            reusers.add(EventFd.create());
        }
        pair.close();
        for (EventFd e : reusers) {
            assertTrue(Libc.fcntl(e.fd(), Libc.F_GETFD, 0) >= 0, "fd " + e.fd() + " is still open");
            e.close();
        }
    }

    @Test
    void receivedFdsAreCloseOnExec() {
        try (ConnectionPair pair = Connection.pair(); EventFd e = EventFd.create()) {
            pair.first().sendRequest(FrontendRequest.SET_VRING_KICK, new VringFdPayload(0, false), false, e.fd());
            try (Message m = pair.second().receive()) {
                assertEquals(Libc.FD_CLOEXEC, Libc.fcntl(m.fd(0), Libc.F_GETFD, 0) & Libc.FD_CLOEXEC);
            }
        }
    }
}
