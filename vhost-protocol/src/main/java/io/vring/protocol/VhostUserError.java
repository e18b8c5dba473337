package io.vring.protocol;

/**
 * The kinds of vhost-user failure, named as in rust-vmm {@code vhost} and crosvm {@code vmm_vhost} so a
 * caller can act on them: retry, reconnect, refuse one request, or drop the connection.
 */
public enum VhostUserError {
    /** The peer closed the connection (a read returned end-of-stream before a message began). */
    Disconnect,
    /** The peer asked to end the session cleanly before sending a header. */
    ClientExit,
    /** The peer closed the connection in the middle of a message (header or payload cut short). */
    PartialMessage,
    /** A header announced a payload larger than {@link io.vring.protocol.message.MessageHeader#MAX_PAYLOAD}. */
    OversizedMsg,
    /** A receive buffer could not hold what arrived (kept for parity with crosvm's Tube transport). */
    RecvBufferTooSmall,
    /** A message carried more or fewer fds than its request allows. */
    IncorrectFds,
    /** A header or payload is malformed: bad version or flags, unknown code, wrong size. */
    InvalidMessage,
    /** A well-formed payload holds a value the request does not allow. */
    InvalidParam,
    /** A request arrived in a state or without a feature that allows it. */
    InvalidOperation,
    /** The two ends disagree on features (a bit set that was not offered, a needed bit missing). */
    FeatureMismatch,
    /** A ring index is outside the device's queues. */
    VringIndexNotFound,
    /** The handler of a request failed. */
    ReqHandlerError,
    /** The back-end reported a failure (non-zero ack or reply). */
    BackendInternalError,
    /** The connection is dead (ECONNRESET, EPIPE, or a desynchronised stream). */
    SocketBroken,
    /** A connection could not be made (EACCES, ECONNREFUSED, no such socket). */
    SocketConnect,
    /** Any other socket failure. */
    SocketError,
    /** A transient socket condition (EAGAIN, EINTR, ENOBUFS, ENOMEM): try the I/O again. */
    SocketRetry;

    // Linux errno values (x86_64 and arm64 agree).
    private static final int EINTR = 4;
    private static final int EAGAIN = 11; // == EWOULDBLOCK on Linux
    private static final int ENOMEM = 12;
    private static final int EACCES = 13;
    private static final int EPIPE = 32;
    private static final int ECONNRESET = 104;
    private static final int ENOBUFS = 105;

    /**
     * The kind a failed socket call with {@code errno} stands for, as rust-vmm maps it: transient
     * conditions retry, a reset or broken pipe means the peer is gone, EACCES means we may not connect.
     */
    public static VhostUserError fromErrno(int errno) {
        return switch (errno) {
            case EAGAIN, EINTR, ENOBUFS, ENOMEM -> SocketRetry;
            case ECONNRESET, EPIPE -> SocketBroken;
            case EACCES -> SocketConnect;
            default -> SocketError;
        };
    }

    /** True only for {@link #SocketRetry}: the same I/O may succeed if tried again. */
    public boolean isRetryable() {
        return this == SocketRetry;
    }

    /**
     * True if the connection is lost and a front-end that supports it should reconnect (rust-vmm's
     * {@code should_reconnect}): a partial message, a broken socket or a back-end failure.
     */
    public boolean shouldReconnect() {
        return this == PartialMessage || this == SocketBroken || this == BackendInternalError;
    }
}
