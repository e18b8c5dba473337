package io.vring.backends.vsock;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * The host half of one VM's device: one thread and one selector for the hybrid listener at
 * {@code <uds-path>}, the handshakes on it and every connection's host socket. It never reads data:
 * a readable socket is handed to the rx worker (which reads straight into a guest packet) and no
 * longer watched until that worker finds it empty, so a busy socket costs no wake-ups. It writes the
 * guest-to-host backlog when a socket becomes writable, and enforces the timeouts.
 *
 * <p>The handshake, as Firecracker and vhost-device-vsock read it: {@code CONNECT <port>\n} (the word
 * in any case, a u32 port), at most {@value #MAX_LINE} bytes; bytes after the newline that arrived in
 * the same read are kept and go to the guest first. The guest's RESPONSE makes the device write
 * {@code OK <host-port>\n}, the host-side port it chose in [2^30, 2^31). Anything else closes the
 * socket. {@code STATS\n} instead gets one line of this VM's counters.
 */
final class HostSide implements AutoCloseable {
    /** Pending host connections the hybrid socket queues before accept. */
    static final int LISTEN_BACKLOG = 1024;

    private static final System.Logger LOG = System.getLogger(HostSide.class.getName());
    static final int MAX_LINE = 64;
    private static final long TICK_MILLIS = 100;

    private final ConnectionTable table;
    private final VsockConfig config;
    private final Selector selector;
    private final ServerSocketChannel listener;
    private final Thread thread;
    private final Consumer<SelectionKey> onReady = this::ready;
    private volatile boolean running = true;
    /** When deadlines were last checked: once a tick, not on every wake-up (the sweep allocates). */
    private long lastExpire = System.nanoTime();

    /** A host socket that has not finished its CONNECT line yet. */
    private static final class Handshake {
        final SocketChannel channel;
        final ByteBuffer line = ByteBuffer.allocate(MAX_LINE);
        final long deadline = System.nanoTime() + VsockDevice.CONNECT_TIMEOUT_NANOS;

        Handshake(SocketChannel channel) {
            this.channel = channel;
        }
    }

    private HostSide(ConnectionTable table, VsockConfig config, Selector selector, ServerSocketChannel listener) {
        this.table = table;
        this.config = config;
        this.selector = selector;
        this.listener = listener;
        this.thread = Thread.ofPlatform().name("vsock-host-cid-" + config.guestCid()).daemon().unstarted(this::run);
    }

    /** Binds {@code <uds-path>} (replacing a stale socket file) and starts the thread. */
    static HostSide open(ConnectionTable table, VsockConfig config) throws IOException {
        Path path = config.udsPath();
        removeStaleSocket(path);
        Selector selector = Selector.open();
        ServerSocketChannel listener = null;
        try {
            listener = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            // A burst of host programs connecting at once (non-blocking connects, as Go's net.Dial does)
            // overflowed Java's default backlog of 50 in VsockGuestTest; the kernel caps this at somaxconn.
            listener.bind(UnixDomainSocketAddress.of(path), LISTEN_BACKLOG);
            listener.configureBlocking(false);
            listener.register(selector, SelectionKey.OP_ACCEPT);
        } catch (IOException | RuntimeException e) {
            if (listener != null) {
                listener.close();
            }
            selector.close();
            throw e;
        }
        table.selector(selector);
        HostSide side = new HostSide(table, config, selector, listener);
        side.thread.start();
        return side;
    }

    private void run() {
        while (running) {
            try {
                selector.select(onReady, TICK_MILLIS);
                long now = System.nanoTime();
                // Deadlines are seconds long: checking them once a tick is enough, and a busy stream
                // that wakes this thread for every packet does not pay the sweep each time.
                boolean due = now - lastExpire >= TimeUnit.MILLISECONDS.toNanos(TICK_MILLIS);
                synchronized (table.lock) {
                    if (due) {
                        lastExpire = now;
                        expire(now);
                    }
                    table.wakeRxIfQueued();
                }
            } catch (IOException | RuntimeException e) {
                if (running) {
                    LOG.log(System.Logger.Level.ERROR, table.name() + ": host socket loop", e);
                }
            }
        }
    }

    private void ready(SelectionKey key) {
        if (!key.isValid()) {
            return;
        }
        Object attachment = key.attachment();
        if (attachment == null) {
            accept();
        } else if (attachment instanceof Handshake handshake) {
            handshake(key, handshake);
        } else {
            synchronized (table.lock) {
                connectionReady(key, (VsockConnection) attachment);
                table.wakeRxIfQueued();
            }
        }
    }

    private void accept() {
        while (true) {
            SocketChannel channel;
            try {
                channel = listener.accept();
            } catch (IOException e) {
                LOG.log(System.Logger.Level.WARNING, "{0}: accept on {1}: {2}", table.name(), config.udsPath(), e);
                return;
            }
            if (channel == null) {
                return;
            }
            try {
                channel.configureBlocking(false);
                channel.register(selector, SelectionKey.OP_READ, new Handshake(channel));
            } catch (IOException e) {
                closeQuietly(channel);
            }
        }
    }

    private void handshake(SelectionKey key, Handshake handshake) {
        int n;
        try {
            n = handshake.channel.read(handshake.line);
        } catch (IOException e) {
            reject(key, handshake, "read failed: " + e);
            return;
        }
        if (n < 0) {
            reject(key, handshake, "closed before a full line");
            return;
        }
        ByteBuffer line = handshake.line;
        int newline = -1;
        for (int i = 0; i < line.position(); i++) {
            if (line.get(i) == '\n') {
                newline = i;
                break;
            }
        }
        if (newline < 0) {
            if (!line.hasRemaining()) {
                reject(key, handshake, "no newline in the first " + MAX_LINE + " bytes");
            }
            return;
        }
        String text = new String(line.array(), 0, newline, StandardCharsets.US_ASCII).strip();
        byte[] rest = Arrays.copyOfRange(line.array(), newline + 1, line.position());
        String[] words = text.split("\\s+");
        if (words.length == 1 && words[0].equalsIgnoreCase("STATS")) {
            replyStats(key, handshake);
            return;
        }
        long port = words.length == 2 && words[0].equalsIgnoreCase("CONNECT") ? parsePort(words[1]) : -1;
        if (port < 0) {
            reject(key, handshake, "expected CONNECT <port>, got \"" + text + "\"");
            return;
        }
        synchronized (table.lock) {
            connectToGuest(key, handshake, (int) port, rest);
            table.wakeRxIfQueued();
        }
    }

    /** Host connects to guest port {@code guestPort}: REQUEST to the guest, the socket waits muted. */
    private void connectToGuest(SelectionKey key, Handshake handshake, int guestPort, byte[] rest) {
        if (!table.rxRunning()) {
            reject(key, handshake, "the guest's device is not running");
            return;
        }
        if (!table.roomFor("a host connection to guest port " + Integer.toUnsignedString(guestPort))) {
            reject(key, handshake, "too many connections");
            return;
        }
        int localPort = table.allocateHostPort();
        if (localPort < 0) {
            reject(key, handshake, "no free host port");
            return;
        }
        VsockConnection connection = new VsockConnection(localPort, guestPort, VsockHeader.TYPE_STREAM, true,
                handshake.channel, config.txBufferSize(), VsockConnection.State.REQUEST_SENT);
        connection.key = key;
        connection.interest = SelectionKey.OP_READ;
        key.attach(connection);
        // Read nothing more until the guest answers: what follows belongs to the connection.
        table.interest(connection, 0, true);
        if (rest.length > 0) {
            connection.readAhead = rest;
        }
        connection.deadline = System.nanoTime() + VsockDevice.CONNECT_TIMEOUT_NANOS;
        table.add(connection);
        table.send(connection, VsockConnection.SEND_REQUEST);
    }

    private void connectionReady(SelectionKey key, VsockConnection connection) {
        if (connection.state == VsockConnection.State.CLOSED || !key.isValid()) {
            return;
        }
        int ready = key.readyOps();
        if ((ready & SelectionKey.OP_CONNECT) != 0) {
            finishConnect(connection);
            return;
        }
        if ((ready & SelectionKey.OP_WRITE) != 0) {
            flush(connection);
            if (connection.state == VsockConnection.State.CLOSED) {
                return;
            }
        }
        if ((ready & SelectionKey.OP_READ) != 0) {
            connection.hostReadable = true;
            table.interest(connection, connection.interest & ~SelectionKey.OP_READ, true);
            table.offerRx(connection);
        }
    }

    private void finishConnect(VsockConnection connection) {
        try {
            connection.host.finishConnect();
        } catch (IOException e) {
            table.stats.refused++;
            table.reset(connection, "connect to " + config.listenerPath(connection.localPort) + ": " + e);
            return;
        }
        connection.state = VsockConnection.State.ESTABLISHED;
        connection.deadline = 0;
        table.interest(connection, SelectionKey.OP_READ, true);
        table.send(connection, VsockConnection.SEND_RESPONSE);
    }

    private void flush(VsockConnection connection) {
        try {
            table.forwarded(connection, connection.backlog.flush(connection.host));
        } catch (IOException e) {
            table.reset(connection, "writing to the host: " + e);
            return;
        }
        if (connection.backlog.isEmpty()) {
            table.interest(connection, connection.interest & ~SelectionKey.OP_WRITE, true);
            table.shutHostOutputIfDue(connection);
            table.closeIfFinished(connection);
        }
    }

    /** Resets connections and drops handshakes whose time ran out. Under the lock. */
    private void expire(long now) {
        List<VsockConnection> open = table.snapshot();
        for (VsockConnection connection : open) {
            if (connection.deadline != 0 && now - connection.deadline > 0) {
                LOG.log(System.Logger.Level.INFO, "{0}: {1} timed out in state {2}", table.name(), connection.name(),
                        connection.state);
                table.reset(connection, "timed out");
            }
        }
        for (SelectionKey key : selector.keys()) {
            if (key.attachment() instanceof Handshake handshake && now - handshake.deadline > 0) {
                reject(key, handshake, "no CONNECT line within the timeout");
            }
        }
    }

    private void replyStats(SelectionKey key, Handshake handshake) {
        ByteBuffer reply = ByteBuffer.wrap((stats() + "\n").getBytes(StandardCharsets.US_ASCII));
        try {
            handshake.channel.write(reply);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "{0}: writing stats: {1}", table.name(), e.toString());
        }
        key.cancel();
        closeQuietly(handshake.channel);
    }

    private VsockStats.Snapshot stats() {
        synchronized (table.lock) {
            return table.stats.snapshot(table.open());
        }
    }

    private void reject(SelectionKey key, Handshake handshake, String why) {
        LOG.log(System.Logger.Level.INFO, "{0}: host socket on {1} closed: {2}", table.name(), config.udsPath(), why);
        key.cancel();
        closeQuietly(handshake.channel);
    }

    /** A socket file left by an earlier run would make bind fail; any other kind of file is not ours to delete. */
    private static void removeStaleSocket(Path path) throws IOException {
        if (Files.exists(path, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            int mode = (Integer) Files.getAttribute(path, "unix:mode", java.nio.file.LinkOption.NOFOLLOW_LINKS);
            if ((mode & 0170000) != 0140000) {
                throw new IOException(path + " exists and is not a socket");
            }
            Files.delete(path);
        }
    }

    /** -1 unless {@code text} is a decimal u32. */
    static long parsePort(String text) {
        if (text.isEmpty() || text.length() > 10) {
            return -1;
        }
        long port = 0;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c < '0' || c > '9') {
                return -1;
            }
            port = port * 10 + (c - '0');
        }
        return port <= 0xFFFF_FFFFL ? port : -1;
    }

    /** Stops the thread, closes the listener, every handshake and the selector, and removes the socket file. */
    @Override
    public void close() {
        running = false;
        selector.wakeup();
        try {
            thread.join(TimeUnit.SECONDS.toMillis(5));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (thread.isAlive()) {
            LOG.log(System.Logger.Level.ERROR, "{0}: host socket thread did not stop within 5 s", table.name());
        }
        for (SelectionKey key : selector.keys()) {
            if (key.attachment() instanceof Handshake handshake) {
                closeQuietly(handshake.channel);
            }
        }
        closeQuietly(listener);
        try {
            selector.close();
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "{0}: closing the selector: {1}", table.name(), e.toString());
        }
        try {
            Files.deleteIfExists(config.udsPath());
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "{0}: removing {1}: {2}", table.name(), config.udsPath(), e.toString());
        }
    }

    private static void closeQuietly(java.nio.channels.Channel channel) {
        try {
            channel.close();
        } catch (IOException ignored) {
            // The fd is released even when close reports an error.
        }
    }
}
