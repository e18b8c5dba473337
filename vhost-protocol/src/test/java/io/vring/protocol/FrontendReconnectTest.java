package io.vring.protocol;

import io.vring.engine.DeviceQueue;
import io.vring.engine.DriverQueue;
import io.vring.engine.RingKind;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.DescriptorChain;
import io.vring.protocol.message.ProtocolFeatures;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Our front-end after its back-end vanished under running rings: it notices the closed socket,
 * reconnects with back-off, and replays the start sequence with the inflight region it kept, so the
 * requests the old back-end held come back from the new one exactly once. (The same with real
 * SIGKILLed processes is {@code vring crash-test}.)
 */
class FrontendReconnectTest {
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private Path dir;

    /** Answers value v with v + 1; while {@code hold} is set it keeps the chains of multiples of 3 forever. */
    static final class HoldingBackend implements Backend {
        final boolean inflight;
        volatile boolean hold;

        HoldingBackend(boolean inflight, boolean hold) {
            this.inflight = inflight;
            this.hold = hold;
        }

        @Override
        public long features() {
            return VirtioFeatures.bit(VirtioFeatures.VERSION_1) | VirtioFeatures.bit(VirtioFeatures.RING_PACKED);
        }

        @Override
        public long protocolFeatures() {
            return inflight ? ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD) : 0;
        }

        @Override
        public int queueCount() {
            return 1;
        }

        @Override
        public int process(int queueIndex, DeviceQueue queue) {
            int done = 0;
            for (DescriptorChain c; (c = queue.poll()) != null; done++) {
                long v = c.segment(0).get(U64, c.offset(0));
                if (hold && v % 3 == 0) {
                    continue;
                }
                c.segment(1).set(U64, c.offset(1), v + 1);
                queue.addUsed(c, 8);
            }
            return done;
        }
    }

    @BeforeEach
    void setUp() throws IOException {
        dir = Files.createTempDirectory("vring-reconnect");
    }

    @AfterEach
    void tearDown() throws IOException {
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(RingKind.class)
    void requestsHeldByAVanishedBackendCompleteOnceFromItsSuccessor(RingKind kind) {
        Path socket = dir.resolve("held.sock");
        FrontendConfig config = FrontendConfig.of(1, 32).withInflight();
        if (kind == RingKind.PACKED) {
            config = config.packed();
        }
        int[] completions = new int[12];
        BackendServer first = BackendServer.listen(socket, new HoldingBackend(true, true));
        try (FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket), config)) {
            assertNotNull(device.inflight(), "GET_INFLIGHT_FD gave a region");
            int fd = device.inflight().memory().fd();
            FrontendRing ring = device.ring(0);
            submit(ring, 0, 12);
            collect(ring, completions, 8); // 0, 3, 6, 9 are held
            first.close(); // the back-end goes away with four requests in flight
            assertTrue(device.backend().awaitDisconnect(5_000), "the closed socket is noticed");

            try (BackendServer second = BackendServer.listen(socket, new HoldingBackend(true, false))) {
                device.reconnect(BackendClient.connectWithBackoff(socket, Duration.ofSeconds(5), Duration.ofSeconds(10)));
                assertEquals(fd, device.inflight().memory().fd(), "the same region goes back with SET_INFLIGHT_FD");
                collect(ring, completions, 4);
                for (int v = 0; v < 12; v++) {
                    assertEquals(1, completions[v], "value " + v + " completed exactly once");
                }
                assertFalse(ring.awaitUsed(100), "nothing more comes back");
                submit(ring, 0, 6); // and the ring carries on
                collect(ring, completions, 6);
            }
        } finally {
            first.close();
        }
    }

    @Test
    void withoutInflightTheDeviceNeverAsksForARegion() {
        Path socket = dir.resolve("plain.sock");
        try (BackendServer server = BackendServer.listen(socket, new HoldingBackend(false, false));
             FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket), FrontendConfig.of(1, 16).withInflight())) {
            assertNull(device.inflight(), "INFLIGHT_SHMFD was not offered");
            assertFalse(device.backend().awaitDisconnect(10), "a live back-end is still there");
        }
    }

    @Test
    void reconnectingToNobodyGivesUpAfterItsDeadline() {
        long start = System.nanoTime();
        VhostUserException e = assertThrows(VhostUserException.class, () -> BackendClient.connectWithBackoff(
                dir.resolve("nobody.sock"), Duration.ofSeconds(1), Duration.ofMillis(300)));
        assertEquals(VhostUserError.SocketConnect, e.kind());
        long tookMillis = (System.nanoTime() - start) / 1_000_000;
        assertTrue(tookMillis >= 300 && tookMillis < 3_000, tookMillis + " ms");
    }

    /** Values first..first+count-1, each an 8-byte request at slot v*16 and an 8-byte response after it. */
    private static void submit(FrontendRing ring, int first, int count) {
        DriverQueue q = ring.queue();
        MemorySegment data = ring.data();
        for (int v = first; v < first + count; v++) {
            data.set(U64, v * 16L, v);
            data.set(U64, v * 16L + 8, -1);
            q.addReadable(ring.dataGpa() + v * 16L, 8);
            q.addWritable(ring.dataGpa() + v * 16L + 8, 8);
            assertTrue(q.submit() >= 0);
        }
        ring.publish();
    }

    /** Collects {@code n} used chains; each response must be its request + 1. */
    private static void collect(FrontendRing ring, int[] completions, int n) {
        DriverQueue q = ring.queue();
        for (int got = 0; got < n; ) {
            assertTrue(ring.awaitUsed(5_000), "used chain " + (got + 1) + " of " + n + " within 5 s");
            for (int id; got < n && (id = q.pollUsed()) >= 0; got++) {
                assertEquals(8, q.usedLength());
                // find the answered value by scanning for the response that equals request + 1
                boolean matched = false;
                for (int v = 0; v < completions.length && !matched; v++) {
                    long response = ring.data().get(U64, v * 16L + 8);
                    if (response == v + 1) {
                        completions[v]++;
                        ring.data().set(U64, v * 16L + 8, -1);
                        matched = true;
                    }
                }
                assertTrue(matched, "used id " + id + " answered no pending request");
            }
        }
    }
}
