package io.vring.jmh;

import io.vring.backends.vsock.VsockConfig;
import io.vring.backends.vsock.VsockDevice;
import io.vring.backends.vsock.driver.VsockDriver;
import io.vring.backends.vsock.driver.VsockDriverConfig;
import io.vring.backends.vsock.driver.VsockException;
import io.vring.backends.vsock.driver.VsockListener;
import io.vring.backends.vsock.driver.VsockPacket;
import io.vring.backends.vsock.driver.VsockStream;
import io.vring.engine.RingKind;
import io.vring.protocol.BackendServer;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * vring's vsock device measured without a VM (issue 6): the product guest driver
 * ({@link VsockDriver}) connected over vhost-user to a {@link VsockDevice} that a real
 * {@link BackendServer} serves on a UNIX socket (memfd guest memory, the server's ring workers woken
 * by kick eventfds), a host program on the hybrid UNIX sockets at the other end. The peer, in the
 * same run: a plain UNIX stream socket pair (java.nio) moving the same bytes in the same 64 KiB
 * writes.
 *
 * <ul>
 * <li>{@code guestToHost}: one op = one 64 KiB {@link VsockStream#write} (returns once the device has
 * taken the bytes within its credit); a host thread reads and discards. {@code pairWrite}: one op =
 * one 64 KiB write into a socket pair whose other end a thread reads and discards.
 * <li>{@code hostToGuest}: a host thread writes 64 KiB blocks forever; one op = 64 KiB read from the
 * guest stream. {@code pairRead}: the same over the socket pair.
 * <li>{@code guestConnect}: one op = a guest connect to a host listener ({@code <uds-path>_P}), the
 * host's accept, the guest's close (SHUTDOWN, the device's RST) and the host socket's close.
 * {@code hostConnect}: one op = a host {@code CONNECT <port>}, the guest's accept, the {@code OK}
 * line, both closes. {@code pairConnect}: UNIX connect + accept + both closes.
 * </ul>
 * Bytes/s = ops/s × 65536 (the report does it). The benchmark (guest) thread is pinned to CPU 0 and
 * the host thread to CPU 1; the device's threads (rx and tx ring workers, host socket thread) are
 * the server's and float, as the socket pair's kernel work does. Windows: device tx buffer
 * (guest-to-host buf_alloc) and guest stream buffer both 256 KiB (Linux's default), rx buffers of
 * 64 KiB + header, rings of 256.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports",
        "java.base/jdk.internal.misc=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
public class VsockStreams {
    /** Bytes per write and per read op. */
    public static final int BLOCK = 64 * 1024;
    static final int WINDOW = 256 * 1024;
    static final int HOST_PORT = 1234;
    static final int GUEST_PORT = 5000;

    /** Device, server and driver on temp sockets; the guest thread is the benchmark thread. */
    @State(Scope.Thread)
    public abstract static class Vsock {
        @Param({"SPLIT", "PACKED"})
        public RingKind ring;

        Path dir;
        VsockConfig config;
        VsockDevice device;
        BackendServer server;
        VsockDriver driver;
        Thread host;

        void start() throws IOException {
            Affinity.pin("guest driver", Affinity.DRIVER_CPU);
            dir = Files.createTempDirectory("vring-vsock");
            config = new VsockConfig(3, dir.resolve("vhost.sock"), dir.resolve("vm.vsock"), WINDOW, 1024, List.of());
            device = VsockDevice.open(config);
            server = BackendServer.listen(config.socket(), device);
            driver = VsockDriver.connect(config.socket(), VsockDriverConfig.defaults().withQueueSize(256)
                    .withRxBufferSize(VsockPacket.HEADER + BLOCK).withStreamBufferSize(WINDOW)
                    .withPacked(ring == RingKind.PACKED)
                    .withTimeouts(Duration.ofSeconds(5), Duration.ofSeconds(10), Duration.ofSeconds(2)));
            if (RingKind.of(driver.features()) != ring) {
                throw new IllegalStateException("asked for " + ring + " rings, the back-end agreed to "
                        + RingKind.of(driver.features()));
            }
        }

        /** Connects a guest stream to a host listener and returns the host's end (blocking). */
        SocketChannel connectGuestStream(VsockStream[] stream) throws IOException {
            try (ServerSocketChannel listener = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
                listener.bind(UnixDomainSocketAddress.of(config.listenerPath(HOST_PORT)));
                stream[0] = driver.connect(HOST_PORT);
                SocketChannel channel = listener.accept();
                Files.deleteIfExists(config.listenerPath(HOST_PORT));
                return channel;
            }
        }

        void stop() throws Exception {
            try {
                if (host != null) {
                    host.interrupt();
                    host.join(5000);
                }
                driver.close();
            } finally {
                server.close();
                device.close();
                deleteTree(dir);
            }
        }
    }

    @State(Scope.Thread)
    public static class GuestToHost extends Vsock {
        VsockStream stream;
        SocketChannel hostEnd;
        final byte[] block = randomBlock();

        @Setup(Level.Trial)
        public void open() throws IOException {
            start();
            VsockStream[] s = new VsockStream[1];
            hostEnd = connectGuestStream(s);
            stream = s[0];
            host = drainer("vsock-host-reader", hostEnd);
        }

        @TearDown(Level.Trial)
        public void close() throws Exception {
            hostEnd.close();
            stop();
        }
    }

    @State(Scope.Thread)
    public static class HostToGuest extends Vsock {
        VsockStream stream;
        SocketChannel hostEnd;
        final byte[] block = new byte[BLOCK];

        @Setup(Level.Trial)
        public void open() throws IOException {
            start();
            VsockStream[] s = new VsockStream[1];
            hostEnd = connectGuestStream(s);
            stream = s[0];
            host = pump("vsock-host-writer", hostEnd);
        }

        @TearDown(Level.Trial)
        public void close() throws Exception {
            hostEnd.close();
            stop();
        }
    }

    @State(Scope.Thread)
    public static class Setups extends Vsock {
        ServerSocketChannel hostListener;
        VsockListener guestListener;
        final ByteBuffer connectLine = ByteBuffer.wrap(("CONNECT " + GUEST_PORT + "\n").getBytes(StandardCharsets.US_ASCII));
        final ByteBuffer okLine = ByteBuffer.allocate(32);

        @Setup(Level.Trial)
        public void open() throws IOException {
            start();
            hostListener = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            hostListener.bind(UnixDomainSocketAddress.of(config.listenerPath(HOST_PORT)), 1024);
            guestListener = driver.listen(GUEST_PORT);
        }

        @TearDown(Level.Trial)
        public void close() throws Exception {
            hostListener.close();
            stop();
        }
    }

    /** A UNIX stream socket pair: {@code near} is the benchmark thread's end, {@code far} the host thread's. */
    abstract static class Pair {
        Path dir;
        SocketChannel near;
        SocketChannel far;
        Thread host;
        final ByteBuffer block = ByteBuffer.allocateDirect(BLOCK);

        void start() throws IOException {
            Affinity.pin("socket pair near end", Affinity.DRIVER_CPU);
            dir = Files.createTempDirectory("vring-pair");
            try (ServerSocketChannel listener = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
                listener.bind(UnixDomainSocketAddress.of(dir.resolve("pair.sock")));
                near = SocketChannel.open(listener.getLocalAddress());
                far = listener.accept();
            }
            block.put(randomBlock()).flip();
        }

        void stop() throws Exception {
            near.close();
            far.close();
            if (host != null) {
                host.interrupt();
                host.join(5000);
            }
            deleteTree(dir);
        }
    }

    @State(Scope.Thread)
    public static class PairWriter extends Pair {
        @Setup(Level.Trial)
        public void open() throws IOException {
            start();
            host = drainer("pair-reader", far);
        }

        @TearDown(Level.Trial)
        public void close() throws Exception {
            stop();
        }
    }

    @State(Scope.Thread)
    public static class PairReader extends Pair {
        @Setup(Level.Trial)
        public void open() throws IOException {
            start();
            host = pump("pair-writer", far);
        }

        @TearDown(Level.Trial)
        public void close() throws Exception {
            stop();
        }
    }

    @State(Scope.Thread)
    public static class PairListener {
        Path dir;
        Path path;
        ServerSocketChannel listener;

        @Setup(Level.Trial)
        public void open() throws IOException {
            Affinity.pin("socket pair connector", Affinity.DRIVER_CPU);
            dir = Files.createTempDirectory("vring-pair");
            path = dir.resolve("listen.sock");
            listener = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            listener.bind(UnixDomainSocketAddress.of(path), 1024);
        }

        @TearDown(Level.Trial)
        public void close() throws IOException {
            listener.close();
            deleteTree(dir);
        }
    }

    // ---- throughput --------------------------------------------------------------------------

    @Benchmark
    public int guestToHost(GuestToHost s) throws VsockException {
        s.stream.write(s.block, 0, BLOCK);
        return BLOCK;
    }

    @Benchmark
    public int hostToGuest(HostToGuest s) throws VsockException {
        int read = 0;
        while (read < BLOCK) {
            int n = s.stream.read(s.block, read, BLOCK - read);
            if (n < 0) {
                throw new IllegalStateException("the host stream ended");
            }
            read += n;
        }
        return s.block[BLOCK - 1];
    }

    @Benchmark
    public int pairWrite(PairWriter p) throws IOException {
        p.block.clear();
        while (p.block.hasRemaining()) {
            p.near.write(p.block);
        }
        return BLOCK;
    }

    @Benchmark
    public int pairRead(PairReader p) throws IOException {
        p.block.clear();
        while (p.block.hasRemaining()) {
            if (p.near.read(p.block) < 0) {
                throw new IllegalStateException("the pair's writer ended");
            }
        }
        return p.block.get(BLOCK - 1);
    }

    // ---- connection setup --------------------------------------------------------------------

    @Benchmark
    public int guestConnect(Setups s) throws IOException {
        VsockStream stream = s.driver.connect(HOST_PORT);
        try (SocketChannel host = s.hostListener.accept()) {
            stream.close();
            return host.hashCode();
        }
    }

    @Benchmark
    public int hostConnect(Setups s) throws IOException {
        try (SocketChannel host = SocketChannel.open(UnixDomainSocketAddress.of(s.config.udsPath()))) {
            s.connectLine.clear();
            while (s.connectLine.hasRemaining()) {
                host.write(s.connectLine);
            }
            VsockStream stream = s.guestListener.accept();
            s.okLine.clear();
            do {
                if (host.read(s.okLine) < 0) {
                    throw new IllegalStateException("the device closed the host socket before OK");
                }
            } while (s.okLine.get(s.okLine.position() - 1) != '\n');
            stream.close();
            return s.okLine.position();
        }
    }

    @Benchmark
    public int pairConnect(PairListener p) throws IOException {
        try (SocketChannel client = SocketChannel.open(UnixDomainSocketAddress.of(p.path));
             SocketChannel server = p.listener.accept()) {
            return client.hashCode() ^ server.hashCode();
        }
    }

    // ---- host threads ------------------------------------------------------------------------

    /** A pinned thread that reads {@code channel} into a scratch buffer until it closes. */
    static Thread drainer(String name, SocketChannel channel) {
        return hostThread(name, () -> {
            ByteBuffer scratch = ByteBuffer.allocateDirect(BLOCK);
            while (true) {
                scratch.clear();
                if (channel.read(scratch) < 0) {
                    return;
                }
            }
        });
    }

    /** A pinned thread that writes 64 KiB blocks into {@code channel} until it closes. */
    static Thread pump(String name, SocketChannel channel) {
        return hostThread(name, () -> {
            ByteBuffer block = ByteBuffer.allocateDirect(BLOCK);
            block.put(randomBlock());
            while (true) {
                block.clear();
                while (block.hasRemaining()) {
                    channel.write(block);
                }
            }
        });
    }

    private interface HostLoop {
        void run() throws IOException;
    }

    private static Thread hostThread(String name, HostLoop loop) {
        Thread thread = new Thread(() -> {
            Affinity.pin("host", Affinity.DEVICE_CPU);
            try {
                loop.run();
            } catch (IOException e) {
                // the channel was closed at tear-down
            }
        }, name);
        thread.setDaemon(true);
        thread.start();
        return thread;
    }

    /** 64 KiB of seeded random bytes: the same block for vring and the socket pair. */
    static byte[] randomBlock() {
        byte[] block = new byte[BLOCK];
        new java.util.SplittableRandom(BLOCK).nextBytes(block);
        return block;
    }

    static void deleteTree(Path dir) throws IOException {
        if (dir == null || !Files.exists(dir)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}
