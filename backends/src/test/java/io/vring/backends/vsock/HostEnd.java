package io.vring.backends.vsock;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.locks.LockSupport;

/**
 * A host program's end of a hybrid vsock connection: a non-blocking UNIX socket with reads and
 * writes that give up after {@link #TIMEOUT} without progress, so no test can hang on the host side
 * and a slow guest (QEMU under TCG on a loaded machine) is not mistaken for a stalled one.
 */
final class HostEnd implements AutoCloseable {
    static final Duration TIMEOUT = Duration.ofSeconds(10);
    final SocketChannel channel;
    private boolean eof;

    HostEnd(SocketChannel channel) throws IOException {
        this.channel = channel;
        channel.configureBlocking(false);
    }

    /** Connects to the device's hybrid socket {@code <uds-path>}. */
    static HostEnd connect(Path udsPath) throws IOException {
        SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX);
        channel.connect(UnixDomainSocketAddress.of(udsPath));
        return new HostEnd(channel);
    }

    /** A listener at {@code <uds-path>_<port>} for guest-initiated connections. */
    static ServerSocketChannel listen(Path path) throws IOException {
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(path));
        server.configureBlocking(false);
        return server;
    }

    static HostEnd accept(ServerSocketChannel server) throws IOException {
        return accept(server, TIMEOUT);
    }

    static HostEnd accept(ServerSocketChannel server, Duration timeout) throws IOException {
        long end = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < end) {
            SocketChannel channel = server.accept();
            if (channel != null) {
                return new HostEnd(channel);
            }
            LockSupport.parkNanos(50_000);
        }
        throw new AssertionError("no connection on " + server.getLocalAddress() + " within " + timeout);
    }

    void write(byte[] bytes) throws IOException {
        ByteBuffer buffer = ByteBuffer.wrap(bytes);
        long end = System.nanoTime() + TIMEOUT.toNanos();
        while (buffer.hasRemaining()) {
            if (channel.write(buffer) > 0) {
                end = System.nanoTime() + TIMEOUT.toNanos();
            } else {
                if (System.nanoTime() > end) {
                    throw new AssertionError("host write stalled: " + buffer.position() + " of " + bytes.length);
                }
                LockSupport.parkNanos(50_000);
            }
        }
    }

    void write(String text) throws IOException {
        write(text.getBytes(StandardCharsets.US_ASCII));
    }

    /** Reads exactly {@code n} bytes. */
    byte[] read(int n) throws IOException {
        ByteBuffer buffer = ByteBuffer.allocate(n);
        long end = System.nanoTime() + TIMEOUT.toNanos();
        while (buffer.hasRemaining()) {
            int got = channel.read(buffer);
            if (got < 0) {
                throw new AssertionError("host socket at EOF after " + buffer.position() + " of " + n + " bytes");
            }
            if (got > 0) {
                end = System.nanoTime() + TIMEOUT.toNanos();
            } else {
                if (System.nanoTime() > end) {
                    throw new AssertionError("host read stalled: " + buffer.position() + " of " + n + " bytes");
                }
                LockSupport.parkNanos(50_000);
            }
        }
        return buffer.array();
    }

    /** Reads one line (through the newline) byte by byte, so nothing after it is taken. */
    String readLine() throws IOException {
        StringBuilder line = new StringBuilder();
        while (true) {
            char c = (char) read(1)[0];
            line.append(c);
            if (c == '\n') {
                return line.toString();
            }
        }
    }

    /** Reads everything up to EOF (or a reset). */
    byte[] readToEnd() throws IOException {
        ByteArrayOutputStream all = new ByteArrayOutputStream();
        ByteBuffer buffer = ByteBuffer.allocate(64 * 1024);
        long end = System.nanoTime() + TIMEOUT.toNanos();
        while (true) {
            buffer.clear();
            int got;
            try {
                got = channel.read(buffer);
            } catch (IOException reset) {
                eof = true;
                return all.toByteArray();
            }
            if (got < 0) {
                eof = true;
                return all.toByteArray();
            }
            all.write(buffer.array(), 0, got);
            if (got > 0) {
                end = System.nanoTime() + TIMEOUT.toNanos();
            } else {
                if (System.nanoTime() > end) {
                    throw new AssertionError("no EOF within " + TIMEOUT + " after " + all.size() + " bytes");
                }
                LockSupport.parkNanos(50_000);
            }
        }
    }

    /** True once the device closed its end (read gives EOF or a reset), waiting up to the timeout. */
    boolean sawEof() throws IOException {
        if (!eof) {
            readToEnd();
        }
        return eof;
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
