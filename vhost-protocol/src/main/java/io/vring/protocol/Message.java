package io.vring.protocol;

import io.vring.engine.os.Libc;
import io.vring.protocol.message.MessageHeader;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * One received message: its header, its payload and the fds that came with it.
 *
 * <p><b>fd ownership.</b> Every fd belongs to this message until {@link #takeFd} hands it to the caller;
 * {@link #close()} closes the ones nobody took. A handler therefore opens the message in
 * try-with-resources, takes the fds it keeps, and rejected or unexpected fds are closed whatever path
 * the handler leaves by. The fds are close-on-exec.
 *
 * <p>Not thread-safe: a message belongs to the thread that received it.
 */
public final class Message implements AutoCloseable {
    private static final int TAKEN = -1;

    private final MessageHeader header;
    private final ByteBuffer payload;
    private final int[] fds;

    Message(MessageHeader header, ByteBuffer payload, int[] fds) {
        this.header = header;
        this.payload = payload.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
        this.fds = fds;
    }

    /** The header as received (already checked: version 1, no reserved bits, size within the limit). */
    public MessageHeader header() {
        return header;
    }

    /** The request code. */
    public int request() {
        return header.request();
    }

    /** A read-only little-endian view of the payload, positioned at its first byte. */
    public ByteBuffer payload() {
        return payload.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** The number of fds that came with the message (taken or not). */
    public int fdCount() {
        return fds.length;
    }

    /** Fd {@code i} without taking it: the message still closes it. */
    public int fd(int i) {
        int fd = fds[i];
        if (fd == TAKEN) {
            throw new IllegalStateException("fd " + i + " of request " + header.request() + " was already taken");
        }
        return fd;
    }

    /** Takes fd {@code i}: the caller now owns it and must close it; the message will not. */
    public int takeFd(int i) {
        int fd = fd(i);
        fds[i] = TAKEN;
        return fd;
    }

    /** True if fd {@code i} has been taken. */
    public boolean isTaken(int i) {
        return fds[i] == TAKEN;
    }

    /**
     * Closes every fd that was not taken. Idempotent. A failing close does not stop the others; the
     * first failure is rethrown after all were tried.
     */
    @Override
    public void close() {
        RuntimeException failure = null;
        for (int i = 0; i < fds.length; i++) {
            int fd = fds[i];
            if (fd != TAKEN) {
                fds[i] = TAKEN;
                try {
                    Libc.close(fd);
                } catch (RuntimeException e) {
                    if (failure == null) {
                        failure = e;
                    } else {
                        failure.addSuppressed(e);
                    }
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    @Override
    public String toString() {
        return "Message[" + header + ", fds=" + Arrays.toString(fds) + "]";
    }
}
