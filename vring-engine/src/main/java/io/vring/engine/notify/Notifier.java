package io.vring.engine.notify;

/**
 * Tells the other side of a queue that something happened: a kick (driver to device), a call
 * (device to driver) or an error. An {@link EventFd} is one; in busy-poll mode the peer polls and
 * {@link #NONE} is used.
 */
@FunctionalInterface
public interface Notifier {
    /** A notifier that does nothing: the peer busy-polls. */
    Notifier NONE = () -> { };

    /** Signals the peer. Must not block for long and must not allocate. */
    void signal();
}
