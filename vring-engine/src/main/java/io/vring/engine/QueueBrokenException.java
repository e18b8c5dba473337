package io.vring.engine;

/**
 * Thrown by a driver-side call on a queue that has been marked broken. The device side never
 * throws it from its data path: a broken device queue is a state ({@link DeviceQueue#isBroken()}),
 * and {@code poll()} returns null.
 */
public final class QueueBrokenException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public QueueBrokenException(String reason) {
        super(reason);
    }
}
