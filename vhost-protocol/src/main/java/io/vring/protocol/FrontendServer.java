package io.vring.protocol;

import io.vring.protocol.message.BackendRequest;
import io.vring.protocol.message.MessageHeader;
import io.vring.protocol.message.ProtocolFeatures;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringState;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Objects;
import java.util.Optional;

/**
 * The front-end's side of the back-end channel (the socket handed over with SET_BACKEND_REQ_FD): a
 * thread that reads the back-end's requests, hands CONFIG_CHANGE_MSG, VRING_CALL and VRING_ERR to a
 * {@link Listener}, and answers NEED_REPLY with a u64 ack (0 done, 1 refused).
 *
 * <p>Refused, with a log line and a failure ack when one is asked for: every other request (IOTLB,
 * host notifiers, shared objects, shmem maps: a JVM front-end has no guest to apply them to), a
 * request whose protocol feature was not negotiated, a ring index over 255, a listener that throws.
 * SHARED_OBJECT_LOOKUP, which always has a reply, gets u64 1 and no fd. A message that is not a
 * request, has an unknown code or the wrong size or fds is refused too; the channel stays open. A
 * framing error that loses the stream, or the back-end closing the channel, ends the thread; the
 * main channel is not affected (the back-end channel is optional).
 *
 * <p>The listener runs on the server's thread; it must not block for long (the back-end may be
 * waiting for the ack).
 */
public final class FrontendServer implements AutoCloseable {
    private static final Logger LOG = System.getLogger(FrontendServer.class.getName());
    private static final long JOIN_MILLIS = 2_000;

    /** What the back-end tells the front-end. Each method runs on the server's thread. */
    public interface Listener {
        /** BACKEND_CONFIG_CHANGE_MSG: the config space changed (read it again with GET_CONFIG). */
        default void configChanged() {
        }

        /** BACKEND_VRING_CALL: ring {@code index} has used buffers (in-band call). */
        default void vringCall(int index) {
        }

        /** BACKEND_VRING_ERR: ring {@code index} broke (in-band error). */
        default void vringError(int index) {
        }
    }

    private final Connection channel;
    private final long protocolFeatures;
    private final Listener listener;
    private final Thread thread;
    private volatile boolean closing;
    private volatile String endReason;

    private FrontendServer(Connection channel, long protocolFeatures, Listener listener, String name) {
        this.channel = channel;
        this.protocolFeatures = protocolFeatures;
        this.listener = listener;
        this.thread = Thread.ofPlatform().daemon().name(name).unstarted(this::run);
    }

    /**
     * Starts serving {@code channel} (which the server now owns) for a connection that negotiated
     * {@code protocolFeatures}.
     */
    public static FrontendServer start(Connection channel, long protocolFeatures, Listener listener) {
        FrontendServer server = new FrontendServer(channel, protocolFeatures, Objects.requireNonNull(listener, "listener"),
                "vhost-frontend-server");
        server.thread.start();
        return server;
    }

    /** True while the thread serves the channel. */
    public boolean isRunning() {
        return thread.isAlive();
    }

    /** Why the thread ended (the back-end closed the channel, a framing error), or null while it runs. */
    public String endReason() {
        return endReason;
    }

    /** Closes the channel and waits for the thread to end. Idempotent. */
    @Override
    public void close() {
        closing = true;
        channel.close();
        if (Thread.currentThread() != thread) {
            try {
                thread.join(JOIN_MILLIS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            if (thread.isAlive()) {
                LOG.log(Level.WARNING, "back-end channel thread did not end within {0} ms", JOIN_MILLIS);
            }
        }
    }

    private void run() {
        try {
            for (;;) {
                try (Message m = channel.receive()) {
                    serve(m);
                } catch (VhostUserException e) {
                    if (e.kind() == VhostUserError.IncorrectFds) {
                        LOG.log(Level.WARNING, "back-end channel: {0}", e.getMessage());
                        continue; // the message was read to its end and its fds closed: the stream is intact
                    }
                    throw e;
                }
            }
        } catch (VhostUserException e) {
            endReason = e.getMessage();
            if (!closing && e.kind() != VhostUserError.Disconnect) {
                LOG.log(Level.WARNING, "back-end channel ended: {0}", e.getMessage());
            } else {
                LOG.log(Level.DEBUG, "back-end channel ended: {0}", e.getMessage());
            }
        } catch (RuntimeException | Error e) {
            endReason = e.toString();
            LOG.log(Level.ERROR, "back-end channel thread failed", e);
        } finally {
            channel.close();
        }
    }

    private void serve(Message m) {
        MessageHeader h = m.header();
        if (h.isReply()) {
            LOG.log(Level.WARNING, "back-end channel: ignoring a reply (code {0}); the front-end sends no requests here",
                    Integer.toUnsignedString(h.request()));
            return;
        }
        Optional<BackendRequest> known = BackendRequest.of(h.request());
        if (known.isEmpty()) {
            refuse(m, null, "unknown back-end request code " + Integer.toUnsignedString(h.request()));
            return;
        }
        BackendRequest type = known.get();
        boolean ok;
        try {
            type.checkRequest(h.sizeUnsigned(), m.fdCount());
            type.checkFeature(protocolFeatures);
            if (m.fdCount() > 0 && !ProtocolFeatures.has(protocolFeatures, ProtocolFeatures.BACKEND_SEND_FD)) {
                throw new VhostUserException(VhostUserError.InvalidOperation,
                        type.name() + " carries fds but BACKEND_SEND_FD was not negotiated");
            }
            ok = dispatch(type, m);
        } catch (VhostUserException e) {
            refuse(m, type, e.getMessage());
            return;
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "back-end channel: listener failed on " + type.name(), e);
            refuse(m, type, "listener failed: " + e);
            return;
        }
        if (!ok) {
            refuse(m, type, type.name() + " is not supported by this front-end");
            return;
        }
        if (h.needsReply()) {
            channel.sendAck(type, true);
        }
    }

    /** Handles {@code type}; false for a request this front-end does not implement. */
    private boolean dispatch(BackendRequest type, Message m) {
        switch (type) {
            case CONFIG_CHANGE_MSG -> listener.configChanged();
            case VRING_CALL -> listener.vringCall(ringIndex(type, m));
            case VRING_ERR -> listener.vringError(ringIndex(type, m));
            default -> {
                return false;
            }
        }
        return true;
    }

    private static int ringIndex(BackendRequest type, Message m) {
        VringState state = VringState.decode(m.payload());
        if (state.indexUnsigned() > 0xFF) {
            throw new VhostUserException(VhostUserError.VringIndexNotFound,
                    type.name() + " for ring " + state.indexUnsigned() + ", at most 255");
        }
        return state.index();
    }

    /** Logs the refusal and answers it: a failure ack on NEED_REPLY, or u64 1 for a request that always replies. */
    private void refuse(Message m, BackendRequest type, String reason) {
        LOG.log(Level.WARNING, "back-end channel: refused {0}: {1}", type == null ? "request" : type.name(), reason);
        boolean replies = type != null && type.alwaysReplies();
        if (m.header().needsReply() || replies) {
            ByteBuffer ack = ByteBuffer.allocate(U64Payload.SIZE).order(ByteOrder.LITTLE_ENDIAN).putLong(0, U64Payload.ACK_FAILED);
            channel.send(m.request(), MessageHeader.VERSION | MessageHeader.REPLY, ack);
        }
    }
}
