package io.vring.backends.vsock.driver;

import java.io.IOException;

/** A vsock operation that failed, with the kind of failure a caller can act on. */
public final class VsockException extends IOException {
    /** What went wrong. */
    public enum Kind {
        /** The peer answered the connection request with RST: nobody listens on the port. */
        REFUSED,
        /** The peer reset an established connection (RST). */
        RESET,
        /** The operation did not complete in time (no answer, no credit, no buffer). */
        TIMED_OUT,
        /** The stream or the driver is closed, or the stream's output was shut down. */
        CLOSED,
        /** The device broke a ring; the driver cannot go on. */
        BROKEN
    }

    private final Kind kind;

    public VsockException(Kind kind, String message) {
        super(kind + ": " + message);
        this.kind = kind;
    }

    public Kind kind() {
        return kind;
    }
}
