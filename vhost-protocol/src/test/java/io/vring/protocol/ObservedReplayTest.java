package io.vring.protocol;

import io.vring.engine.DeviceQueue;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.notify.EventFd;
import io.vring.protocol.message.DeviceConfig;
import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.MemoryRegion;
import io.vring.protocol.message.MemoryTable;
import io.vring.protocol.message.Payload;
import io.vring.protocol.message.ProtocolFeatures;
import io.vring.protocol.message.SingleMemoryRegion;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringAddress;
import io.vring.protocol.message.VringFdPayload;
import io.vring.protocol.message.VringState;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Replays the request sequences QEMU 7.2 and DPDK 22.11 really sent (src/test/resources/observed)
 * against {@link BackendServer}, with the recorded payloads: memory regions at the recorded
 * addresses (backed by one sparse memfd), ring addresses, bases, flags with NEED_REPLY. Checks the
 * shape of every answer (a reply of the right code and size where the request has one, an ack of 0
 * where NEED_REPLY asked for one with REPLY_ACK negotiated), that nothing was refused, and that the
 * rings started with the recorded layout. Values the recording's back-end chose (features, queue
 * counts) are not compared: this device is not that one.
 */
class ObservedReplayTest {
    private static final Pattern TABLE = Pattern.compile(
            "^\\d+\\s+[\\d.]+\\s+(\\d+)\\s+([A-Z_]+)\\s+(0x[0-9a-f]+)\\s+(\\d+)\\s+(\\d+)\\s*(\\{.*?\\})?");
    private static final Pattern JSONL = Pattern.compile("\"req\": (\\d+), \"name\": \"([A-Z_]+)\", \"flags\": \"(0x[0-9a-f]+)\"");
    private static final Pattern OBJECT = Pattern.compile("\\{[^{}\\[\\]]*\\}");

    @TempDir
    Path dir;

    /** A device shaped like the recording's: queue count and config size; every chain is returned empty. */
    static final class ReplayDevice implements Backend {
        private final int queues;
        private final int configSize;

        ReplayDevice(int queues, int configSize) {
            this.queues = queues;
            this.configSize = configSize;
        }

        @Override
        public long features() {
            return VirtioFeatures.RING_FEATURES | VirtioFeatures.bit(VirtioFeatures.IN_ORDER) | (1L << 15) /* net MRG_RXBUF, DPDK sets it */
                    | (1L << 24);
        }

        @Override
        public long protocolFeatures() {
            return configSize > 0 ? ProtocolFeatures.bit(ProtocolFeatures.CONFIG) : 0;
        }

        @Override
        public int queueCount() {
            return queues;
        }

        @Override
        public int configSize() {
            return configSize;
        }

        @Override
        public int process(int queueIndex, DeviceQueue queue) {
            int n = 0;
            for (DescriptorChain c; (c = queue.poll()) != null; n++) {
                queue.addUsed(c, 0);
            }
            return n;
        }
    }

    record Step(int code, String name, int flags, String json, String line) {
        FrontendRequest request() {
            return FrontendRequest.valueOf(name);
        }
    }

    static List<Step> steps(String file) throws IOException {
        List<Step> out = new ArrayList<>();
        try (InputStream in = ObservedReplayTest.class.getResourceAsStream("/observed/" + file)) {
            for (String line : new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\n")) {
                Matcher t = TABLE.matcher(line);
                Matcher j = JSONL.matcher(line);
                if (t.find()) {
                    out.add(new Step(Integer.parseInt(t.group(1)), t.group(2), Integer.decode(t.group(3)),
                            t.group(6) == null ? "" : t.group(6), line));
                } else if (j.find()) {
                    out.add(new Step(Integer.parseInt(j.group(1)), j.group(2), Integer.decode(j.group(3)), line, line));
                }
            }
        }
        return out;
    }

    static String field(String json, String... names) {
        for (String name : names) {
            Matcher m = Pattern.compile("\"" + name + "\":\\s*\"?([^\",}]+)\"?").matcher(json);
            if (m.find()) {
                return m.group(1).trim();
            }
        }
        throw new AssertionError("no field " + String.join("/", names) + " in " + json);
    }

    static long number(String json, String... names) {
        String v = field(json, names);
        return v.startsWith("0x") ? Long.parseUnsignedLong(v.substring(2), 16) : Long.parseLong(v);
    }

    static MemoryRegion region(String json) {
        return new MemoryRegion(number(json, "guest_phys_addr", "gpa"), number(json, "memory_size", "size"),
                number(json, "userspace_addr", "uva"), number(json, "mmap_offset"));
    }

    static List<MemoryRegion> regions(String json) {
        String list = json.substring(json.indexOf("\"regions\""));
        List<MemoryRegion> out = new ArrayList<>();
        Matcher m = OBJECT.matcher(list);
        while (m.find()) {
            out.add(region(m.group()));
        }
        return out;
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({
        "rng-sequence-default.txt,1,0",
        "rng-sequence-packed-on.txt,1,0",
        "sequence-default.txt,2,8",
        "sequence-reply-ack.txt,2,8",
        "sequence-memslots-status-replyack.txt,2,8",
        "sequence-rebind.txt,2,8",
        "dpdk-seq_client_split.jsonl,2,0",
        "dpdk-seq_server_packed.jsonl,2,0",
        "dpdk-seq_mq2.jsonl,4,0",
        "dpdk-seq_proto0.jsonl,2,0",
    })
    void recordedSequenceIsServed(String file, int queues, int configSize) throws IOException {
        List<Step> steps = steps(file);
        long expectedRingStarts = steps.stream().filter(s -> s.name().equals("SET_VRING_KICK")).count();
        long memoryBytes = 4096;
        for (Step s : steps) {
            if (s.name().equals("SET_MEM_TABLE")) {
                for (MemoryRegion r : regions(s.json())) {
                    memoryBytes = Math.max(memoryBytes, r.mmapOffset() + r.memorySize());
                }
            } else if (s.name().equals("ADD_MEM_REG")) {
                MemoryRegion r = region(s.json());
                memoryBytes = Math.max(memoryBytes, r.mmapOffset() + r.memorySize());
            }
        }
        Path socket = dir.resolve("replay.sock");
        long offeredProtocol = 0;
        long ackedProtocol = 0;
        long offered = 0;
        List<EventFd> eventFds = new ArrayList<>();
        try (BackendServer server = BackendServer.listen(socket, new ReplayDevice(queues, configSize));
             Connection c = Connection.connect(socket);
             SharedMemory guest = SharedMemory.create("replay-guest", memoryBytes)) {
            for (Step s : steps) {
                FrontendRequest r = s.request();
                String j = s.json();
                Payload payload = null;
                int[] fds = {};
                switch (r) {
                    case SET_FEATURES -> payload = new U64Payload(number(j, "value", "u64")
                            & (offered | BackendSession.ENGINE_RING_FEATURES));
                    case SET_PROTOCOL_FEATURES -> {
                        ackedProtocol = number(j, "value", "u64") & offeredProtocol;
                        payload = new U64Payload(ackedProtocol);
                    }
                    case SET_MEM_TABLE -> {
                        List<MemoryRegion> table = regions(j);
                        payload = new MemoryTable(table);
                        fds = new int[table.size()];
                        java.util.Arrays.fill(fds, guest.fd());
                    }
                    case ADD_MEM_REG -> {
                        payload = new SingleMemoryRegion(region(j));
                        fds = new int[] {guest.fd()};
                    }
                    case REM_MEM_REG -> payload = new SingleMemoryRegion(region(j));
                    case SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ENABLE, GET_VRING_BASE ->
                            payload = new VringState((int) number(j, "index"),
                                    r == FrontendRequest.GET_VRING_BASE ? 0 : (int) number(j, "num"));
                    case SET_VRING_ADDR -> payload = new VringAddress((int) number(j, "index"),
                            (int) number(j, "flags", "addr_flags"), number(j, "desc"), number(j, "used"),
                            number(j, "avail"), number(j, "log"));
                    case SET_VRING_CALL, SET_VRING_KICK, SET_VRING_ERR -> {
                        boolean noFd = Boolean.parseBoolean(field(j, "nofd"));
                        payload = new VringFdPayload((int) number(j, "index"), noFd);
                        if (!noFd) {
                            EventFd e = EventFd.create();
                            eventFds.add(e);
                            fds = new int[] {e.fd()};
                        }
                    }
                    case GET_CONFIG -> payload = DeviceConfig.request((int) number(j, "offset"), (int) number(j, "size"));
                    case SET_STATUS -> payload = new U64Payload(number(j, "value", "u64", "status"));
                    case SET_BACKEND_REQ_FD -> {
                        EventFd e = EventFd.create(); // any fd: the server keeps it until the session ends
                        eventFds.add(e);
                        fds = new int[] {e.fd()};
                    }
                    default -> { }
                }
                boolean needReply = (s.flags() & 0x8) != 0;
                c.sendRequest(r, payload, needReply, fds);
                boolean acks = needReply && ProtocolFeatures.has(ackedProtocol, ProtocolFeatures.REPLY_ACK);
                if (r.alwaysReplies() || acks) {
                    try (Message m = c.receive()) {
                        assertEquals(r.code(), m.request(), s.line() + ": reply code");
                        assertEquals(0x5, m.header().flags(), s.line() + ": reply flags");
                        if (r.alwaysReplies()) {
                            r.checkReply(m.header().size(), m.fdCount());
                        } else {
                            assertEquals(0, U64Payload.decode(m.payload()).value(), s.line() + ": ack");
                        }
                        if (r == FrontendRequest.GET_FEATURES) {
                            offered = U64Payload.decode(m.payload()).value();
                        } else if (r == FrontendRequest.GET_PROTOCOL_FEATURES) {
                            offeredProtocol = U64Payload.decode(m.payload()).value();
                        } else if (r == FrontendRequest.GET_CONFIG) {
                            assertEquals(number(j, "size"), DeviceConfig.decode(m.payload()).length(), s.line());
                        }
                    }
                }
            }
            // A round trip proves the server is still serving after the last request.
            c.sendRequest(FrontendRequest.GET_FEATURES, null, false);
            c.receive().close();
            assertEquals(0, server.stats().refusedRequests(), file + ": requests refused");
            assertEquals(0, server.stats().brokenQueues(), file + ": queues broken");
            long starts = server.stats().ringStarts(io.vring.engine.RingKind.SPLIT)
                    + server.stats().ringStarts(io.vring.engine.RingKind.PACKED);
            assertEquals(expectedRingStarts, starts, file + ": ring starts");
            if (file.contains("packed")) {
                assertTrue(server.stats().ringStarts(io.vring.engine.RingKind.PACKED) > 0, "ran packed");
            }
        } finally {
            eventFds.forEach(EventFd::close);
        }
    }
}
