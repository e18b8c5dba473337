package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;

/**
 * What both request enums know about a message: its code and the shape of the request and of its
 * reply. {@link FrontendRequest} codes travel on the main channel, {@link BackendRequest} codes on the
 * back-end channel; the two code spaces overlap.
 */
public sealed interface RequestType permits FrontendRequest, BackendRequest {
    /** {@link #requiredFeature()} of a request every peer must support. */
    int NO_FEATURE = -1;

    /** The request's wire shape. */
    RequestShape shape();

    /** The u32 request code in the header. */
    default int code() {
        return shape().code();
    }

    /** The spec's name without the {@code VHOST_USER_} prefix, e.g. {@code SET_VRING_KICK}. */
    String name();

    /** The sizes the request's payload may have. */
    default SizeRule payload() {
        return shape().payload();
    }

    /** How many fds may come with the request. */
    default FdRule fds() {
        return shape().fds();
    }

    /** The protocol feature bit ({@link ProtocolFeatures}) that must be negotiated, or {@link #NO_FEATURE}. */
    default int requiredFeature() {
        return shape().requiredFeature();
    }

    /**
     * True if the request always gets a reply of its own (GET_*, GET_VRING_BASE, ...); false if it is
     * answered only by a REPLY_ACK ack when NEED_REPLY is set and REPLY_ACK negotiated.
     */
    default boolean alwaysReplies() {
        return shape().reply().own();
    }

    /** The sizes the reply payload may have; {@link SizeRule#exactly} 8 (a u64 ack) when there is none of its own. */
    default SizeRule replyPayload() {
        return shape().reply().payload();
    }

    /** How many fds may come with the reply. */
    default FdRule replyFds() {
        return shape().reply().fds();
    }

    /** True if {@link #requiredFeature()} is a real bit. */
    default boolean needsFeature() {
        return requiredFeature() != NO_FEATURE;
    }

    /**
     * Checks a received request's payload size and fd count against this type's rules.
     *
     * @throws VhostUserException InvalidMessage for a wrong size, IncorrectFds for a wrong fd count
     */
    default void checkRequest(long payloadSize, int fdCount) {
        payload().check(name(), payloadSize);
        fds().check(name(), fdCount);
    }

    /** Checks a received reply's payload size and fd count against this type's rules. */
    default void checkReply(long payloadSize, int fdCount) {
        replyPayload().check(name() + " reply", payloadSize);
        replyFds().check(name() + " reply", fdCount);
    }

    /** Throws {@link VhostUserError#InvalidOperation} unless {@link #requiredFeature()} is in {@code acked}. */
    default void checkFeature(long ackedProtocolFeatures) {
        if (needsFeature() && !ProtocolFeatures.has(ackedProtocolFeatures, requiredFeature())) {
            throw new VhostUserException(VhostUserError.InvalidOperation, name() + " needs protocol feature "
                    + ProtocolFeatures.name(requiredFeature()) + ", negotiated "
                    + ProtocolFeatures.describe(ackedProtocolFeatures));
        }
    }
}
