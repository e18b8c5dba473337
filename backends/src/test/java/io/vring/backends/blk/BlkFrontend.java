package io.vring.backends.blk;

import io.vring.engine.DriverQueue;
import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.notify.EventFd;
import io.vring.protocol.Connection;
import io.vring.protocol.Message;
import io.vring.protocol.message.DeviceConfig;
import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.MemoryRegion;
import io.vring.protocol.message.MemoryTable;
import io.vring.protocol.message.Payload;
import io.vring.protocol.message.ProtocolFeatures;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringAddress;
import io.vring.protocol.message.VringFdPayload;
import io.vring.protocol.message.VringState;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A virtio-blk driver written out message by message, as QEMU and the guest's virtio_blk would send
 * them, for testing {@link BlkBackend} through a real {@code BackendServer}: it can send exactly the
 * descriptors a test wants, bad ones included. Guest memory is one memfd at GPA 0, seen by the
 * "front-end" at {@link #USER_BASE}.
 */
final class BlkFrontend implements AutoCloseable {
    static final long USER_BASE = 0x7f00_0000_0000L;
    static final long PROTOCOL_FEATURES_BIT = 1L << ProtocolFeatures.VIRTIO_PROTOCOL_FEATURES;
    static final long WANTED_PROTOCOL = ProtocolFeatures.bit(ProtocolFeatures.MQ) | ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK)
            | ProtocolFeatures.bit(ProtocolFeatures.CONFIG) | ProtocolFeatures.bit(ProtocolFeatures.STATUS);
    static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Per request area: header (16) + up to 8 ranges (128), the status byte, then the data. */
    static final int AREA_HEADER = 0;
    static final int AREA_STATUS = 192;
    static final int AREA_DATA = 256;
    static final int DATA_MAX = 64 << 10;
    static final int AREA_SIZE = AREA_DATA + DATA_MAX;
    /** What the status byte holds before the device answers. */
    static final byte NO_STATUS = (byte) 0xee;

    final Connection connection;
    final SharedMemory memory;
    final MemorySegment mem;

    BlkFrontend(Path socket, long memoryBytes) {
        this.connection = Connection.connect(socket);
        this.memory = SharedMemory.create("blk-frontend", memoryBytes);
        this.mem = memory.segment();
    }

    void send(FrontendRequest r, Payload p, int... fds) {
        connection.sendRequest(r, p, false, fds);
    }

    /** Sends with NEED_REPLY and returns the ack value (0 = success). */
    long sendAcked(FrontendRequest r, Payload p, int... fds) {
        connection.sendRequest(r, p, true, fds);
        try (Message m = connection.receive()) {
            assertEquals(r.code(), m.request(), "reply code");
            return U64Payload.decode(m.payload()).value();
        }
    }

    Message call(FrontendRequest r, Payload p) {
        connection.sendRequest(r, p, false);
        Message m = connection.receive();
        assertEquals(r.code(), m.request(), "reply code");
        return m;
    }

    long callU64(FrontendRequest r) {
        try (Message m = call(r, null)) {
            return U64Payload.decode(m.payload()).value();
        }
    }

    /** GET_FEATURES, protocol features, owner, SET_FEATURES of what was offered and wanted; returns the acked features. */
    long negotiate(long wanted) {
        long offered = callU64(FrontendRequest.GET_FEATURES);
        long offeredProtocol = callU64(FrontendRequest.GET_PROTOCOL_FEATURES);
        send(FrontendRequest.SET_PROTOCOL_FEATURES, new U64Payload(offeredProtocol & WANTED_PROTOCOL));
        send(FrontendRequest.SET_OWNER, null);
        long acked = offered & (wanted | PROTOCOL_FEATURES_BIT);
        send(FrontendRequest.SET_FEATURES, new U64Payload(acked));
        return acked;
    }

    void sendMemTable() {
        send(FrontendRequest.SET_MEM_TABLE, new MemoryTable(List.of(new MemoryRegion(0, memory.size(), USER_BASE, 0))), memory.fd());
    }

    /** GET_CONFIG of {@code length} bytes at {@code offset}; an empty array if the device refused. */
    byte[] config(int offset, int length) {
        try (Message m = call(FrontendRequest.GET_CONFIG, DeviceConfig.request(offset, length))) {
            return DeviceConfig.decode(m.payload()).data();
        }
    }

    /** One request queue's driver side, its eventfds and one request area per descriptor. */
    final class Ring implements AutoCloseable {
        final int index;
        final DriverQueue driver;
        final EventFd kick = EventFd.create();
        final EventFd call = EventFd.create();
        final RingPlacement plan;
        final long areas;
        private final int[] freeAreas;
        private int freeCount;
        private final int[] areaOfId;
        private final long[] sequenceOfArea;
        private long nextSequence;
        private long highestUsedSequence = -1;
        /** Used chains that came back after one submitted later: what the driver sees of out-of-order completion. */
        long outOfOrder;
        /** The used length of the chain {@link #awaitUsed} returned last. */
        int usedLength;

        Ring(int index, RingKind kind, int size, long features) {
            this.index = index;
            long base = memory.allocate(RingPlacement.plan(kind, size, 0, 0, 0).totalBytes(), 4096);
            this.plan = RingPlacement.plan(kind, size, base, 0, 0);
            this.areas = memory.allocate((long) size * AREA_SIZE, 4096);
            this.driver = kind.driver("blk-fe/q" + index, memory.guestMemory(0), size, plan.rings(), features, plan.indirect());
            this.freeAreas = new int[size];
            for (int i = 0; i < size; i++) {
                freeAreas[i] = size - 1 - i;
            }
            this.freeCount = size;
            this.areaOfId = new int[size];
            this.sequenceOfArea = new long[size];
        }

        /** NUM, BASE, ADDR, CALL, KICK (starts it), ENABLE. */
        void start(int base) {
            send(FrontendRequest.SET_VRING_NUM, new VringState(index, driver.size()));
            send(FrontendRequest.SET_VRING_BASE, new VringState(index, base));
            send(FrontendRequest.SET_VRING_ADDR, new VringAddress(index, 0, USER_BASE + plan.rings().descriptorArea(),
                    USER_BASE + plan.rings().deviceArea(), USER_BASE + plan.rings().driverArea(), 0));
            send(FrontendRequest.SET_VRING_CALL, new VringFdPayload(index, false), call.fd());
            send(FrontendRequest.SET_VRING_KICK, new VringFdPayload(index, false), kick.fd());
            send(FrontendRequest.SET_VRING_ENABLE, new VringState(index, 1));
        }

        MemorySegment mem() {
            return mem;
        }

        boolean hasFreeArea() {
            return freeCount > 0;
        }

        /** Takes a request area and writes its header; the status byte reads NO_STATUS until answered. */
        int begin(int type, long sector) {
            assertTrue(freeCount > 0, "a free request area");
            int a = freeAreas[--freeCount];
            mem.set(LE_INT, header(a), type);
            mem.set(LE_INT, header(a) + 4, 0);
            mem.set(LE_LONG, header(a) + 8, sector);
            mem.set(ValueLayout.JAVA_BYTE, status(a), NO_STATUS);
            return a;
        }

        long header(int a) {
            return areas + (long) a * AREA_SIZE + AREA_HEADER;
        }

        long status(int a) {
            return areas + (long) a * AREA_SIZE + AREA_STATUS;
        }

        long data(int a) {
            return areas + (long) a * AREA_SIZE + AREA_DATA;
        }

        byte statusOf(int a) {
            return mem.get(ValueLayout.JAVA_BYTE, status(a));
        }

        /** Makes the chain built on {@link #driver} for area {@code a} available (seen after {@link #publish()}). */
        void submit(int a) {
            int id = driver.submit();
            assertTrue(id >= 0, "ring has room");
            areaOfId[id] = a;
            sequenceOfArea[a] = nextSequence++;
        }

        void publish() {
            driver.publish();
            if (driver.needsKick()) {
                kick.signal();
            }
        }

        /** The usual IN: header, data (device-writable), status. */
        int read(long sector, int bytes) {
            int a = begin(BlkLayout.T_IN, sector);
            driver.addReadable(header(a), BlkLayout.HEADER_SIZE);
            driver.addWritable(data(a), bytes);
            driver.addWritable(status(a), 1);
            submit(a);
            return a;
        }

        /** The usual OUT of what lies in the area's data: header, data, status. */
        int write(long sector, int bytes) {
            int a = begin(BlkLayout.T_OUT, sector);
            driver.addReadable(header(a), BlkLayout.HEADER_SIZE);
            driver.addReadable(data(a), bytes);
            driver.addWritable(status(a), 1);
            submit(a);
            return a;
        }

        /** A request without data (FLUSH, or a bad type): header, status. */
        int bare(int type, long sector) {
            int a = begin(type, sector);
            driver.addReadable(header(a), BlkLayout.HEADER_SIZE);
            driver.addWritable(status(a), 1);
            submit(a);
            return a;
        }

        /** Waits (up to the timeout) for the next used chain; returns its area (free again) and sets {@link #usedLength}. */
        int awaitUsed(long timeoutMillis) {
            long deadline = System.currentTimeMillis() + timeoutMillis;
            for (;;) {
                int id = driver.pollUsed();
                if (id >= 0) {
                    usedLength = driver.usedLength();
                    int a = areaOfId[id];
                    if (sequenceOfArea[a] < highestUsedSequence) {
                        outOfOrder++;
                    } else {
                        highestUsedSequence = sequenceOfArea[a];
                    }
                    freeAreas[freeCount++] = a;
                    return a;
                }
                if (System.currentTimeMillis() > deadline) {
                    throw new AssertionError("ring " + index + ": no used chain within " + timeoutMillis + " ms ("
                            + driver.outstanding() + " outstanding)");
                }
                if (!driver.enableUsedNotification()) {
                    call.await(20);
                }
                driver.disableUsedNotification();
            }
        }

        /** True if a used chain is there now (does not take it). */
        boolean hasUsedWithin(long millis) {
            long deadline = System.currentTimeMillis() + millis;
            while (System.currentTimeMillis() < deadline) {
                if (!driver.enableUsedNotification()) {
                    call.await(10);
                } else {
                    driver.disableUsedNotification();
                    return true;
                }
                driver.disableUsedNotification();
            }
            return false;
        }

        @Override
        public void close() {
            call.close();
            kick.close();
        }
    }

    @Override
    public void close() {
        connection.close();
        memory.close();
    }

    static long blkFeatures(int... bits) {
        long f = VirtioFeatures.bit(VirtioFeatures.VERSION_1) | VirtioFeatures.bit(VirtioFeatures.EVENT_IDX)
                | VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC);
        for (int b : bits) {
            f |= VirtioFeatures.bit(b);
        }
        return f;
    }
}
