package io.vring.protocol;

import io.vring.engine.DriverQueue;
import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.notify.EventFd;
import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.MemoryRegion;
import io.vring.protocol.message.MemoryTable;
import io.vring.protocol.message.Payload;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringAddress;
import io.vring.protocol.message.VringFdPayload;
import io.vring.protocol.message.VringState;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A front-end written out message by message, as QEMU sends them, for testing {@link BackendServer}
 * request by request (the product front-end is BackendClient; this one lets a test send exactly the
 * bytes it wants, bad ones included). Guest memory is one memfd at GPA 0, seen by the "front-end"
 * at {@link #USER_BASE}.
 */
final class RawFrontend implements AutoCloseable {
    static final long USER_BASE = 0x7f00_0000_0000L;
    static final int DATA_PER_CHAIN = 8;

    final Connection connection;
    final SharedMemory memory;

    private final boolean ownsMemory;

    RawFrontend(Path socket, long memoryBytes) {
        this.connection = Connection.connect(socket);
        this.memory = SharedMemory.create("raw-frontend", memoryBytes);
        this.ownsMemory = true;
    }

    /** A front-end on guest memory that outlives it (a reconnect keeps the guest). */
    RawFrontend(Path socket, SharedMemory guest) {
        this.connection = Connection.connect(socket);
        this.memory = guest;
        this.ownsMemory = false;
    }

    /** Sends without asking for a reply. */
    void send(FrontendRequest r, Payload p, int... fds) {
        connection.sendRequest(r, p, false, fds);
    }

    /** Sends with NEED_REPLY and returns the ack value (0 = success). */
    long sendAcked(FrontendRequest r, Payload p, int... fds) {
        connection.sendRequest(r, p, true, fds);
        try (Message m = connection.receive()) {
            assertEquals(r.code(), m.request(), "reply code");
            assertTrue(m.header().isReply(), "reply flag");
            return U64Payload.decode(m.payload()).value();
        }
    }

    /** Sends a request that has a reply of its own, returns the reply. */
    Message call(FrontendRequest r, Payload p) {
        connection.sendRequest(r, p, false);
        Message m = connection.receive();
        assertEquals(r.code(), m.request(), "reply code");
        assertEquals(0x5, m.header().flags(), "reply flags");
        return m;
    }

    /** Sends a request with one fd that has a u64 reply of its own. */
    long callU64WithFd(FrontendRequest r, Payload p, int fd) {
        connection.sendRequest(r, p, false, fd);
        try (Message m = connection.receive()) {
            assertEquals(r.code(), m.request(), "reply code");
            return U64Payload.decode(m.payload()).value();
        }
    }

    long callU64(FrontendRequest r) {
        try (Message m = call(r, null)) {
            return U64Payload.decode(m.payload()).value();
        }
    }

    /** The QEMU start-up: features, protocol features, owner; returns the acked protocol features. */
    long negotiate(long virtioFeatures, long protocolFeatures) {
        long offered = callU64(FrontendRequest.GET_FEATURES);
        long offeredProtocol = callU64(FrontendRequest.GET_PROTOCOL_FEATURES);
        long acked = offeredProtocol & protocolFeatures;
        send(FrontendRequest.SET_PROTOCOL_FEATURES, new U64Payload(acked));
        send(FrontendRequest.SET_OWNER, null);
        send(FrontendRequest.SET_FEATURES, new U64Payload(offered & virtioFeatures));
        return acked;
    }

    /** SET_MEM_TABLE with the one memfd region. */
    void sendMemTable() {
        send(FrontendRequest.SET_MEM_TABLE, new MemoryTable(List.of(region())), memory.fd());
    }

    MemoryRegion region() {
        return new MemoryRegion(0, memory.size(), USER_BASE, 0);
    }

    /** One ring's driver side and its eventfds; the test drives it. */
    final class Ring implements AutoCloseable {
        final int index;
        final DriverQueue driver;
        final EventFd kick;
        final EventFd call = EventFd.create();
        final long dataGpa;
        final RingPlacement plan;
        int nextValue;

        /** The same ring areas and driver as {@code previous} (a front-end reconnecting to the same guest). */
        Ring(int index, RingKind kind, int size, long features, boolean busyPoll, Ring previous) {
            this.index = index;
            this.plan = previous.plan;
            this.dataGpa = previous.dataGpa;
            this.driver = previous.driver;
            this.kick = busyPoll ? null : EventFd.create();
            this.nextValue = previous.nextValue;
        }

        Ring(int index, RingKind kind, int size, long features, boolean busyPoll) {
            this.index = index;
            long total = RingPlacement.plan(kind, size, 0, 0, (long) size * DATA_PER_CHAIN).totalBytes();
            long base = memory.allocate(total, 4096);
            this.plan = RingPlacement.plan(kind, size, base, 0, (long) size * DATA_PER_CHAIN);
            this.dataGpa = plan.dataGpa();
            this.driver = kind.driver("raw/q" + index, memory.guestMemory(0), size, plan.rings(), features, plan.indirect());
            this.kick = busyPoll ? null : EventFd.create();
        }

        /** NUM, BASE, ADDR, CALL, KICK (starts it), ENABLE. */
        void start(int base) {
            send(FrontendRequest.SET_VRING_NUM, new VringState(index, driver.size()));
            send(FrontendRequest.SET_VRING_BASE, new VringState(index, base));
            send(FrontendRequest.SET_VRING_ADDR, address());
            send(FrontendRequest.SET_VRING_CALL, new VringFdPayload(index, false), call.fd());
            if (kick == null) {
                send(FrontendRequest.SET_VRING_KICK, new VringFdPayload(index, true));
            } else {
                send(FrontendRequest.SET_VRING_KICK, new VringFdPayload(index, false), kick.fd());
            }
            send(FrontendRequest.SET_VRING_ENABLE, new VringState(index, 1));
        }

        VringAddress address() {
            return new VringAddress(index, 0, USER_BASE + plan.rings().descriptorArea(), USER_BASE + plan.rings().deviceArea(),
                    USER_BASE + plan.rings().driverArea(), 0);
        }

        /** Submits {@code n} requests carrying consecutive values and kicks if the device wants. */
        void submit(int n) {
            MemorySegment m = memory.segment();
            for (int i = 0; i < n; i++) {
                int slot = (nextValue % driver.size()) * DATA_PER_CHAIN;
                m.set(IncrementBackend.U32, dataGpa + slot, nextValue);
                m.set(IncrementBackend.U32, dataGpa + slot + 4, -1);
                driver.addReadable(dataGpa + slot, 4);
                driver.addWritable(dataGpa + slot + 4, 4);
                assertTrue(driver.submit() >= 0, "ring has room");
                nextValue++;
            }
            driver.publish();
            if (driver.needsKick() && kick != null) {
                kick.signal();
            }
        }

        /** Collects {@code n} used chains (each with a 4-byte answer), sleeping on the call eventfd between them. */
        private void awaitUsed(int n, long timeoutMillis) {
            long deadline = System.currentTimeMillis() + timeoutMillis;
            int got = 0;
            while (got < n) {
                if (driver.pollUsed() >= 0) {
                    assertEquals(4, driver.usedLength(), "used length");
                    got++;
                    continue;
                }
                if (System.currentTimeMillis() > deadline) {
                    throw new AssertionError("ring " + index + ": " + got + " of " + n + " used chains within "
                            + timeoutMillis + " ms");
                }
                if (!driver.enableUsedNotification()) {
                    call.await(20);
                }
                driver.disableUsedNotification();
            }
        }

        /** Waits (up to the timeout) for {@code n} used chains and checks each carries value + 1. */
        void collect(int n, long timeoutMillis) {
            awaitUsed(n, timeoutMillis);
            MemorySegment m = memory.segment();
            for (int v = nextValue - n; v < nextValue; v++) {
                int slot = (v % driver.size()) * DATA_PER_CHAIN;
                assertEquals(v, m.get(IncrementBackend.U32, dataGpa + slot), "request value");
                assertEquals(v + 1, m.get(IncrementBackend.U32, dataGpa + slot + 4), "device answer to " + v);
            }
        }

        /** Waits for {@code n} used chains; counts each completed value in {@code completions} and checks its answer. */
        void collectIds(int n, int[] completions, long timeoutMillis) {
            awaitUsed(n, timeoutMillis); // ids are descriptor heads: the answers below say which values completed
            MemorySegment m = memory.segment();
            for (int v = 0; v < nextValue; v++) {
                int slot = (v % driver.size()) * DATA_PER_CHAIN;
                int answer = m.get(IncrementBackend.U32, dataGpa + slot + 4);
                if (answer == v + 1) {
                    completions[v]++;
                    m.set(IncrementBackend.U32, dataGpa + slot + 4, -2); // counted; a second completion would write v + 1 again
                }
            }
        }

        @Override
        public void close() {
            call.close();
            if (kick != null) {
                kick.close();
            }
        }
    }

    @Override
    public void close() {
        connection.close();
        if (ownsMemory) {
            memory.close();
        }
    }
}
