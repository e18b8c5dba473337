package io.vring.protocol;

import io.vring.protocol.message.BackendRequest;
import io.vring.protocol.message.Payload;
import io.vring.protocol.message.ProtocolFeatures;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringState;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.time.Duration;

/**
 * The back-end's handle for requests to the front-end on the back-end channel (the socket the
 * front-end sent with SET_BACKEND_REQ_FD): config change, in-band vring call and error.
 *
 * <p>With REPLY_ACK negotiated each request goes with NEED_REPLY and returns once the front-end has
 * acked it (a non-zero ack is {@link VhostUserError#ReqHandlerError}); without it a request is sent
 * and forgotten. An ack is awaited at most the reply timeout (default
 * {@value #DEFAULT_REPLY_TIMEOUT_MILLIS} ms). A front-end that closes the channel, cuts a reply short
 * or does not answer in time breaks the client: that call and every later one throw a
 * {@link VhostUserException} (SocketBroken once broken); the main channel is not affected. A refused
 * request leaves it usable.
 *
 * <p>Thread-safe: ring workers (in-band calls) and the control thread (config change) may share it;
 * requests go one at a time.
 */
public final class FrontendClient implements AutoCloseable {
    /** How long an ack is awaited unless the caller says otherwise. */
    public static final long DEFAULT_REPLY_TIMEOUT_MILLIS = 5_000;

    private static final Logger LOG = System.getLogger(FrontendClient.class.getName());

    private final Connection channel;
    private final long protocolFeatures;
    private final long replyTimeoutMillis;
    private volatile String brokenReason;

    /**
     * A client over {@code channel} (which it now owns) for a connection that negotiated
     * {@code protocolFeatures}.
     */
    public FrontendClient(Connection channel, long protocolFeatures, Duration replyTimeout) {
        if (replyTimeout.toMillis() <= 0) {
            throw new IllegalArgumentException("reply timeout must be positive, got " + replyTimeout);
        }
        this.channel = channel;
        this.protocolFeatures = protocolFeatures;
        this.replyTimeoutMillis = replyTimeout.toMillis();
    }

    /**
     * A client over the socket fd that came with SET_BACKEND_REQ_FD (taken from its message: the
     * client owns it, also if this throws).
     */
    public static FrontendClient adopt(int socketFd, long protocolFeatures) {
        return new FrontendClient(Connection.adopt(socketFd), protocolFeatures, Duration.ofMillis(DEFAULT_REPLY_TIMEOUT_MILLIS));
    }

    /** BACKEND_CONFIG_CHANGE_MSG (CONFIG): the front-end should read the config space again. */
    public void configChanged() {
        send(BackendRequest.CONFIG_CHANGE_MSG, null);
    }

    /** BACKEND_VRING_CALL (INBAND_NOTIFICATIONS): ring {@code index} has used buffers. */
    public void vringCall(int index) {
        send(BackendRequest.VRING_CALL, new VringState(index, 0));
    }

    /** BACKEND_VRING_ERR (INBAND_NOTIFICATIONS): ring {@code index} broke. */
    public void vringError(int index) {
        send(BackendRequest.VRING_ERR, new VringState(index, 0));
    }

    /** True once a failed exchange made the channel unusable. */
    public boolean isBroken() {
        return brokenReason != null;
    }

    /** Closes the channel. Idempotent. */
    @Override
    public void close() {
        if (brokenReason == null) {
            brokenReason = "closed";
        }
        channel.close();
    }

    private synchronized void send(BackendRequest type, Payload payload) {
        String reason = brokenReason;
        if (reason != null) {
            throw new VhostUserException(VhostUserError.SocketBroken, "back-end channel unusable: " + reason);
        }
        type.checkFeature(protocolFeatures);
        boolean wantsAck = ProtocolFeatures.has(protocolFeatures, ProtocolFeatures.REPLY_ACK);
        try {
            channel.sendRequest(type, payload, wantsAck);
        } catch (VhostUserException e) {
            throw broken(e);
        }
        if (!wantsAck) {
            return;
        }
        long ack;
        try (Message reply = channel.receive(replyTimeoutMillis)) {
            if (!reply.header().isReplyTo(type)) {
                throw new VhostUserException(VhostUserError.InvalidMessage, "ack for " + type.name() + " (code "
                        + type.code() + ") came as code " + Integer.toUnsignedString(reply.request()) + " flags 0x"
                        + Integer.toHexString(reply.header().flags()));
            }
            type.checkReply(reply.header().sizeUnsigned(), reply.fdCount());
            ack = U64Payload.decode(reply.payload()).value();
        } catch (VhostUserException e) {
            if (e.kind() == VhostUserError.SocketRetry) {
                channel.close(); // a late ack must not be read as the answer to the next request
                throw broken(new VhostUserException(VhostUserError.SocketBroken,
                        "front-end did not ack " + type.name() + " within " + replyTimeoutMillis + " ms", e));
            }
            throw broken(e);
        }
        if (ack != U64Payload.ACK_OK) {
            throw new VhostUserException(VhostUserError.ReqHandlerError,
                    "front-end refused " + type.name() + " (ack 0x" + Long.toHexString(ack) + ")");
        }
    }

    private VhostUserException broken(VhostUserException e) {
        if (brokenReason == null) {
            brokenReason = e.getMessage();
            LOG.log(Level.WARNING, "back-end channel broken: {0}", e.getMessage());
        }
        return e;
    }
}
