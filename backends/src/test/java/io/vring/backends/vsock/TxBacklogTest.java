package io.vring.backends.vsock;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.net.StandardSocketOptions;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** The guest-to-host backlog keeps bytes in order across its wrap-around and partial socket writes. */
class TxBacklogTest {
    @TempDir
    Path dir;

    @Test
    void bytesLeaveInOrderAcrossTheWrapWhateverTheSocketTakes() throws Exception {
        long seed = 2026;
        System.out.println("seed " + seed);
        SplittableRandom random = new SplittableRandom(seed);
        int capacity = 1000;
        TxBacklog backlog = new TxBacklog(capacity);
        try (ServerSocketChannel server = HostEnd.listen(dir.resolve("b"));
             HostEnd writer = HostEnd.connect(dir.resolve("b"));
             HostEnd reader = HostEnd.accept(server)) {
            // The smallest socket buffers Linux allows, so flushes come up short and wrap mid-ring.
            writer.channel.setOption(StandardSocketOptions.SO_SNDBUF, 1);
            reader.channel.setOption(StandardSocketOptions.SO_RCVBUF, 1);
            int shortWrites = 0;
            List<Byte> expected = new ArrayList<>();
            int next = 0;
            int flushed = 0;
            for (int step = 0; step < 2000; step++) {
                int n = random.nextInt(backlog.free() + 1);
                byte[] chunk = new byte[n];
                for (int i = 0; i < n; i++) {
                    chunk[i] = (byte) next++;
                    expected.add(chunk[i]);
                }
                backlog.append(MemorySegment.ofArray(chunk), 0, n);
                assertTrue(backlog.size() <= capacity);
                if (random.nextBoolean()) {
                    int before = backlog.size();
                    int written = backlog.flush(writer.channel);
                    assertEquals(before - written, backlog.size());
                    shortWrites += written < before ? 1 : 0;
                    flushed += written;
                    // Drain the peer now and then so the socket sometimes takes all and sometimes little.
                    if (random.nextInt(4) == 0) {
                        byte[] got = reader.read(flushed);
                        for (byte b : got) {
                            assertEquals(expected.removeFirst(), b, "byte order");
                        }
                        flushed = 0;
                    }
                }
            }
            while (!backlog.isEmpty()) {
                flushed += backlog.flush(writer.channel);
                byte[] got = reader.read(flushed);
                for (byte b : got) {
                    assertEquals(expected.removeFirst(), b);
                }
                flushed = 0;
            }
            assertEquals(0, expected.size());
            assertTrue(shortWrites > 10, "the socket took only part of the backlog " + shortWrites + " times");
            assertEquals(capacity, backlog.free());
        }
    }
}
