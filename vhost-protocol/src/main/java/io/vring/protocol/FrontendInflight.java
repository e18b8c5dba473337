package io.vring.protocol;

import io.vring.engine.os.Libc;
import io.vring.protocol.message.InflightDescription;

/**
 * The inflight region a back-end handed a front-end with GET_INFLIGHT_FD (INFLIGHT_SHMFD, reference
 * §5.1): its memfd and description. The front-end never reads it; it keeps the fd for the life of the
 * device and sends it back with SET_INFLIGHT_FD on every start, so a back-end that restarts after a
 * crash finds what its previous incarnation recorded there.
 */
public final class FrontendInflight implements AutoCloseable {
    private final InflightDescription description;
    private int fd;

    FrontendInflight(InflightDescription description, int fd) {
        this.description = description;
        this.fd = fd;
    }

    /** mmap_size, mmap_offset, num_queues and queue_size, as the back-end described the region. */
    public InflightDescription description() {
        return description;
    }

    /** The memfd (still ours; SET_INFLIGHT_FD sends a copy). -1 once closed. */
    public int fd() {
        return fd;
    }

    /** Closes the memfd. Idempotent. */
    @Override
    public void close() {
        if (fd >= 0) {
            int f = fd;
            fd = -1;
            Libc.close(f);
        }
    }

    @Override
    public String toString() {
        return "FrontendInflight[" + description + ", fd " + fd + "]";
    }
}
