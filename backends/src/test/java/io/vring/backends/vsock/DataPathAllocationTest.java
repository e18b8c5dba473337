package io.vring.backends.vsock;

import io.vring.engine.RingKind;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.channels.ServerSocketChannel;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The device's data path allocates nothing once warm: the rx and tx ring workers move megabytes
 * both ways (host socket reads and writes, credit updates, backlog) without a byte of heap.
 *
 * <p>Rounds of 2 MiB each way run until each worker has had a round without an allocation, at most
 * {@value #MAX_ROUNDS}. HotSpot charges some of its own JIT work to the thread whose method got hot
 * (bursts of a few KiB of Strings at a method's entry, seen with JFR and -XX:-UseTLAB just before the
 * method's C2 compilation), so any one round on a loaded machine may carry one; an allocation on the
 * data path itself shows up in every round and fails the test.
 */
@Timeout(120)
class DataPathAllocationTest {
    private static final int MAX_ROUNDS = 12;

    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void steadyTrafficBothWaysAllocatesNothingOnTheRingWorkers(RingKind kind) throws Exception {
        try (GuestDriver driver = new GuestDriver(dir, kind, false, 32 * 1024, GuestDriver.RxLayout.HEADER_APART, 4096, 1);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(77));
             ExecutorService io = Executors.newVirtualThreadPerTaskExecutor()) {
            GuestStack guest = new GuestStack(driver);
            GuestSocket socket = guest.connectAndWait(77, 64 * 1024);
            HostEnd host = HostEnd.accept(server);
            byte[] block = GuestToHostTest.bytes(new SplittableRandom(1), 2 << 20);
            long[] best = {Long.MAX_VALUE, Long.MAX_VALUE};
            for (int round = 0; round < MAX_ROUNDS && (best[0] > 0 || best[1] > 0); round++) {
                long[] before = driver.workerAllocations();
                long receivedBefore = socket.receivedTotal();
                Future<byte[]> read = io.submit(() -> host.read(block.length));
                Future<?> write = io.submit(() -> {
                    host.write(block);
                    return null;
                });
                socket.write(block, 32 * 1024);
                int r = round;
                guest.await(() -> socket.receivedTotal() == receivedBefore + block.length, "round " + r);
                assertArrayEquals(block, read.get(20, TimeUnit.SECONDS));
                write.get(20, TimeUnit.SECONDS);
                long[] after = driver.workerAllocations();
                if (round >= 2) { // rounds 0 and 1 warm up (class loading, backlog, lazily built JDK structures)
                    best[0] = Math.min(best[0], after[0] - before[0]);
                    best[1] = Math.min(best[1], after[1] - before[1]);
                }
                System.out.printf("round %d: rx worker %d bytes, tx worker %d bytes%n", round, after[0] - before[0],
                        after[1] - before[1]);
            }
            host.close();
            assertEquals(0, best[0], "rx worker allocated in every round of 2 MiB host-to-guest");
            assertEquals(0, best[1], "tx worker allocated in every round of 2 MiB guest-to-host");
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void seqpacketMessagesBothWaysAllocateNothingOnTheRingWorkers(RingKind kind) throws Exception {
        int size = 32 * 1024;
        int perRound = 64;
        try (GuestDriver driver = new GuestDriver(dir, kind, false, size, GuestDriver.RxLayout.HEADER_APART, 4096, 1);
             org.newsclub.net.unix.AFUNIXDatagramChannel listener = SeqpacketHostEnd.listen(driver.config.listenerPath(78));
             ExecutorService io = Executors.newVirtualThreadPerTaskExecutor()) {
            SeqpacketGuest guest = SeqpacketGuest.negotiated(driver);
            SeqpacketGuest.Socket socket = guest.connect(78, SeqpacketGuest.TYPE, 64 * 1024);
            SeqpacketHostEnd host = SeqpacketHostEnd.accept(listener);
            byte[] message = GuestToHostTest.bytes(new SplittableRandom(2), size);
            long[] best = {Long.MAX_VALUE, Long.MAX_VALUE};
            for (int round = 0; round < MAX_ROUNDS && (best[0] > 0 || best[1] > 0); round++) {
                long[] before = driver.workerAllocations();
                int received = socket.messages.size();
                // The host program echoes every record it reads.
                Future<?> echo = io.submit(() -> {
                    for (int i = 0; i < perRound; i++) {
                        host.send(host.receive());
                    }
                    return null;
                });
                for (int i = 0; i < perRound; i++) {
                    socket.sendMessage(message, 16 * 1024, false);
                }
                int r = round;
                guest.await(() -> socket.messages.size() == received + perRound, "round " + r);
                echo.get(20, TimeUnit.SECONDS);
                assertArrayEquals(message, socket.messages.getLast().bytes());
                socket.messages.clear();
                long[] after = driver.workerAllocations();
                if (round >= 2) {
                    best[0] = Math.min(best[0], after[0] - before[0]);
                    best[1] = Math.min(best[1], after[1] - before[1]);
                }
                System.out.printf("seqpacket round %d: rx worker %d bytes, tx worker %d bytes%n", round,
                        after[0] - before[0], after[1] - before[1]);
            }
            host.close();
            assertEquals(0, best[0], "rx worker allocated in every round of 2 MiB of host records");
            assertEquals(0, best[1], "tx worker allocated in every round of 2 MiB of guest messages");
        }
    }
}
