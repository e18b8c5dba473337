package io.vring.backends.vsock;

import io.vring.backends.vsock.driver.VsockPacket;
import io.vring.engine.RingKind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ServerSocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * What a hostile or buggy guest gets for each malformed packet (RST or a silent drop, as the spec and
 * Linux do), and that the device, and every other connection, keeps working after it.
 */
@Timeout(60)
class MalformedPacketTest {
    private static final int PORT = 4000;
    private static final Duration QUIET = Duration.ofMillis(150);
    @TempDir
    Path dir;

    private GuestDriver driver;
    private GuestStack guest;
    private ServerSocketChannel server;
    private GuestSocket bystander;
    private HostEnd bystanderHost;

    private void open() throws Exception {
        driver = GuestDriver.of(dir, RingKind.SPLIT);
        server = HostEnd.listen(driver.config.listenerPath(PORT));
        guest = new GuestStack(driver);
        bystander = guest.connectAndWait(PORT, 65536);
        bystanderHost = HostEnd.accept(server);
    }

    private void close() throws Exception {
        // The bystander connection still carries bytes both ways after each bad packet.
        bystander.write("ping".getBytes(StandardCharsets.US_ASCII), 4096);
        assertArrayEquals("ping".getBytes(StandardCharsets.US_ASCII), bystanderHost.read(4));
        bystanderHost.write("pong");
        guest.await(() -> new String(bystander.receivedBytes(), StandardCharsets.US_ASCII).endsWith("pong"), "pong");
        assertFalse(bystander.reset());
        bystanderHost.close();
        server.close();
        driver.close();
    }

    private VsockPacket raw(int srcPort, int dstPort, int type, int op, byte[] payload) {
        return new VsockPacket(GuestDriver.GUEST_CID, VsockHeader.HOST_CID, srcPort, dstPort, type, op, 0, 65536, 0, payload);
    }

    private List<VsockPacket> quiet() {
        guest.settle(QUIET);
        List<VsockPacket> seen = List.copyOf(guest.unmatched);
        guest.unmatched.clear();
        return seen;
    }

    private static void assertRst(List<VsockPacket> seen, int fromPort, int toPort, int type) {
        assertEquals(1, seen.size(), "exactly one packet: " + seen);
        VsockPacket rst = seen.getFirst();
        assertEquals(VsockPacket.RST, rst.op(), rst.toString());
        assertEquals(fromPort, rst.srcPort());
        assertEquals(toPort, rst.dstPort());
        assertEquals(type, rst.type(), "the RST copies the packet's type");
    }

    @Test
    void anUnknownOpIsAnsweredWithRst() throws Exception {
        open();
        driver.send(raw(50001, PORT, VsockPacket.STREAM, 99, new byte[0]), GuestDriver.Split.WHOLE);
        assertRst(quiet(), PORT, 50001, VsockPacket.STREAM);
        driver.send(raw(50001, PORT, VsockPacket.STREAM, 0, new byte[0]), GuestDriver.Split.WHOLE);
        assertRst(quiet(), PORT, 50001, VsockPacket.STREAM);
        assertEquals(2, driver.device.stats().malformed());
        close();
    }

    @Test
    void anUnknownTypeIsAnsweredWithRstOfThatType() throws Exception {
        open();
        driver.send(raw(50002, PORT, 7, VsockPacket.REQUEST, new byte[0]), GuestDriver.Split.WHOLE);
        // The device is stream-only here (SEQPACKET is not negotiated), so type 2 is refused too.
        driver.send(raw(50003, PORT, 2, VsockPacket.REQUEST, new byte[0]), GuestDriver.Split.WHOLE);
        guest.settle(QUIET);
        assertEquals(2, guest.unmatched.size(), guest.unmatched.toString());
        assertRst(List.of(guest.unmatched.get(0)), PORT, 50002, 7);
        assertRst(List.of(guest.unmatched.get(1)), PORT, 50003, 2);
        guest.unmatched.clear();
        guest.violations.clear(); // the stack flags non-stream packets; these two are the point of the test
        close();
    }

    @Test
    void aLenLongerThanTheChainResetsTheConnection() throws Exception {
        open();
        VsockPacket lie = raw(bystander.guestPort, PORT, VsockPacket.STREAM, VsockPacket.RW, new byte[10]);
        GuestSocket victim = guest.connectAndWait(PORT, 65536);
        HostEnd victimHost = HostEnd.accept(server);
        driver.sendRaw(new VsockPacket(GuestDriver.GUEST_CID, 2, victim.guestPort, PORT, VsockPacket.STREAM, VsockPacket.RW, 0,
                65536, 0, lie.payload()).encode(1000), GuestDriver.Split.HEADER_APART);
        guest.await(() -> victim.reset(), "RST for the lying len");
        assertTrue(victimHost.sawEof());
        victimHost.close();
        close();
    }

    @Test
    void aChainShorterThanAHeaderIsDroppedAndLogged() throws Exception {
        open();
        driver.sendRaw(new byte[20], GuestDriver.Split.WHOLE);
        assertEquals(List.of(), quiet());
        assertEquals(1, driver.device.stats().malformed());
        close();
    }

    @Test
    void aSpoofedSourceIsDroppedAndACidNobodyServesAnswersWithAnRst() throws Exception {
        open();
        driver.send(new VsockPacket(9, 2, 50004, PORT, VsockPacket.STREAM, VsockPacket.REQUEST, 0, 65536, 0, new byte[0]),
                GuestDriver.Split.WHOLE);
        assertEquals(List.of(), quiet(), "no answer to a spoofed source");
        assertEquals(1, driver.device.stats().dropped());
        driver.send(new VsockPacket(GuestDriver.GUEST_CID, 5, 50005, PORT, VsockPacket.STREAM, VsockPacket.REQUEST, 0, 65536, 0,
                new byte[0]), GuestDriver.Split.WHOLE);
        assertEquals(List.of(new VsockPacket(5, GuestDriver.GUEST_CID, PORT, 50005, VsockPacket.STREAM, VsockPacket.RST, 0, 0, 0,
                new byte[0]).toString()), quiet().stream().map(VsockPacket::toString).toList(),
                "an RST from the CID the guest tried, so its connect fails at once (this device has no siblings)");
        assertEquals(1, driver.device.stats().guestConnections(), "no connection was made");
        close();
    }

    @Test
    void packetsForConnectionsThatDoNotExistGetRstButAnRstGetsNothing() throws Exception {
        open();
        driver.send(raw(50006, PORT, VsockPacket.STREAM, VsockPacket.RW, new byte[3]), GuestDriver.Split.WHOLE);
        assertRst(quiet(), PORT, 50006, VsockPacket.STREAM);
        driver.send(raw(50006, PORT, VsockPacket.STREAM, VsockPacket.CREDIT_REQUEST, new byte[0]), GuestDriver.Split.WHOLE);
        assertRst(quiet(), PORT, 50006, VsockPacket.STREAM);
        driver.send(raw(50006, PORT, VsockPacket.STREAM, VsockPacket.RST, new byte[0]), GuestDriver.Split.WHOLE);
        assertEquals(List.of(), quiet(), "never an RST for an RST");
        assertEquals(2, driver.device.stats().strays(), "counted as strays, not as malformed");
        assertEquals(0, driver.device.stats().malformed());
        close();
    }

    @Test
    void aControlPacketWithPayloadAndAnOversizedPayloadAreRefused() throws Exception {
        open();
        driver.send(raw(50007, PORT, VsockPacket.STREAM, VsockPacket.REQUEST, new byte[8]), GuestDriver.Split.WHOLE);
        assertRst(quiet(), PORT, 50007, VsockPacket.STREAM);
        GuestSocket victim = guest.connectAndWait(PORT, 65536);
        HostEnd victimHost = HostEnd.accept(server);
        driver.send(raw(victim.guestPort, PORT, VsockPacket.STREAM, VsockPacket.RW, new byte[64 * 1024 + 1]),
                GuestDriver.Split.SCATTERED);
        guest.await(() -> victim.reset(), "RST for a payload over 64 KiB");
        assertTrue(victimHost.sawEof());
        victimHost.close();
        close();
    }

    @Test
    void aSecondRequestForAnOpenConnectionResetsIt() throws Exception {
        open();
        GuestSocket victim = guest.connectAndWait(PORT, 65536);
        HostEnd victimHost = HostEnd.accept(server);
        victim.send(VsockPacket.REQUEST, 0, new byte[0]);
        guest.await(() -> victim.reset(), "RST");
        assertTrue(victimHost.sawEof());
        victimHost.close();
        close();
    }

    @Test
    void aResponseTheDeviceDidNotAskForIsRefused() throws Exception {
        open();
        bystander.send(VsockPacket.RESPONSE, 0, new byte[0]);
        guest.await(() -> bystander.reset(), "RST");
        assertTrue(bystanderHost.sawEof());
        // The bystander is gone now; a fresh one proves the device still serves.
        bystanderHost.close();
        bystander = guest.connectAndWait(PORT, 65536);
        bystanderHost = HostEnd.accept(server);
        close();
    }

    @Test
    void aHeaderTornAcrossDescriptorsIsReadWhole() throws Exception {
        open();
        guest.split(GuestDriver.Split.HEADER_TORN);
        assertEquals(4, bystander.writeSome("torn".getBytes(StandardCharsets.US_ASCII), 0, 4));
        guest.split(GuestDriver.Split.HEADER_APART);
        assertArrayEquals("torn".getBytes(StandardCharsets.US_ASCII), bystanderHost.read(4));
        close();
    }

    @Test
    void connectionsBeyondTheLimitAreRefusedBothWays() throws Exception {
        try (GuestDriver limited = new GuestDriver(dir, RingKind.SPLIT, false, 65536, GuestDriver.RxLayout.ONE_BUFFER,
                4096, 1, 2);
             ServerSocketChannel listener = HostEnd.listen(limited.config.listenerPath(PORT))) {
            GuestStack stack = new GuestStack(limited);
            GuestSocket first = stack.connectAndWait(PORT, 65536);
            GuestSocket second = stack.connectAndWait(PORT, 65536);
            GuestSocket third = stack.connectAndWait(PORT, 65536);
            assertTrue(first.established() && second.established());
            assertTrue(third.reset(), "the third connection is refused");
            try (HostEnd host = HostEnd.connect(limited.config.udsPath())) {
                host.write("CONNECT 80\n");
                assertArrayEquals(new byte[0], host.readToEnd(), "a host connection over the limit is closed");
            }
            first.send(VsockPacket.RST, 0, new byte[0]);
            GuestDriver.deadline(() -> limited.device.stats().open() == 1, "room again");
            assertTrue(stack.connectAndWait(PORT, 65536).established(), "a slot freed is usable again");
            HostEnd.accept(listener).close();
            HostEnd.accept(listener).close();
            HostEnd.accept(listener).close();
        }
    }
}
