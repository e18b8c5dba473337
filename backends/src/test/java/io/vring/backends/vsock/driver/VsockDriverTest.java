package io.vring.backends.vsock.driver;

import io.vring.backends.vsock.VsockConfig;
import io.vring.backends.vsock.VsockDevice;
import io.vring.engine.RingKind;
import io.vring.protocol.BackendServer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

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
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The driver's public API against the real thing: vring's {@link VsockDevice} served by a
 * {@link BackendServer} on a UNIX socket, the driver connected to it over vhost-user
 * ({@link VsockDriver#connect}), host programs on the hybrid sockets as plain UNIX sockets. Nothing
 * here reaches into the driver's internals.
 */
@Timeout(60)
class VsockDriverTest {
    private static final long GUEST_CID = 42;
    private static final int HOST_PORT = 1234;

    @TempDir
    Path dir;
    private VsockConfig config;
    private VsockDevice device;
    private BackendServer server;

    private VsockDriver start(RingKind kind) throws IOException {
        config = VsockConfig.of(GUEST_CID, dir.resolve("vhost.sock"), dir.resolve("vm.vsock"));
        device = VsockDevice.open(config);
        server = BackendServer.listen(config.socket(), device);
        return VsockDriver.connect(config.socket(), VsockDriverConfig.defaults().withPacked(kind == RingKind.PACKED)
                .withTimeouts(Duration.ofSeconds(5), Duration.ofSeconds(20), Duration.ofSeconds(2)));
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.close();
        }
        if (device != null) {
            device.close();
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aGuestStreamCarriesFourMegabytesEachWayAtOnceAndTheCidComesFromTheConfigSpace(RingKind kind) throws Exception {
        long seed = System.nanoTime();
        System.out.println("seed " + seed);
        SplittableRandom random = new SplittableRandom(seed);
        byte[] up = bytes(random, 4 << 20);
        byte[] down = bytes(random, 4 << 20);
        try (VsockDriver driver = start(kind);
             ServerSocketChannel listener = listen(config.listenerPath(HOST_PORT));
             ExecutorService io = Executors.newVirtualThreadPerTaskExecutor()) {
            assertEquals(GUEST_CID, driver.guestCid(), "le64 guest_cid from GET_CONFIG");
            assertEquals(kind, RingKind.of(driver.features()), "the rings the back-end agreed to");
            Future<SocketChannel> accepted = io.submit(listener::accept);
            VsockStream stream = driver.connect(HOST_PORT);
            assertTrue(stream.isEstablished());
            try (SocketChannel host = accepted.get(10, TimeUnit.SECONDS)) {
                Future<byte[]> hostRead = io.submit(() -> readFully(host, up.length));
                Future<?> hostWrite = io.submit(() -> writeFully(host, down));
                // One thread drives both directions: writes as far as credit goes, reads what came.
                byte[] got = new byte[down.length];
                int sent = 0;
                int read = 0;
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (sent < up.length || read < down.length) {
                    int wrote = sent < up.length ? stream.writeSome(up, sent, Math.min(64 * 1024, up.length - sent)) : 0;
                    int r = read < down.length ? stream.readSome(got, read, down.length - read) : 0;
                    assertTrue(r >= 0, "no end of stream before all bytes came");
                    sent += wrote;
                    read += r;
                    if (wrote == 0 && r == 0) {
                        assertTrue(System.nanoTime() < end, "stalled: sent " + sent + ", read " + read + "; " + device.stats());
                        driver.poll();
                        Thread.onSpinWait();
                    }
                }
                assertArrayEquals(up, hostRead.get(20, TimeUnit.SECONDS), "guest-to-host bytes");
                assertArrayEquals(down, got, "host-to-guest bytes");
                hostWrite.get(5, TimeUnit.SECONDS);
                assertEquals(up.length, stream.bytesSent());
                assertEquals(down.length, stream.bytesReceived());
                assertEquals(0, driver.creditOverruns(), "the device kept to our window");
                assertEquals(0, driver.protocolViolations());
                assertEquals(0, driver.malformedPackets());
            }
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aHostConnectionIsAcceptedAndHalfClosesEachWay(RingKind kind) throws Exception {
        try (VsockDriver driver = start(kind);
             VsockListener listener = driver.listen(5000);
             SocketChannel host = SocketChannel.open(UnixDomainSocketAddress.of(config.udsPath()))) {
            writeFully(host, "CONNECT 5000\nhello".getBytes(StandardCharsets.US_ASCII));
            VsockStream stream = listener.accept();
            assertEquals(5000, stream.localPort());
            assertEquals("OK " + Integer.toUnsignedString(stream.peerPort()) + "\n", readLine(host));
            assertEquals("hello", new String(readExactly(stream, 5), StandardCharsets.US_ASCII),
                    "bytes behind the CONNECT line reach the guest");

            byte[] request = "request".getBytes(StandardCharsets.US_ASCII);
            stream.write(request, 0, request.length);
            stream.shutdownOutput();
            assertArrayEquals(request, readFully(host, request.length));
            assertEquals(-1, host.read(ByteBuffer.allocate(1)), "the guest's half-close is the host's end of stream");
            assertThrows(VsockException.class, () -> stream.write(request, 0, 1), "no writing after shutdownOutput");

            writeFully(host, "reply".getBytes(StandardCharsets.US_ASCII));
            host.shutdownOutput();
            assertEquals("reply", new String(readExactly(stream, 5), StandardCharsets.US_ASCII),
                    "the guest still reads after its half-close");
            assertEquals(-1, stream.read(new byte[1], 0, 1), "the host's half-close is the guest's end of stream");
            stream.close();
            assertEquals(VsockStream.State.CLOSED, stream.state());
            assertEquals(0, driver.openStreams());
            awaitTrue(() -> device.stats().open() == 0, "the device forgot the connection");
        }
    }

    @Test
    void aPortNobodyListensOnIsRefusedAtOnce() throws Exception {
        try (VsockDriver driver = start(RingKind.SPLIT)) {
            long start = System.nanoTime();
            VsockException refused = assertThrows(VsockException.class, () -> driver.connect(4321));
            assertEquals(VsockException.Kind.REFUSED, refused.kind());
            assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(2), "RST, not a timeout");
            assertEquals(0, driver.openStreams());
            assertEquals(1, device.stats().refused());
        }
    }

    @Test
    void closeEndsTheHostSocketAndAHostCloseEndsTheGuestStream() throws Exception {
        try (VsockDriver driver = start(RingKind.SPLIT);
             ServerSocketChannel listener = listen(config.listenerPath(HOST_PORT));
             ExecutorService io = Executors.newVirtualThreadPerTaskExecutor()) {
            Future<SocketChannel> first = io.submit(listener::accept);
            VsockStream closing = driver.connect(HOST_PORT);
            try (SocketChannel host = first.get(10, TimeUnit.SECONDS)) {
                closing.close();
                assertEquals(-1, host.read(ByteBuffer.allocate(1)), "the guest's close reaches the host as EOF");
                assertThrows(VsockException.class, () -> closing.write(new byte[1], 0, 1));
            }

            Future<SocketChannel> second = io.submit(listener::accept);
            VsockStream stream = driver.connect(HOST_PORT);
            try (SocketChannel host = second.get(10, TimeUnit.SECONDS)) {
                writeFully(host, new byte[] {1, 2, 3});
            }
            assertArrayEquals(new byte[] {1, 2, 3}, readExactly(stream, 3));
            assertEquals(-1, stream.read(new byte[1], 0, 1), "the host's close is the guest's end of stream");
            stream.close();
            assertEquals(0, driver.openStreams());
            awaitTrue(() -> device.stats().open() == 0, "no connection left in the device");
        }
    }

    private static ServerSocketChannel listen(Path path) throws IOException {
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(path));
        return server;
    }

    private static byte[] bytes(SplittableRandom random, int n) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) random.nextInt();
        }
        return b;
    }

    /** A virtual thread's write on a socket channel may be partial: loop. */
    private static Void writeFully(SocketChannel channel, byte[] bytes) throws IOException {
        ByteBuffer buffer = ByteBuffer.wrap(bytes);
        while (buffer.hasRemaining()) {
            channel.write(buffer);
        }
        return null;
    }

    private static byte[] readFully(SocketChannel channel, int n) throws IOException {
        ByteBuffer buffer = ByteBuffer.allocate(n);
        while (buffer.hasRemaining()) {
            if (channel.read(buffer) < 0) {
                throw new AssertionError("EOF after " + buffer.position() + " of " + n);
            }
        }
        return buffer.array();
    }

    private static String readLine(SocketChannel channel) throws IOException {
        ByteArrayOutputStream line = new ByteArrayOutputStream();
        ByteBuffer one = ByteBuffer.allocate(1);
        do {
            one.clear();
            if (channel.read(one) < 0) {
                throw new AssertionError("EOF in a line: " + line);
            }
            line.write(one.get(0));
        } while (one.get(0) != '\n');
        return line.toString(StandardCharsets.US_ASCII);
    }

    private static byte[] readExactly(VsockStream stream, int n) throws VsockException {
        byte[] b = new byte[n];
        for (int at = 0; at < n; ) {
            int got = stream.read(b, at, n - at);
            assertTrue(got > 0, "end of stream after " + at + " of " + n);
            at += got;
        }
        return Arrays.copyOf(b, n);
    }

    private static void awaitTrue(java.util.function.BooleanSupplier condition, String what) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!condition.getAsBoolean()) {
            assertTrue(System.nanoTime() < end, "timed out waiting for " + what);
            Thread.sleep(5);
        }
    }
}
