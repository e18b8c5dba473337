package io.vring.engine.memory;

/** An address or range that guest memory does not back: outside every region, or running into a hole. */
public final class GuestMemoryException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public GuestMemoryException(String message) {
        super(message);
    }
}
