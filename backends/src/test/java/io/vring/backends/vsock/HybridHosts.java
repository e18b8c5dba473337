package io.vring.backends.vsock;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.Channel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Host programs on the hybrid side of a VM, speaking the guest program's protocol (see
 * {@code vsock_guest.c}): the side that connects sends a u32 index and its stream, then shuts its
 * sending half; the side that accepted checks the stream to EOF, then sends its reply and closes.
 *
 * <p>Each connection has its own thread on blocking channels. Nothing here waits without a
 * bound: {@link #await} gives up after its timeout, and {@link #close()} closes every channel, which
 * wakes any thread still blocked in it.
 */
final class HybridHosts implements AutoCloseable {
    private static final int CHUNK = 64 * 1024;
    private static final int MAX_LINE = 64;

    /** One connection's outcome: its index and, for host-initiated ones, the port the device's {@code OK} named. */
    record Outcome(int index, long okPort, long bytesChecked, long millis) {
    }

    /*
     * Platform threads, so a connect(2) to the device's hybrid listener blocks while its backlog is
     * full, as most host programs' do. A virtual thread's connect is non-blocking underneath and
     * fails with EAGAIN instead: 64 at once overflow the listener's backlog (Java's default, 50).
     */
    private final ExecutorService threads = Executors.newThreadPerTaskExecutor(
            Thread.ofPlatform().daemon().name("hybrid-host-", 0).factory());
    private final List<Channel> channels = new CopyOnWriteArrayList<>();
    private final long seed;

    HybridHosts(long seed) {
        this.seed = seed;
    }

    /**
     * Listens at {@code listener} with a SOCK_SEQPACKET socket now, accepts one guest connection and
     * sends every record back as it came, until the guest's EOF; then closes. Returns the records
     * and bytes echoed.
     */
    Future<long[]> echoSeqpacket(Path listener) throws IOException {
        org.newsclub.net.unix.AFUNIXDatagramChannel server = SeqpacketHostEnd.listen(listener);
        channels.add(server);
        return threads.submit(() -> {
            org.newsclub.net.unix.AFUNIXDatagramChannel channel =
                    (org.newsclub.net.unix.AFUNIXDatagramChannel) server.socket().accept().getChannel();
            channels.add(channel);
            channel.configureBlocking(true);
            // Larger than any record the guest may send: a longer one would show as a wrong length there.
            ByteBuffer record = ByteBuffer.allocateDirect(256 * 1024);
            long records = 0;
            long bytes = 0;
            while (true) {
                record.clear();
                int n = channel.read(record);
                if (n <= 0) {
                    break;
                }
                record.flip();
                if (channel.write(record) != n) {
                    throw new AssertionError("a record of " + n + " bytes went back in part");
                }
                records++;
                bytes += n;
            }
            channel.close();
            return new long[] {records, bytes};
        });
    }

    /**
     * Listens at {@code listener} ({@code <uds-path>_<port>}) now, and accepts {@code conns} guest
     * connections: each must carry {@code bytes} of its guest-to-host stream; each gets
     * {@code reply} bytes of its host-to-guest stream after the guest's half-close.
     */
    List<Future<Outcome>> acceptFromGuest(Path listener, int port, int conns, long bytes, long reply) throws IOException {
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        channels.add(server);
        server.bind(UnixDomainSocketAddress.of(listener));
        List<Future<Outcome>> outcomes = new ArrayList<>();
        for (int i = 0; i < conns; i++) {
            outcomes.add(threads.submit(() -> {
                SocketChannel channel = server.accept();
                channels.add(channel);
                long start = System.nanoTime();
                int index = readIndex(channel);
                String who = "host listener " + listener.getFileName() + " connection " + index;
                long checked = checkToEof(channel, StreamPattern.streamSeed(seed, port, index, StreamPattern.GUEST_TO_HOST),
                        bytes, who);
                send(channel, StreamPattern.streamSeed(seed, port, index, StreamPattern.HOST_TO_GUEST), reply);
                channel.close();
                return new Outcome(index, -1, checked, TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start));
            }));
        }
        return outcomes;
    }

    /**
     * Opens {@code conns} connections through {@code udsPath} to the guest's {@code port} in
     * parallel: {@code CONNECT}, {@code OK}, then {@code bytes} of the host-to-guest stream, a
     * half-close, and {@code reply} bytes of the guest's stream back, checked to EOF.
     */
    List<Future<Outcome>> connectToGuest(Path udsPath, int port, int conns, long bytes, long reply) {
        List<Future<Outcome>> outcomes = new ArrayList<>();
        for (int i = 0; i < conns; i++) {
            int index = i;
            outcomes.add(threads.submit(() -> {
                SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX);
                channels.add(channel);
                long start = System.nanoTime();
                channel.connect(UnixDomainSocketAddress.of(udsPath));
                writeAll(channel, ByteBuffer.wrap(("CONNECT " + port + "\n").getBytes(StandardCharsets.US_ASCII)));
                String ok = readLine(channel);
                if (!ok.matches("OK \\d+")) {
                    throw new AssertionError("connection " + index + " to guest port " + port + ": the device answered \""
                            + ok + "\" to CONNECT");
                }
                long okPort = Long.parseLong(ok.substring(3));
                ByteBuffer header = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(0, index);
                writeAll(channel, header);
                send(channel, StreamPattern.streamSeed(seed, port, index, StreamPattern.HOST_TO_GUEST), bytes);
                channel.shutdownOutput();
                long checked = checkToEof(channel, StreamPattern.streamSeed(seed, port, index, StreamPattern.GUEST_TO_HOST),
                        reply, "host connection " + index + " to guest port " + port);
                channel.close();
                return new Outcome(index, okPort, checked, TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start));
            }));
        }
        return outcomes;
    }

    /**
     * Listens at {@code listener} now for one guest connection that the guest keeps open without
     * sending more than its index; the future ends, with the {@link System#nanoTime()} of the moment,
     * when the host sees the connection end (EOF or a reset).
     */
    Future<Long> acceptHeldConnection(Path listener) throws IOException {
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        channels.add(server);
        server.bind(UnixDomainSocketAddress.of(listener));
        return threads.submit(() -> {
            SocketChannel channel = server.accept();
            channels.add(channel);
            readIndex(channel);
            ByteBuffer buffer = ByteBuffer.allocate(CHUNK);
            try {
                while (channel.read(buffer.clear()) >= 0) {
                    // The guest sends nothing more; anything that arrives is ignored until the end.
                }
            } catch (IOException reset) {
                // A reset ends it as well as an EOF does.
            }
            return System.nanoTime();
        });
    }

    /**
     * {@code CONNECT <port>} through {@code udsPath} to a guest port nobody listens on: the future
     * gives whatever the device wrote before closing the socket (nothing, if it refused properly).
     */
    Future<String> connectToClosedGuestPort(Path udsPath, int port) {
        return threads.submit(() -> {
            SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX);
            channels.add(channel);
            channel.connect(UnixDomainSocketAddress.of(udsPath));
            writeAll(channel, ByteBuffer.wrap(("CONNECT " + port + "\n").getBytes(StandardCharsets.US_ASCII)));
            ByteBuffer buffer = ByteBuffer.allocate(MAX_LINE);
            try {
                while (buffer.hasRemaining() && channel.read(buffer) >= 0) {
                    // Up to EOF.
                }
            } catch (IOException reset) {
                // Closed with a reset: refused as well.
            }
            channel.close();
            return new String(buffer.array(), 0, buffer.position(), StandardCharsets.US_ASCII);
        });
    }

    /**
     * Listens at {@code listener} now for one guest connection that sends its stream without end:
     * checks its first {@code bytes} and closes it. The future gives the {@link System#nanoTime()}
     * of the close.
     */
    Future<Long> acceptAndCloseEarly(Path listener, int port, long bytes) throws IOException {
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        channels.add(server);
        server.bind(UnixDomainSocketAddress.of(listener));
        return threads.submit(() -> {
            SocketChannel channel = server.accept();
            channels.add(channel);
            int index = readIndex(channel);
            checkPrefix(channel, StreamPattern.streamSeed(seed, port, index, StreamPattern.GUEST_TO_HOST), bytes,
                    "host listener " + listener.getFileName());
            channel.close();
            return System.nanoTime();
        });
    }

    /**
     * {@code CONNECT <port>}, then index 0 and the host-to-guest stream without end, until a write
     * fails because the guest closed its end. The future gives the failure's message.
     */
    Future<String> connectAndSendUntilClosed(Path udsPath, int port) {
        return threads.submit(() -> {
            SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX);
            channels.add(channel);
            channel.connect(UnixDomainSocketAddress.of(udsPath));
            writeAll(channel, ByteBuffer.wrap(("CONNECT " + port + "\n").getBytes(StandardCharsets.US_ASCII)));
            String ok = readLine(channel);
            if (!ok.matches("OK \\d+")) {
                throw new AssertionError("CONNECT " + port + ": the device answered \"" + ok + "\"");
            }
            writeAll(channel, ByteBuffer.allocate(4));
            long streamSeed = StreamPattern.streamSeed(seed, port, 0, StreamPattern.HOST_TO_GUEST);
            byte[] chunk = new byte[CHUNK];
            long sent = 0;
            try {
                while (true) {
                    StreamPattern.fill(streamSeed, sent, chunk, 0, CHUNK);
                    writeAll(channel, ByteBuffer.wrap(chunk));
                    sent += CHUNK;
                }
            } catch (IOException closed) {
                channel.close();
                return closed.getMessage() + " after " + sent + " bytes";
            }
        });
    }

    /** Reads exactly {@code total} bytes, every one the stream's. */
    private static void checkPrefix(SocketChannel channel, long streamSeed, long total, String who) throws IOException {
        byte[] got = new byte[CHUNK];
        byte[] want = new byte[CHUNK];
        for (long received = 0; received < total; ) {
            int n = channel.read(ByteBuffer.wrap(got, 0, (int) Math.min(CHUNK, total - received)));
            if (n < 0) {
                throw new AssertionError(who + ": EOF after " + received + " of " + total + " bytes");
            }
            StreamPattern.fill(streamSeed, received, want, 0, n);
            int at = java.util.Arrays.mismatch(got, 0, n, want, 0, n);
            if (at >= 0) {
                throw new AssertionError(who + ": byte " + (received + at) + " differs from the stream");
            }
            received += n;
        }
    }

    /** Every outcome, or an AssertionError naming the first connection that failed or did not finish in time. */
    static List<Outcome> await(List<Future<Outcome>> outcomes, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        List<Outcome> done = new ArrayList<>();
        for (Future<Outcome> outcome : outcomes) {
            try {
                done.add(outcome.get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS));
            } catch (TimeoutException e) {
                throw new AssertionError("host side: " + done.size() + " of " + outcomes.size()
                        + " connections finished within " + timeout);
            } catch (ExecutionException e) {
                throw new AssertionError("host side: " + e.getCause(), e.getCause());
            }
        }
        return done;
    }

    private static int readIndex(SocketChannel channel) throws IOException {
        ByteBuffer header = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN);
        while (header.hasRemaining()) {
            if (channel.read(header) < 0) {
                throw new AssertionError("EOF before the connection's index (" + header.position() + " of 4 bytes)");
            }
        }
        return header.getInt(0);
    }

    private static String readLine(SocketChannel channel) throws IOException {
        ByteBuffer one = ByteBuffer.allocate(1);
        StringBuilder line = new StringBuilder();
        while (line.length() < MAX_LINE) {
            one.clear();
            if (channel.read(one) < 0) {
                throw new AssertionError("EOF after \"" + line + "\" while waiting for the device's OK line");
            }
            char c = (char) one.get(0);
            if (c == '\n') {
                return line.toString();
            }
            line.append(c);
        }
        throw new AssertionError("no newline in the device's first " + MAX_LINE + " bytes: " + line);
    }

    private static void send(SocketChannel channel, long streamSeed, long total) throws IOException {
        byte[] chunk = new byte[CHUNK];
        for (long sent = 0; sent < total; ) {
            int n = (int) Math.min(CHUNK, total - sent);
            StreamPattern.fill(streamSeed, sent, chunk, 0, n);
            writeAll(channel, ByteBuffer.wrap(chunk, 0, n));
            sent += n;
        }
    }

    private static void writeAll(SocketChannel channel, ByteBuffer buffer) throws IOException {
        while (buffer.hasRemaining()) {
            channel.write(buffer);
        }
    }

    /** Reads to EOF; every byte must be the stream's, and exactly {@code total} of them. */
    private static long checkToEof(SocketChannel channel, long streamSeed, long total, String who) throws IOException {
        byte[] got = new byte[CHUNK];
        byte[] want = new byte[CHUNK];
        ByteBuffer buffer = ByteBuffer.wrap(got);
        long received = 0;
        while (true) {
            buffer.clear();
            int n = channel.read(buffer);
            if (n < 0) {
                break;
            }
            if (received + n > total) {
                throw new AssertionError(who + ": " + (received + n) + " bytes, more than the " + total + " sent");
            }
            StreamPattern.fill(streamSeed, received, want, 0, n);
            int at = java.util.Arrays.mismatch(got, 0, n, want, 0, n);
            if (at >= 0) {
                throw new AssertionError(who + ": byte " + (received + at) + " is 0x" + Integer.toHexString(got[at] & 0xFF)
                        + ", the stream has 0x" + Integer.toHexString(want[at] & 0xFF));
            }
            received += n;
        }
        if (received != total) {
            throw new AssertionError(who + ": EOF after " + received + " of " + total + " bytes");
        }
        return received;
    }

    /** Closes every listener and connection (waking any thread blocked on one) and waits for the threads. */
    @Override
    public void close() throws InterruptedException {
        for (Channel channel : channels) {
            try {
                channel.close();
            } catch (IOException e) {
                // Closing is all that is left to do with it.
            }
        }
        threads.shutdownNow();
        if (!threads.awaitTermination(10, TimeUnit.SECONDS)) {
            throw new IllegalStateException("host-side threads still run 10 s after their channels were closed");
        }
    }
}
