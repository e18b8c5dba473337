package io.vring.protocol;

import io.vring.engine.inflight.StoreProbe;

import java.lang.System.Logger.Level;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Objects;

/**
 * The back-end's side of the vhost-user main channel: serves one {@link Backend} to front-ends (QEMU,
 * DPDK virtio-user, our own front-end), one at a time, on a thread of its own.
 *
 * <pre>{@code
 * try (BackendServer server = BackendServer.listen(Path.of("/tmp/rng.sock"), new RngBackend(...))) {
 *     server.awaitClose();   // or do other work; close() stops serving
 * }
 * }</pre>
 *
 * <p><b>Socket roles.</b> {@link #listen} waits for front-ends on a path, as the vhost-device
 * daemons do: when a front-end disconnects its rings are stopped, its memory and fds released, the
 * device reset, and the next front-end (a reconnecting QEMU, say) is accepted on the same socket.
 * {@link #connect} is the {@code --client} role: it connects to a listening front-end, and connects
 * again (with back-off) whenever the session ends, until closed.
 *
 * <p><b>Threads.</b> The serving thread reads and answers requests (the control thread of
 * {@link Backend}); each started ring runs on a worker thread of its own.
 */
public final class BackendServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(BackendServer.class.getName());
    /** First and longest pause between connection attempts in the client role. */
    static final Duration RETRY_MIN = Duration.ofMillis(50);
    static final Duration RETRY_MAX = Duration.ofSeconds(1);

    /**
     * @param name          how logs and thread names call this server
     * @param busyPoll      run every ring's worker busy-polling (spin, yield, short parks) rather than
     *                      sleeping on the kick eventfd; a ring set up with the NOFD bit always busy-polls
     * @param inflightProbe test seam, null in production: told around every store the rings make to
     *                      the inflight region, so a crash test's back-end can kill itself at a chosen
     *                      instant of the protocol ({@code vring crash-test})
     */
    public record Options(String name, boolean busyPoll, StoreProbe inflightProbe) {
        public Options {
            Objects.requireNonNull(name, "name");
        }

        public Options(String name, boolean busyPoll) {
            this(name, busyPoll, null);
        }

        /** Eventfd-driven rings, named after the socket file. */
        public static Options of(Path socket) {
            return new Options(String.valueOf(socket.getFileName()), false);
        }

        public Options withBusyPoll(boolean busy) {
            return new Options(name, busy, inflightProbe);
        }

        public Options withInflightProbe(StoreProbe probe) {
            return new Options(name, busyPoll, probe);
        }
    }

    private final Backend backend;
    private final Options options;
    private final Path path;
    private final Listener listener;
    private final ServerStats stats = new ServerStats();
    private final Thread thread;
    private volatile boolean closed;
    private volatile Connection current;
    private volatile BackendSession session;

    private BackendServer(Backend backend, Options options, Path path, Listener listener) {
        this.backend = Objects.requireNonNull(backend, "backend");
        this.options = options;
        this.path = path;
        this.listener = listener;
        this.thread = Thread.ofPlatform().name("vring-server-" + options.name()).daemon()
                .unstarted(listener != null ? this::acceptLoop : this::connectLoop);
    }

    /** Listens on {@code socket} and serves front-ends one after another until closed. */
    public static BackendServer listen(Path socket, Backend backend) {
        return listen(socket, backend, Options.of(socket));
    }

    public static BackendServer listen(Path socket, Backend backend, Options options) {
        Listener l = Connection.listen(socket);
        BackendServer s = new BackendServer(backend, options, socket, l);
        s.thread.start();
        LOG.log(Level.INFO, "{0}: listening on {1}", options.name(), socket);
        return s;
    }

    /** Connects to a front-end listening on {@code socket}, and again after each session, until closed. */
    public static BackendServer connect(Path socket, Backend backend, Options options) {
        BackendServer s = new BackendServer(backend, options, socket, null);
        s.thread.start();
        return s;
    }

    /**
     * Tells the connected front-end that the device's config space changed, so it reads it again
     * (BACKEND_CONFIG_CHANGE_MSG on the back-end channel). Returns false if no front-end is connected
     * or it did not negotiate BACKEND_REQ and CONFIG. Any thread; waits for the front-end's ack when
     * REPLY_ACK was negotiated.
     */
    public boolean notifyConfigChanged() {
        BackendSession s = session;
        return s != null && s.configChanged();
    }

    /** Counters for this server. */
    public ServerStats stats() {
        return stats;
    }

    /** The socket path. */
    public Path path() {
        return path;
    }

    /** Blocks until the server is closed (from another thread, or a shutdown hook). */
    public void awaitClose() throws InterruptedException {
        thread.join();
    }

    /**
     * Stops serving: no new front-end is accepted, the current one is disconnected and its session
     * cleaned up (rings stopped, device reset, fds and mappings released) before this returns.
     */
    @Override
    public void close() {
        closed = true;
        if (listener != null) {
            listener.close(); // wakes a blocked accept (Listener polls, so nothing leaks)
        }
        Connection c = current;
        if (c != null) {
            c.close();
        }
        synchronized (this) {
            notifyAll(); // the client role may be waiting between attempts
        }
        try {
            thread.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void acceptLoop() {
        while (!closed) {
            Connection c;
            try {
                c = listener.accept();
            } catch (VhostUserException e) {
                if (!closed) {
                    LOG.log(Level.ERROR, "{0}: accept failed, no longer serving: {1}", options.name(), e.getMessage());
                }
                return;
            }
            if (closed) {
                c.close(); // our own wake-up connection, or a front-end that came too late
                return;
            }
            serve(c);
        }
    }

    private void connectLoop() {
        long pause = RETRY_MIN.toMillis();
        while (!closed) {
            Connection c;
            try {
                c = Connection.connect(path);
            } catch (VhostUserException e) {
                LOG.log(Level.DEBUG, "{0}: no front-end at {1} yet: {2}", options.name(), path, e.getMessage());
                try {
                    synchronized (this) {
                        if (!closed) {
                            wait(pause);
                        }
                    }
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    return;
                }
                pause = Math.min(pause * 2, RETRY_MAX.toMillis());
                continue;
            }
            pause = RETRY_MIN.toMillis();
            serve(c);
        }
    }

    private void serve(Connection c) {
        current = c;
        if (closed) { // close() may have missed it
            c.close();
        }
        stats.sessionStarted();
        try {
            BackendSession s = new BackendSession(c, backend, options, stats);
            session = s;
            s.run();
        } finally {
            session = null;
            current = null;
        }
    }

    @Override
    public String toString() {
        return "BackendServer[" + options.name() + " on " + path + ", " + stats + "]";
    }
}
