package io.vring.jmh;

import io.vring.backends.rng.EntropySource;
import io.vring.backends.rng.RngBackend;
import io.vring.protocol.BackendServer;
import io.vring.protocol.Connection;
import io.vring.protocol.Message;
import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.MessageHeader;
import org.newsclub.net.unix.AFUNIXServerSocketChannel;
import org.newsclub.net.unix.AFUNIXSocketAddress;
import org.newsclub.net.unix.AFUNIXSocketChannel;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * The control plane's cost per request. {@code getFeaturesRoundTrip}: a GET_FEATURES request (12
 * bytes) and its reply (20 bytes) through {@link Connection} and {@link BackendServer}'s session
 * (decode, validate, dispatch, encode). {@code rawSocketPingPong}: the same 12 bytes there and 20 back
 * over a bare junixsocket channel pair with an echo thread, in the same run: the floor any
 * vhost-user implementation on junixsocket pays. The benchmark thread is pinned to CPU 0; the
 * server's control thread and the echo thread are left to the scheduler alike (the server does not
 * expose its thread to pin it).
 */
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports",
        "java.base/jdk.internal.misc=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
public class ControlPlane {
    static final int REQUEST_BYTES = MessageHeader.SIZE;
    static final int REPLY_BYTES = MessageHeader.SIZE + 8;

    @State(Scope.Thread)
    public static class Server {
        Path dir;
        BackendServer server;
        Connection client;

        @Setup(Level.Trial)
        public void open() throws IOException {
            Affinity.pin("front-end", Affinity.DRIVER_CPU);
            dir = Files.createTempDirectory("vring-cp");
            Path socket = dir.resolve("rng.sock");
            server = BackendServer.listen(socket, new RngBackend(EntropySource.secureRandom()));
            client = Connection.connect(socket);
        }

        @TearDown(Level.Trial)
        public void close() throws IOException {
            client.close();
            server.close();
            Files.deleteIfExists(dir);
        }
    }

    @State(Scope.Thread)
    public static class RawPair {
        Path dir;
        AFUNIXServerSocketChannel listener;
        AFUNIXSocketChannel client;
        AFUNIXSocketChannel peer;
        Thread echo;
        final ByteBuffer request = ByteBuffer.allocateDirect(REQUEST_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        final ByteBuffer reply = ByteBuffer.allocateDirect(REPLY_BYTES).order(ByteOrder.LITTLE_ENDIAN);

        @Setup(Level.Trial)
        public void open() throws IOException {
            Affinity.pin("front-end", Affinity.DRIVER_CPU);
            dir = Files.createTempDirectory("vring-raw");
            listener = AFUNIXServerSocketChannel.open();
            listener.bind(AFUNIXSocketAddress.of(dir.resolve("raw.sock")));
            client = AFUNIXSocketChannel.open(AFUNIXSocketAddress.of(dir.resolve("raw.sock")));
            peer = listener.accept();
            echo = new Thread(this::echo, "raw-echo");
            echo.setDaemon(true);
            echo.start();
        }

        private void echo() {
            ByteBuffer in = ByteBuffer.allocateDirect(REQUEST_BYTES);
            ByteBuffer out = ByteBuffer.allocateDirect(REPLY_BYTES);
            try {
                while (true) {
                    in.clear();
                    while (in.hasRemaining()) {
                        if (peer.read(in) < 0) {
                            return;
                        }
                    }
                    out.clear();
                    while (out.hasRemaining()) {
                        peer.write(out);
                    }
                }
            } catch (IOException e) {
                // closed at tear-down
            }
        }

        @TearDown(Level.Trial)
        public void close() throws Exception {
            client.close();
            peer.close();
            listener.close();
            echo.join(1000);
            Files.deleteIfExists(dir.resolve("raw.sock"));
            Files.deleteIfExists(dir);
        }
    }

    @Benchmark
    public long getFeaturesRoundTrip(Server s) {
        s.client.sendRequest(FrontendRequest.GET_FEATURES, null, false);
        try (Message m = s.client.receive()) {
            return m.payload().getLong(0);
        }
    }

    @Benchmark
    public long rawSocketPingPong(RawPair p) throws IOException {
        p.request.clear();
        while (p.request.hasRemaining()) {
            p.client.write(p.request);
        }
        p.reply.clear();
        while (p.reply.hasRemaining()) {
            p.client.read(p.reply);
        }
        return p.reply.getLong(MessageHeader.SIZE);
    }
}
