package io.vring.backends.vsock;

import io.vring.engine.os.Libc;
import io.vring.engine.os.NativeCallException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.SelectionKey;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The SEQPACKET host sockets of one VM: AF_UNIX SOCK_SEQPACKET fds, which Java's NIO cannot open, so
 * they are plain fds (made and used through {@link Libc}) watched by their own thread with poll(2)
 * and an eventfd to wake it. The thread starts with the VM's first SEQPACKET connection.
 *
 * <p>It does for these sockets what {@link HostSide} does for the stream ones: a readable socket is
 * handed to the rx worker (which reads the record into the connection and cuts it into guest
 * packets) and unwatched until that worker finds it empty; a writable one gets the waiting guest
 * messages, one record each. Timeouts are {@link HostSide}'s, which walks every connection.
 *
 * <p>Connections are in {@link #watched} (under the table's lock) from {@link #add} until closed;
 * the poll set is rebuilt from it on every turn, so a change of interest only needs a wake-up.
 */
final class SeqpacketHost implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(SeqpacketHost.class.getName());
    private static final int TICK_MILLIS = 100;
    private static final long FD = 0, EVENTS = 4, REVENTS = 6;

    private final ConnectionTable table;
    private final List<VsockConnection> watched = new ArrayList<>();
    private VsockConnection[] polled;
    private MemorySegment pollFds;
    private volatile int wakeFd = -1;
    private Thread thread;
    private volatile boolean running;
    private boolean closed;

    SeqpacketHost(ConnectionTable table) {
        this.table = table;
    }

    /** Watches a new connection's socket, starting the thread the first time. Under the table's lock. */
    void add(VsockConnection connection) {
        if (closed) {
            throw new IllegalStateException("the device is closed");
        }
        if (thread == null) {
            int capacity = table.maxConnections() + 1;
            pollFds = Arena.ofAuto().allocate(capacity * Libc.POLLFD_BYTES, 8);
            polled = new VsockConnection[capacity];
            wakeFd = Libc.eventfd(0, Libc.EFD_NONBLOCK | Libc.EFD_CLOEXEC);
            running = true;
            thread = Thread.ofPlatform().name("vsock-seqpacket-" + table.name().replace(' ', '-')).daemon()
                    .unstarted(this::run);
            thread.start();
        }
        watched.add(connection);
        wake();
    }

    /** The connection is closed: no longer watched. Under the table's lock. */
    void remove(VsockConnection connection) {
        watched.remove(connection);
        wake();
    }

    /** Makes the thread rebuild its poll set now (an interest changed). */
    void wake() {
        int fd = wakeFd;
        if (fd >= 0) {
            Libc.eventfdWrite(fd, 1);
        }
    }

    boolean onThread() {
        return Thread.currentThread() == thread;
    }

    private void run() {
        while (running) {
            try {
                int count = pollSet();
                if (Libc.poll(pollFds, count, TICK_MILLIS) > 0) {
                    if (revents(0) != 0) {
                        Libc.eventfdRead(wakeFd);
                    }
                    synchronized (table.lock) {
                        for (int i = 1; i < count; i++) {
                            int revents = revents(i);
                            if (revents != 0) {
                                ready(polled[i], revents);
                            }
                        }
                        table.wakeRxIfQueued();
                    }
                }
            } catch (RuntimeException e) {
                if (running) {
                    LOG.log(System.Logger.Level.ERROR, table.name() + ": SEQPACKET host socket loop", e);
                }
            }
        }
    }

    /** Fills the pollfd array: the eventfd, then every socket with an interest. Returns the entry count. */
    private int pollSet() {
        put(0, wakeFd, Libc.POLLIN);
        polled[0] = null;
        int count = 1;
        synchronized (table.lock) {
            for (int i = 0; i < watched.size(); i++) {
                VsockConnection connection = watched.get(i);
                int events = ((connection.interest & SelectionKey.OP_READ) != 0 ? Libc.POLLIN : 0)
                        | ((connection.interest & SelectionKey.OP_WRITE) != 0 ? Libc.POLLOUT : 0);
                if (events != 0 && connection.state != VsockConnection.State.CLOSED) {
                    put(count, connection.fd, events);
                    polled[count++] = connection;
                }
            }
        }
        return count;
    }

    /** A socket is ready. Under the table's lock. */
    private void ready(VsockConnection connection, int revents) {
        if (connection.state == VsockConnection.State.CLOSED) {
            return; // closed since the poll set was made; its fd number may already be someone else's
        }
        boolean failed = (revents & (Libc.POLLERR | Libc.POLLHUP | Libc.POLLNVAL)) != 0;
        if ((connection.interest & SelectionKey.OP_WRITE) != 0 && ((revents & Libc.POLLOUT) != 0 || failed)) {
            flush(connection);
            if (connection.state == VsockConnection.State.CLOSED) {
                return;
            }
        }
        if ((connection.interest & SelectionKey.OP_READ) != 0 && ((revents & Libc.POLLIN) != 0 || failed)) {
            // The rx worker reads (and learns of end of file or an error) when a guest buffer is there.
            connection.hostReadable = true;
            table.interest(connection, connection.interest & ~SelectionKey.OP_READ, true);
            table.offerRx(connection);
        }
    }

    /** Sends waiting guest messages. Under the table's lock. */
    void flush(VsockConnection connection) {
        try {
            table.forwarded(connection, connection.messages.flush(connection.fd));
        } catch (NativeCallException e) {
            table.reset(connection, "sending a record to the host: " + e.getMessage());
            return;
        }
        if (connection.messages.messages() == 0) {
            table.interest(connection, connection.interest & ~SelectionKey.OP_WRITE, onThread());
            table.shutHostOutputIfDue(connection);
            table.closeIfFinished(connection);
        } else {
            table.interest(connection, connection.interest | SelectionKey.OP_WRITE, onThread());
        }
    }

    private void put(int index, int fd, int events) {
        long at = index * Libc.POLLFD_BYTES;
        pollFds.set(ValueLayout.JAVA_INT, at + FD, fd);
        pollFds.set(ValueLayout.JAVA_SHORT, at + EVENTS, (short) events);
        pollFds.set(ValueLayout.JAVA_SHORT, at + REVENTS, (short) 0);
    }

    private int revents(int index) {
        return Short.toUnsignedInt(pollFds.get(ValueLayout.JAVA_SHORT, index * Libc.POLLFD_BYTES + REVENTS));
    }

    /** Stops the thread and closes the eventfd; the sockets are the connections' (closed by the table). */
    @Override
    public void close() {
        Thread stopping;
        synchronized (table.lock) {
            closed = true;
            running = false;
            stopping = thread;
        }
        if (stopping == null) {
            return;
        }
        wake();
        try {
            stopping.join(TimeUnit.SECONDS.toMillis(5));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (stopping.isAlive()) {
            LOG.log(System.Logger.Level.ERROR, "{0}: SEQPACKET host thread did not stop within 5 s", table.name());
            return;
        }
        int fd = wakeFd;
        wakeFd = -1;
        Libc.close(fd);
    }
}
