package io.vring.backends.vsock;

import io.vring.backends.vsock.driver.VsockPacket;
import io.vring.engine.RingKind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.IdentityHashMap;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Guests of VMs that share a group reach each other by CID, as with vhost-device-vsock's
 * {@code --groups}: the device carries their packets from one guest's tx ring to the other's rx
 * ring unchanged (the two guests run the connection and its credit between themselves), cut into
 * pieces where the receiver's rx buffers are smaller, and without losing a packet when the receiver
 * is slow. A CID that cannot be reached answers with an RST at once.
 */
@Timeout(60)
class SiblingTest {
    private static final int RX_BUFFER = 4096;
    private static final int PAYLOAD_ROOM = RX_BUFFER - VsockPacket.HEADER;
    private static final int SEQPACKET = 2, EOM = 1, EOR = 2;

    @TempDir
    Path dir;

    private GuestDriver guest(long cid, Siblings siblings, String... groups) throws Exception {
        Path home = Files.createDirectories(dir.resolve("vm" + cid));
        VsockConfig config = new VsockConfig(cid, home.resolve("vhost.sock"), home.resolve("vm.vsock"), 256 * 1024, 1024,
                List.of(groups));
        return new GuestDriver(config, siblings, RingKind.SPLIT, GuestDriver.RxLayout.HEADER_APART, RX_BUFFER, cid);
    }

    @Test
    void aGuestConnectsToASiblingByCidAndBytesFlowBothWaysInPieces() throws Exception {
        Siblings siblings = new Siblings();
        try (GuestDriver a = guest(3, siblings, "default"); GuestDriver b = guest(4, siblings, "default")) {
            a.send(new VsockPacket(3, 4, 40000, 5000, VsockPacket.STREAM, VsockPacket.REQUEST, 0, 65536, 0, new byte[0]),
                    GuestDriver.Split.HEADER_APART);
            VsockPacket request = next(b);
            assertEquals(new VsockPacket(3, 4, 40000, 5000, VsockPacket.STREAM, VsockPacket.REQUEST, 0, 65536, 0, new byte[0]).toString(),
                    request.toString(), "the sibling sees the REQUEST as the guest wrote it");
            b.send(new VsockPacket(4, 3, 5000, 40000, VsockPacket.STREAM, VsockPacket.RESPONSE, 0, 131072, 0, new byte[0]),
                    GuestDriver.Split.WHOLE);
            VsockPacket response = next(a);
            assertEquals(VsockPacket.RESPONSE, response.op());
            assertEquals(4, response.srcCid());
            assertEquals(131072, response.bufAlloc(), "the receiver's credit reaches the sender unchanged");

            long seed = System.nanoTime();
            System.out.println("SiblingTest seed " + seed);
            SplittableRandom random = new SplittableRandom(seed);
            byte[] aToB = bytes(random, 200_000);
            sendStream(a, 3, 4, 40000, 5000, aToB, 64 * 1024, GuestDriver.Split.SCATTERED);
            assertArrayEquals(aToB, receiveStream(b, 3, aToB.length), "A to B, every byte in order");
            byte[] bToA = bytes(random, 70_000);
            sendStream(b, 4, 3, 5000, 40000, bToA, 30_000, GuestDriver.Split.HEADER_TORN);
            assertArrayEquals(bToA, receiveStream(a, 4, bToA.length), "B to A, every byte in order");
            assertTrue(a.device.stats().siblingPackets() >= 5, a.device.stats().toString());
            assertEquals(0, b.device.stats().malformed() + a.device.stats().malformed());
        }
    }

    @Test
    void aCidThatCannotBeReachedAnswersWithAnRstFromThatCid() throws Exception {
        Siblings siblings = new Siblings();
        try (GuestDriver a = guest(3, siblings, "red"); GuestDriver b = guest(4, siblings, "blue");
             GuestDriver c = guest(5, siblings, "blue", "red")) {
            // Nobody has CID 9; B shares no group with A; C shares "red".
            a.send(new VsockPacket(3, 9, 40001, 5000, VsockPacket.STREAM, VsockPacket.REQUEST, 0, 65536, 0, new byte[0]), GuestDriver.Split.WHOLE);
            assertEquals(new VsockPacket(9, 3, 5000, 40001, VsockPacket.STREAM, VsockPacket.RST, 0, 0, 0, new byte[0]).toString(),
                    next(a).toString());
            a.send(new VsockPacket(3, 4, 40002, 5000, VsockPacket.STREAM, VsockPacket.REQUEST, 0, 65536, 0, new byte[0]), GuestDriver.Split.WHOLE);
            VsockPacket rst = next(a);
            assertEquals(VsockPacket.RST, rst.op());
            assertEquals(4, rst.srcCid(), "the RST comes from the CID the guest tried");
            a.send(new VsockPacket(3, 5, 40003, 5000, VsockPacket.STREAM, VsockPacket.REQUEST, 0, 65536, 0, new byte[0]), GuestDriver.Split.WHOLE);
            assertEquals(VsockPacket.REQUEST, next(c).op(), "a shared group is enough");
            // Never an RST for an RST.
            a.send(new VsockPacket(3, 9, 40004, 5000, VsockPacket.STREAM, VsockPacket.RST, 0, 0, 0, new byte[0]), GuestDriver.Split.WHOLE);
            assertEquals(List.of(), a.drain(Duration.ofMillis(200)));
            assertEquals(0, b.device.stats().siblingPackets() + b.device.stats().malformed(), "B heard nothing");
        }
    }

    @Test
    void aSlowReceiverStallsTheSenderWithoutLosingAPacket() throws Exception {
        Siblings siblings = new Siblings();
        byte[] data = bytes(new SplittableRandom(7), 16 << 20); // more than B's rx ring, the inbox and A's tx ring hold
        try (GuestDriver a = guest(3, siblings, "default"); GuestDriver b = guest(4, siblings, "default");
             ExecutorService sender = Executors.newSingleThreadExecutor()) {
            Future<?> sent = sender.submit(() -> {
                sendStream(a, 3, 4, 40000, 5000, data, 64 * 1024, GuestDriver.Split.WHOLE);
                return null;
            });
            Thread.sleep(500);
            assertFalse(sent.isDone(), "the sender must wait while B reads nothing");
            assertArrayEquals(data, receiveStream(b, 3, data.length), "every byte arrives, in order, once B reads");
            sent.get(10, TimeUnit.SECONDS);
            assertEquals(0, a.device.stats().dropped() + b.device.stats().dropped());
        }
    }

    @Test
    void aSeqpacketMessageKeepsEomAndEorOnItsLastPieceOnly() throws Exception {
        Siblings siblings = new Siblings();
        try (GuestDriver a = guest(3, siblings, "default"); GuestDriver b = guest(4, siblings, "default")) {
            byte[] message = bytes(new SplittableRandom(11), 10_000);
            a.send(new VsockPacket(3, 4, 40000, 5000, SEQPACKET, VsockPacket.RW, EOM | EOR, 65536, 0, message), GuestDriver.Split.WHOLE);
            ByteArrayOutputStream got = new ByteArrayOutputStream();
            int pieces = 0;
            while (got.size() < message.length) {
                VsockPacket piece = next(b);
                pieces++;
                got.writeBytes(piece.payload());
                boolean last = got.size() == message.length;
                assertEquals(last ? EOM | EOR : 0, piece.flags(), "flags of piece " + pieces);
                assertEquals(SEQPACKET, piece.type());
            }
            assertEquals((message.length + PAYLOAD_ROOM - 1) / PAYLOAD_ROOM, pieces);
            assertArrayEquals(message, got.toByteArray());
        }
    }

    private static void sendStream(GuestDriver from, long src, long dst, int srcPort, int dstPort, byte[] data,
                                   int chunk, GuestDriver.Split split) {
        for (int off = 0; off < data.length; off += chunk) {
            byte[] piece = Arrays.copyOfRange(data, off, Math.min(data.length, off + chunk));
            from.send(new VsockPacket(src, dst, srcPort, dstPort, VsockPacket.STREAM, VsockPacket.RW, 0, 1 << 30, 0, piece), split);
        }
    }

    private byte[] receiveStream(GuestDriver to, long from, int length) {
        ByteArrayOutputStream got = new ByteArrayOutputStream();
        while (got.size() < length) {
            VsockPacket p = next(to);
            assertEquals(VsockPacket.RW, p.op(), p.toString());
            assertEquals(from, p.srcCid());
            assertTrue(p.payload().length <= PAYLOAD_ROOM, "a piece fits one rx buffer: " + p);
            got.writeBytes(p.payload());
        }
        return got.toByteArray();
    }

    /** Packets a driver's round brought that the test has not looked at yet. */
    private final Map<GuestDriver, ArrayDeque<VsockPacket>> pending = new IdentityHashMap<>();

    private VsockPacket next(GuestDriver driver) {
        ArrayDeque<VsockPacket> queue = pending.computeIfAbsent(driver, d -> new ArrayDeque<>());
        GuestDriver.deadline(() -> {
            if (queue.isEmpty()) {
                queue.addAll(driver.poll());
            }
            return !queue.isEmpty();
        }, "a packet on rx");
        return queue.poll();
    }

    private static byte[] bytes(SplittableRandom random, int n) {
        byte[] b = new byte[n];
        random.nextBytes(b);
        return b;
    }
}
