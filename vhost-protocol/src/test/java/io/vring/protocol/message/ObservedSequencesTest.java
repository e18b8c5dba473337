package io.vring.protocol.message;

import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The message shapes QEMU 7.2, qemu-storage-daemon and DPDK 22.11 really sent (recorded in
 * {@code src/test/resources/observed/}, copied from the project's reference notes): every recorded
 * request name is a {@link FrontendRequest} with the same code whose rules accept the recorded payload
 * size and fd count, and every recorded reply fits its request's reply rule with flags exactly 0x5.
 */
class ObservedSequencesTest {
    private static final String[] FILES = {
        "sequence-default.txt", "sequence-memslots-status-replyack.txt", "sequence-no-config.txt",
        "sequence-rebind.txt", "sequence-reply-ack.txt", "rng-sequence-default.txt", "rng-sequence-packed-on.txt",
        "dpdk-seq_client_split.jsonl", "dpdk-seq_mq2.jsonl", "dpdk-seq_proto0.jsonl", "dpdk-seq_server_packed.jsonl",
        "blk-sequence-qsd.log", "blk-reconnect-qsd.log",
    };

    /** {@code seq t code NAME flags size fds ...} in the QEMU proxy tables. */
    private static final Pattern TABLE = Pattern.compile(
            "^\\d+\\s+[\\d.]+\\s+(\\d+)\\s+([A-Z_]+)\\s+(0x[0-9a-f]+)\\s+(\\d+)\\s+(\\d+)\\b");
    /** DPDK recorder: {@code "req": 5, "name": "SET_MEM_TABLE", "flags": "0x1", "size": 40, "nfds": 1}. */
    private static final Pattern JSON = Pattern.compile(
            "\"req\": (\\d+), \"name\": \"([A-Z_]+)\", \"flags\": \"(0x[0-9a-f]+)\", \"size\": (\\d+), \"nfds\": (\\d+)");
    /** qemu-storage-daemon proxy: {@code Q->B #6 SET_BACKEND_REQ_FD code=21 flags=0x9 size=0 fds=1}. */
    private static final Pattern PROXY = Pattern.compile(
            "([QB])->([QB]) #\\d+\\s+([A-Z_]+)\\s+code=(\\d+)\\s+flags=(0x[0-9a-f]+)\\s+size=(\\d+)\\s+fds=(\\d+)");

    record Observed(String file, int line, boolean reply, int code, String name, int flags, int size, int fds) {
        @Override
        public String toString() {
            return file + ":" + line + " " + (reply ? "reply to " : "") + name + " size " + size + " fds " + fds;
        }
    }

    private static List<Observed> parse(String file) throws IOException {
        List<Observed> out = new ArrayList<>();
        try (InputStream in = ObservedSequencesTest.class.getResourceAsStream("/observed/" + file)) {
            String[] lines = new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\n");
            for (int i = 0; i < lines.length; i++) {
                Matcher t = TABLE.matcher(lines[i]);
                Matcher j = JSON.matcher(lines[i]);
                Matcher p = PROXY.matcher(lines[i]);
                if (t.find()) {
                    out.add(new Observed(file, i + 1, false, Integer.parseInt(t.group(1)), t.group(2),
                            Integer.decode(t.group(3)), Integer.parseInt(t.group(4)), Integer.parseInt(t.group(5))));
                } else if (j.find()) {
                    out.add(new Observed(file, i + 1, false, Integer.parseInt(j.group(1)), j.group(2),
                            Integer.decode(j.group(3)), Integer.parseInt(j.group(4)), Integer.parseInt(j.group(5))));
                } else if (p.find()) {
                    out.add(new Observed(file, i + 1, p.group(1).equals("B"), Integer.parseInt(p.group(4)), p.group(3),
                            Integer.decode(p.group(5)), Integer.parseInt(p.group(6)), Integer.parseInt(p.group(7))));
                }
            }
        }
        return out;
    }

    @TestFactory
    Stream<DynamicTest> everyRecordedMessageFitsItsRequestsRules() {
        return Stream.of(FILES).map(file -> DynamicTest.dynamicTest(file, () -> {
            List<Observed> messages = parse(file);
            assertFalse(messages.isEmpty(), file + " has no messages the parser understands");
            for (Observed o : messages) {
                FrontendRequest r = FrontendRequest.valueOf(o.name());
                assertEquals(r.code(), o.code(), o + ": code");
                MessageHeader h = new MessageHeader(o.code(), o.flags(), o.size());
                h.validate();
                if (o.reply()) {
                    assertEquals(0x5, o.flags(), o + ": reply flags");
                    assertTrue(r.replyPayload().accepts(o.size()), o + ": reply size rule " + r.replyPayload());
                    assertTrue(r.replyFds().accepts(o.fds()), o + ": reply fd rule " + r.replyFds());
                } else {
                    assertFalse(h.isReply(), o + ": a request without REPLY");
                    assertTrue(r.payload().accepts(o.size()), o + ": size rule " + r.payload());
                    assertTrue(r.fds().accepts(o.fds()), o + ": fd rule " + r.fds());
                }
            }
        }));
    }
}
