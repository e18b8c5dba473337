package io.vring.protocol;

import io.vring.engine.notify.EventFd;
import io.vring.protocol.message.BackendRequest;
import io.vring.protocol.message.MessageHeader;
import io.vring.protocol.message.ProtocolFeatures;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringState;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The back-end channel from both ends: {@link FrontendClient} (the back-end's requests) against
 * {@link FrontendServer} (the front-end's answers), and each against a raw peer that misbehaves.
 */
class BackendChannelTest {
    private static final long ALL = ProtocolFeatures.bit(ProtocolFeatures.BACKEND_REQ)
            | ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK) | ProtocolFeatures.bit(ProtocolFeatures.CONFIG)
            | ProtocolFeatures.bit(ProtocolFeatures.INBAND_NOTIFICATIONS);
    private static final Duration LIMIT = Duration.ofSeconds(10);

    /** Records what reached the front-end. */
    private static final class Recorder implements FrontendServer.Listener {
        final List<String> events = new CopyOnWriteArrayList<>();

        @Override
        public void configChanged() {
            events.add("config");
        }

        @Override
        public void vringCall(int index) {
            events.add("call " + index);
        }

        @Override
        public void vringError(int index) {
            if (index == 13) {
                throw new IllegalStateException("the listener cannot handle ring 13");
            }
            events.add("err " + index);
        }
    }

    @Test
    void everyRequestReachesTheListenerAndIsAckedBeforeTheCallReturns() {
        assertTimeoutPreemptively(LIMIT, () -> {
            ConnectionPair pair = Connection.pair();
            Recorder recorder = new Recorder();
            try (FrontendServer server = FrontendServer.start(pair.first(), ALL, recorder);
                 FrontendClient client = new FrontendClient(pair.second(), ALL, Duration.ofSeconds(2))) {
                client.configChanged();
                client.vringCall(3);
                client.vringError(255);
                // Acked: every event is there as soon as the calls return.
                assertEquals(List.of("config", "call 3", "err 255"), recorder.events);
                // A listener that throws is a refusal the back-end can act on; the channel carries on.
                VhostUserException e = assertThrows(VhostUserException.class, () -> client.vringError(13));
                assertEquals(VhostUserError.ReqHandlerError, e.kind());
                assertFalse(client.isBroken());
                client.vringCall(0);
                assertEquals("call 0", recorder.events.getLast());
                assertTrue(server.isRunning());
            }
        });
    }

    @Test
    void withoutReplyAckRequestsAreFireAndForget() {
        assertTimeoutPreemptively(LIMIT, () -> {
            long features = ProtocolFeatures.bit(ProtocolFeatures.BACKEND_REQ) | ProtocolFeatures.bit(ProtocolFeatures.CONFIG);
            ConnectionPair pair = Connection.pair();
            try (FrontendClient client = new FrontendClient(pair.second(), features, Duration.ofSeconds(2));
                 Connection frontend = pair.first()) {
                client.configChanged();
                try (Message m = frontend.receive(2_000)) {
                    assertEquals(BackendRequest.CONFIG_CHANGE_MSG.code(), m.request());
                    assertEquals(MessageHeader.VERSION, m.header().flags());
                    assertEquals(0, m.header().size());
                }
                // In-band calls need INBAND_NOTIFICATIONS: refused before anything is sent.
                assertEquals(VhostUserError.InvalidOperation,
                        assertThrows(VhostUserException.class, () -> client.vringCall(0)).kind());
            }
        });
    }

    @Test
    void aFrontendThatNeverAcksBreaksTheClientInsteadOfHangingIt() {
        assertTimeoutPreemptively(LIMIT, () -> {
            ConnectionPair pair = Connection.pair();
            try (FrontendClient client = new FrontendClient(pair.second(), ALL, Duration.ofMillis(300));
                 Connection silent = pair.first()) {
                VhostUserException e = assertThrows(VhostUserException.class, client::configChanged);
                assertEquals(VhostUserError.SocketBroken, e.kind());
                assertTrue(client.isBroken());
                assertEquals(VhostUserError.SocketBroken,
                        assertThrows(VhostUserException.class, () -> client.vringCall(1)).kind());
            }
        });
    }

    @Test
    void anAckWithTheWrongCodeBreaksTheClient() {
        assertTimeoutPreemptively(LIMIT, () -> {
            ConnectionPair pair = Connection.pair();
            try (FrontendClient client = new FrontendClient(pair.second(), ALL, Duration.ofSeconds(2));
                 Connection frontend = pair.first()) {
                Thread peer = Thread.ofVirtual().start(() -> {
                    try (Message m = frontend.receive(2_000)) {
                        frontend.sendAck(BackendRequest.VRING_ERR, true); // answers VRING_CALL as if it were ERR
                    }
                });
                assertEquals(VhostUserError.InvalidMessage,
                        assertThrows(VhostUserException.class, () -> client.vringCall(0)).kind());
                peer.join();
                assertTrue(client.isBroken());
            }
        });
    }

    @Test
    void serverRefusesWhatItDoesNotImplementAndKeepsServing() {
        assertTimeoutPreemptively(LIMIT, () -> {
            ConnectionPair pair = Connection.pair();
            Recorder recorder = new Recorder();
            long features = ALL | ProtocolFeatures.bit(ProtocolFeatures.SHARED_OBJECT);
            try (FrontendServer server = FrontendServer.start(pair.first(), features, recorder);
                 Connection backend = pair.second();
                 EventFd stray = EventFd.create()) {
                // IOTLB miss: not implemented (no IOMMU here): failure ack.
                backend.send(BackendRequest.IOTLB_MSG.code(), MessageHeader.VERSION | MessageHeader.NEED_REPLY,
                        ByteBuffer.allocate(32));
                assertAck(backend, BackendRequest.IOTLB_MSG.code(), U64Payload.ACK_FAILED);
                // SHARED_OBJECT_LOOKUP always has a reply: u64 failure, no fd.
                ByteBuffer uuid = ByteBuffer.allocate(16);
                backend.send(BackendRequest.SHARED_OBJECT_LOOKUP.code(), MessageHeader.VERSION, uuid);
                assertAck(backend, BackendRequest.SHARED_OBJECT_LOOKUP.code(), U64Payload.ACK_FAILED);
                // An unknown code, with NEED_REPLY: refused with a failure ack in its own code.
                backend.send(77, MessageHeader.VERSION | MessageHeader.NEED_REPLY, ByteBuffer.allocate(0));
                assertAck(backend, 77, U64Payload.ACK_FAILED);
                // VRING_CALL of the wrong size: refused.
                backend.send(BackendRequest.VRING_CALL.code(), MessageHeader.VERSION | MessageHeader.NEED_REPLY,
                        ByteBuffer.allocate(4));
                assertAck(backend, BackendRequest.VRING_CALL.code(), U64Payload.ACK_FAILED);
                // CONFIG_CHANGE_MSG with an fd (BACKEND_SEND_FD not negotiated): refused, fd closed.
                backend.send(BackendRequest.CONFIG_CHANGE_MSG.code(), MessageHeader.VERSION | MessageHeader.NEED_REPLY,
                        ByteBuffer.allocate(0), stray.fd());
                assertAck(backend, BackendRequest.CONFIG_CHANGE_MSG.code(), U64Payload.ACK_FAILED);
                // A ring index over 255.
                backend.sendRequest(BackendRequest.VRING_CALL, new VringState(256, 0), true);
                assertAck(backend, BackendRequest.VRING_CALL.code(), U64Payload.ACK_FAILED);
                // Still serving, and nothing bad reached the listener.
                backend.sendRequest(BackendRequest.VRING_CALL, new VringState(2, 0), true);
                assertAck(backend, BackendRequest.VRING_CALL.code(), U64Payload.ACK_OK);
                assertEquals(List.of("call 2"), recorder.events);
                assertTrue(server.isRunning());
            }
        });
    }

    @Test
    void serverEndsWhenTheBackendClosesTheChannel() {
        assertTimeoutPreemptively(LIMIT, () -> {
            ConnectionPair pair = Connection.pair();
            try (FrontendServer server = FrontendServer.start(pair.first(), ALL, new Recorder())) {
                pair.second().close();
                long deadline = System.nanoTime() + 5_000_000_000L;
                while (server.isRunning() && System.nanoTime() < deadline) {
                    Thread.sleep(5);
                }
                assertFalse(server.isRunning());
                assertTrue(server.endReason().startsWith("Disconnect"), server.endReason());
            }
        });
    }

    private static void assertAck(Connection backend, int code, long value) {
        try (Message m = backend.receive(2_000)) {
            assertEquals(code, m.request());
            assertEquals(MessageHeader.VERSION | MessageHeader.REPLY, m.header().flags());
            assertEquals(0, m.fdCount());
            assertEquals(value, m.payload().order(ByteOrder.LITTLE_ENDIAN).getLong(0));
        }
    }
}
