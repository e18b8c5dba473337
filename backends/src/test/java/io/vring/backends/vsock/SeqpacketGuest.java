package io.vring.backends.vsock;

import io.vring.backends.vsock.driver.VsockPacket;
import io.vring.engine.VirtioFeatures;

import java.io.ByteArrayOutputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;

/**
 * A guest's SEQPACKET sockets over a {@link GuestDriver}, as Linux's virtio transport keeps them:
 * messages sent as RW packets within the device's credit, the last one with EOM (and EOR when asked);
 * received packets assembled into messages at EOM, and a message read (its bytes credited back) only
 * once whole. It checks the device's side on every packet: the type, never past the guest's credit,
 * EOM/EOR only on a message's last packet. Single-threaded (the test thread).
 */
final class SeqpacketGuest {
    static final int TYPE = VsockHeader.TYPE_SEQPACKET;
    static final int EOM = VsockHeader.SEQ_EOM, EOR = VsockHeader.SEQ_EOR;

    final GuestDriver driver;
    final List<String> violations = new ArrayList<>();
    final List<VsockPacket> unmatched = new ArrayList<>();
    private final Map<Long, Socket> sockets = new HashMap<>();
    private int nextPort = 50000;
    GuestDriver.Split split = GuestDriver.Split.HEADER_APART;

    /** A guest whose driver acked VIRTIO_VSOCK_F_SEQPACKET (what SET_FEATURES tells the device). */
    static SeqpacketGuest negotiated(GuestDriver driver) {
        driver.device.featuresAcked(VirtioFeatures.bit(VirtioFeatures.VERSION_1) | 1L << VsockDevice.F_SEQPACKET);
        return new SeqpacketGuest(driver);
    }

    SeqpacketGuest(GuestDriver driver) {
        this.driver = driver;
    }

    /** One message as the guest application received it. */
    record Message(byte[] bytes, int packets, boolean eor) {
    }

    final class Socket {
        final int guestPort;
        final int hostPort;
        final int type;
        int bufAlloc;
        int fwdCnt;
        int lastSentFwdCnt;
        long receivedTotal;
        int peerBufAlloc;
        int peerFwdCnt;
        int txCnt;
        /** Read every message as soon as it is whole; off to hold the guest's buffer full. */
        boolean autoRead = true;
        boolean established;
        boolean reset;
        int peerShutdown;
        int creditRequests;
        /** The device ran out of the guest's credit with part of a message sent. */
        boolean stalledMidMessage;
        final List<VsockPacket> log = new ArrayList<>();
        final List<Message> messages = new ArrayList<>();
        private final ByteArrayOutputStream partial = new ByteArrayOutputStream();
        private int partialPackets;
        private int unread;

        Socket(int guestPort, int hostPort, int type, int bufAlloc) {
            this.guestPort = guestPort;
            this.hostPort = hostPort;
            this.type = type;
            this.bufAlloc = bufAlloc;
        }

        void onPacket(VsockPacket packet) {
            log.add(packet);
            if (packet.type() != type) {
                violations.add("type " + packet.type() + " on a socket of type " + type + ": " + packet);
            }
            if (packet.op() != VsockPacket.RST) {
                peerBufAlloc = packet.bufAlloc();
                peerFwdCnt = packet.fwdCnt();
            }
            switch (packet.op()) {
                case VsockPacket.RESPONSE -> established = true;
                case VsockPacket.RST -> reset = true;
                case VsockPacket.RW -> receive(packet);
                case VsockPacket.SHUTDOWN -> peerShutdown |= packet.flags();
                case VsockPacket.CREDIT_REQUEST -> {
                    creditRequests++;
                    stalledMidMessage |= partial.size() > 0;
                    send(VsockPacket.CREDIT_UPDATE, 0, new byte[0]);
                }
                case VsockPacket.CREDIT_UPDATE -> { }
                default -> violations.add("unexpected " + packet);
            }
        }

        private void receive(VsockPacket packet) {
            byte[] payload = packet.payload();
            if (receivedTotal + payload.length - Integer.toUnsignedLong(lastSentFwdCnt) > Integer.toUnsignedLong(bufAlloc)) {
                violations.add("device sent " + payload.length + " bytes past the guest's credit");
            }
            receivedTotal += payload.length;
            if (type != TYPE) {
                messages.add(new Message(payload, 1, false));
                unread += payload.length;
                if (autoRead) {
                    read();
                }
                return;
            }
            partial.writeBytes(payload);
            partialPackets++;
            int flags = packet.flags();
            if ((flags & ~(EOM | EOR)) != 0 || (flags & (EOM | EOR)) == EOR) {
                violations.add("RW flags " + flags + ": " + packet);
            }
            if ((flags & EOM) != 0) {
                messages.add(new Message(partial.toByteArray(), partialPackets, (flags & EOR) != 0));
                unread += partial.size();
                partial.reset();
                partialPackets = 0;
                if (autoRead) {
                    read();
                }
            }
        }

        /** The application reads every whole message: its bytes count in fwd_cnt. */
        void read() {
            fwdCnt += unread;
            unread = 0;
            if (Integer.toUnsignedLong(fwdCnt - lastSentFwdCnt) >= Math.max(1, bufAlloc / 2)) {
                send(VsockPacket.CREDIT_UPDATE, 0, new byte[0]);
            }
        }

        long peerFree() {
            return Math.max(0, Integer.toUnsignedLong(peerBufAlloc) - Integer.toUnsignedLong(txCnt - peerFwdCnt));
        }

        void send(int op, int flags, byte[] payload) {
            driver.send(new VsockPacket(GuestDriver.GUEST_CID, VsockHeader.HOST_CID, guestPort, hostPort, type, op, flags,
                    bufAlloc, fwdCnt, payload), split);
            lastSentFwdCnt = fwdCnt;
        }

        /**
         * Sends one message in RW packets of at most {@code maxChunk} bytes, each within the device's
         * credit (waiting for it), EOM (and EOR if {@code eor}) on the last.
         */
        void sendMessage(byte[] message, int maxChunk, boolean eor) {
            int offset = 0;
            long end = System.nanoTime() + Duration.ofSeconds(20).toNanos();
            do {
                pump();
                if (reset) {
                    throw new AssertionError("connection reset while sending: " + log);
                }
                int chunk = (int) Math.min(Math.min(peerFree(), maxChunk), message.length - offset);
                if (chunk == 0 && message.length > 0) {
                    if (System.nanoTime() > end) {
                        throw new AssertionError("no credit for 20 s; " + offset + " of " + message.length + " sent");
                    }
                    LockSupport.parkNanos(20_000);
                    continue;
                }
                boolean last = offset + chunk == message.length;
                send(VsockPacket.RW, type == TYPE && last ? EOM | (eor ? EOR : 0) : 0,
                        Arrays.copyOfRange(message, offset, offset + chunk));
                txCnt += chunk;
                offset += chunk;
            } while (offset < message.length);
        }
    }

    private static long key(int guestPort, int hostPort) {
        return ((long) guestPort << 32) | Integer.toUnsignedLong(hostPort);
    }

    /** Sends a REQUEST of {@code type} to host port {@code hostPort} and waits for RESPONSE or RST. */
    Socket connect(int hostPort, int type, int bufAlloc) {
        Socket socket = new Socket(nextPort++, hostPort, type, bufAlloc);
        sockets.put(key(socket.guestPort, hostPort), socket);
        socket.send(VsockPacket.REQUEST, 0, new byte[0]);
        await(() -> socket.established || socket.reset, "an answer to the REQUEST for port " + hostPort);
        return socket;
    }

    void pump() {
        for (VsockPacket packet : driver.poll()) {
            if (packet.srcCid() != VsockHeader.HOST_CID || packet.dstCid() != GuestDriver.GUEST_CID) {
                violations.add("bad addressing: " + packet);
            }
            Socket socket = sockets.get(key(packet.dstPort(), packet.srcPort()));
            if (socket != null) {
                socket.onPacket(packet);
            } else {
                unmatched.add(packet);
            }
        }
    }

    void await(BooleanSupplier condition, String what) {
        long end = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (true) {
            pump();
            if (condition.getAsBoolean()) {
                return;
            }
            if (System.nanoTime() > end) {
                throw new AssertionError("timed out waiting for " + what + "; unmatched " + unmatched);
            }
            LockSupport.parkNanos(20_000);
        }
    }

    void settle(Duration window) {
        long end = System.nanoTime() + window.toNanos();
        while (System.nanoTime() < end) {
            pump();
            LockSupport.parkNanos(50_000);
        }
    }
}
