package io.vring.engine.notify;

import io.vring.engine.os.Libc;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.locks.LockSupport;

/**
 * A Linux eventfd: a kernel counter that {@link #signal()} adds to and {@link #drain()} reads and
 * resets, and the kick, call and error notifications of vhost-user. One end may be in another process.
 *
 * <p><b>Ordering.</b> A write to an eventfd and the read or poll that observes it synchronise through
 * the kernel, so memory written before {@code signal()} is visible to a thread that returns from
 * {@code await()} or {@code drain()} because of it. Rings do not rely on this: their indices carry
 * the ordering; a notification only says "look again".
 *
 * <p><b>Closing.</b> An fd number is reused by the next open anywhere in the process, so a signal
 * that raced with close could write 8 bytes into someone else's file. To prevent that every
 * operation registers itself in a use count (one atomic add in, one out; no allocation), and
 * {@link #close()} first marks the eventfd closed, so new operations do nothing, then wakes any
 * {@code await()} in progress, waits for the operations already inside to leave, and only then
 * closes the fd. After close, {@code signal()} does nothing, {@code drain()} returns 0 and
 * {@code await()} returns false: a notifier may briefly outlive its ring during teardown.
 */
public final class EventFd implements Notifier, AutoCloseable {
    private static final int CLOSED = 0x8000_0000;
    private static final int USERS = 0x7fff_ffff;
    private static final VarHandle STATE;

    static {
        try {
            STATE = MethodHandles.lookup().findVarHandle(EventFd.class, "state", int.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final int fd;
    /** False for an adopted blocking eventfd: drain must poll first or it would block on an empty counter. */
    private final boolean nonBlocking;
    /** CLOSED bit | number of operations inside. Only changed through {@link #STATE}. */
    @SuppressWarnings("unused")
    private volatile int state;

    private EventFd(int fd, boolean nonBlocking) {
        this.fd = fd;
        this.nonBlocking = nonBlocking;
    }

    /** A new eventfd with counter 0, EFD_CLOEXEC | EFD_NONBLOCK. */
    public static EventFd create() {
        return new EventFd(Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK), true);
    }

    /**
     * Adopts an eventfd received from a peer; {@link #close()} will close it. The fd's file status
     * flags are left alone (they are shared with the peer); a blocking one costs drain an extra poll.
     *
     * @throws io.vring.engine.os.NativeCallException with EBADF if {@code fd} is not open
     */
    public static EventFd wrap(int fd) {
        int statusFlags = Libc.fcntl(fd, Libc.F_GETFL, 0);
        return new EventFd(fd, (statusFlags & Libc.O_NONBLOCK) != 0);
    }

    /** The fd; owned by this object, valid until {@link #close()}. */
    public int fd() {
        return fd;
    }

    /**
     * Adds 1 to the counter, waking a thread in {@link #await} or a peer polling the fd. Does not
     * allocate, does not block (a saturated counter is left as is: its reader is due anyway).
     * Does nothing once closed.
     */
    @Override
    public void signal() {
        if (!enter()) {
            return;
        }
        try {
            Libc.eventfdWrite(fd, 1);
        } finally {
            exit();
        }
    }

    /**
     * Reads and resets the counter without blocking.
     *
     * @return the signals since the last drain (unsigned), 0 if none or once closed
     */
    public long drain() {
        if (!enter()) {
            return 0;
        }
        try {
            return readCounter();
        } finally {
            exit();
        }
    }

    /**
     * Waits until the eventfd is signalled or {@code timeoutMillis} passes, then drains it.
     *
     * @param timeoutMillis 0 to check without waiting, negative to wait without limit
     * @return true if signals were drained; false on timeout, or if the eventfd was (or got) closed
     */
    public boolean await(long timeoutMillis) {
        if (!enter()) {
            return false;
        }
        try {
            int timeout = (int) Math.max(-1, Math.min(timeoutMillis, Integer.MAX_VALUE));
            if (Libc.poll(fd, Libc.POLLIN, timeout) == 0 || isClosed()) {
                return false;
            }
            return readCounter() != 0;
        } finally {
            exit();
        }
    }

    /** True once {@link #close()} has begun; operations then do nothing. */
    public boolean isClosed() {
        return ((int) STATE.getVolatile(this) & CLOSED) != 0;
    }

    /**
     * Closes the fd once; later calls return at once. Blocks until the operations already in progress
     * on other threads have left (an {@code await} is woken for that by a signal, which a peer on the
     * other end may see as one spurious notification, which virtio permits).
     */
    @Override
    public void close() {
        int s;
        do {
            s = (int) STATE.getVolatile(this);
            if ((s & CLOSED) != 0) {
                return;
            }
        } while (!STATE.compareAndSet(this, s, s | CLOSED));
        while (((int) STATE.getVolatile(this) & USERS) != 0) {
            // Repeat the wake-up: a concurrent drain() may have eaten the previous one before the
            // awaiting thread's poll saw it.
            Libc.eventfdWrite(fd, 1);
            LockSupport.parkNanos(100_000);
        }
        Libc.close(fd);
    }

    @Override
    public String toString() {
        return "EventFd[fd=" + fd + (isClosed() ? ", closed]" : "]");
    }

    private long readCounter() {
        if (!nonBlocking && Libc.poll(fd, Libc.POLLIN, 0) == 0) {
            return 0;
        }
        long value = Libc.eventfdRead(fd);
        return value == -1 ? 0 : value;
    }

    /** Registers an operation; false (and nothing registered) once closed. */
    private boolean enter() {
        int s = (int) STATE.getAndAdd(this, 1);
        if ((s & CLOSED) != 0) {
            STATE.getAndAdd(this, -1);
            return false;
        }
        return true;
    }

    private void exit() {
        STATE.getAndAdd(this, -1);
    }
}
