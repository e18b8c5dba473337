package io.vring.protocol;

import java.util.Objects;

/**
 * A vhost-user failure with a {@link VhostUserError} kind the caller can act on. The message names the
 * request, the field and the value ({@code "SET_VRING_KICK expects 1 fd, got 0"}).
 */
public final class VhostUserException extends RuntimeException {
    private final VhostUserError kind;

    public VhostUserException(VhostUserError kind, String message) {
        super(kind + ": " + message);
        this.kind = Objects.requireNonNull(kind, "kind");
    }

    public VhostUserException(VhostUserError kind, String message, Throwable cause) {
        super(kind + ": " + message, cause);
        this.kind = Objects.requireNonNull(kind, "kind");
    }

    /** What went wrong, in terms a caller can branch on. */
    public VhostUserError kind() {
        return kind;
    }

    /** Same as {@code kind().isRetryable()}. */
    public boolean isRetryable() {
        return kind.isRetryable();
    }
}
