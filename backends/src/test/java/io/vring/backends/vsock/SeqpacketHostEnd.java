package io.vring.backends.vsock;

import org.newsclub.net.unix.AFSocketType;
import org.newsclub.net.unix.AFUNIXDatagramChannel;
import org.newsclub.net.unix.AFUNIXSelectorProvider;
import org.newsclub.net.unix.AFUNIXSocketAddress;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * A host program's end of a SEQPACKET connection: an AF_UNIX SOCK_SEQPACKET socket made with
 * junixsocket (not with the device's own FFM calls, so one mistake cannot pass on both sides). Every
 * wait gives up after {@link #TIMEOUT}.
 */
final class SeqpacketHostEnd implements AutoCloseable {
    static final Duration TIMEOUT = Duration.ofSeconds(10);
    /** Larger than any record a test sends: a longer one would be cut, and the test would see it. */
    private static final int MAX_RECORD = 1 << 20;
    final AFUNIXDatagramChannel channel;
    private final ByteBuffer in = ByteBuffer.allocateDirect(MAX_RECORD);

    private SeqpacketHostEnd(AFUNIXDatagramChannel channel) throws IOException {
        this.channel = channel;
        channel.configureBlocking(false);
    }

    /** A SOCK_SEQPACKET listener at {@code path} (the device's {@code <uds-path>_<port>}). */
    static AFUNIXDatagramChannel listen(Path path) throws IOException {
        AFUNIXDatagramChannel listener = AFUNIXSelectorProvider.provider().openDatagramChannel(AFSocketType.SOCK_SEQPACKET);
        listener.bind(AFUNIXSocketAddress.of(path.toFile()));
        listener.socket().listen(64);
        return listener;
    }

    /** The next connection on {@code listener}; fails after the timeout. */
    static SeqpacketHostEnd accept(AFUNIXDatagramChannel listener) throws Exception {
        try (ExecutorService waiter = Executors.newVirtualThreadPerTaskExecutor()) {
            Future<AFUNIXDatagramChannel> accepted = waiter.submit(
                    () -> (AFUNIXDatagramChannel) listener.socket().accept().getChannel());
            try {
                return new SeqpacketHostEnd(accepted.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS));
            } catch (java.util.concurrent.TimeoutException e) {
                listener.close(); // ends the blocked accept
                throw new AssertionError("no SEQPACKET connection within " + TIMEOUT);
            }
        }
    }

    /** Sends one record, waiting while the socket is full. */
    void send(byte[] record) throws IOException {
        ByteBuffer out = ByteBuffer.allocateDirect(record.length).put(record).flip();
        long end = System.nanoTime() + TIMEOUT.toNanos();
        while (channel.write(out) == 0) {
            if (System.nanoTime() > end) {
                throw new AssertionError("the device took no record of " + record.length + " bytes for " + TIMEOUT);
            }
            LockSupport.parkNanos(50_000);
        }
        if (out.hasRemaining()) {
            throw new AssertionError("a SEQPACKET send took part of a record: " + out.position() + " of " + record.length);
        }
    }

    /** The next record, or null at end of file. */
    byte[] receive() throws IOException {
        long end = System.nanoTime() + TIMEOUT.toNanos();
        while (true) {
            in.clear();
            int n = channel.read(in);
            if (n < 0) {
                return null;
            }
            if (n > 0) {
                byte[] record = new byte[n];
                in.flip().get(record);
                return record;
            }
            if (System.nanoTime() > end) {
                throw new AssertionError("no record within " + TIMEOUT);
            }
            LockSupport.parkNanos(50_000);
        }
    }

    /** Whether a record is there now (does not wait). */
    byte[] poll() throws IOException {
        in.clear();
        int n = channel.read(in);
        return n <= 0 ? null : Arrays.copyOf(toArray(in.flip()), n);
    }

    private static byte[] toArray(ByteBuffer buffer) {
        byte[] bytes = new byte[buffer.remaining()];
        buffer.get(bytes);
        return bytes;
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
