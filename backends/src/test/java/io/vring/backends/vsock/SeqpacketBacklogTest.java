package io.vring.backends.vsock;

import io.vring.engine.os.Libc;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.newsclub.net.unix.AFUNIXDatagramChannel;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The guest-to-host message backlog of a SEQPACKET connection, against a real SOCK_SEQPACKET socket
 * pair (our fd from {@link Libc#unixConnect}, the host's end from junixsocket): each message leaves
 * as one record, in order, also after the bytes moved to the front of the buffer and after the ring
 * of lengths grew; a message not yet ended never leaves.
 */
@Timeout(30)
class SeqpacketBacklogTest {
    @TempDir
    Path dir;

    @Test
    void messagesLeaveWholeAndInOrderAcrossACompactionAndTheMessageBeingAssembledStays() throws Exception {
        try (AFUNIXDatagramChannel listener = SeqpacketHostEnd.listen(dir.resolve("l"))) {
            int fd = Libc.unixConnect(dir.resolve("l"), Libc.SOCK_SEQPACKET);
            try (SeqpacketHostEnd host = SeqpacketHostEnd.accept(listener)) {
                byte[] bytes = GuestToHostTest.bytes(new SplittableRandom(9), 200);
                MemorySegment source = MemorySegment.ofArray(bytes);
                SeqpacketBacklog backlog = new SeqpacketBacklog(100);
                backlog.append(source, 0, 60);
                backlog.endMessage();
                backlog.append(source, 60, 30);
                assertEquals(90, backlog.size());
                assertEquals(30, backlog.assembling());
                assertEquals(60, backlog.flush(fd), "only the ended message leaves");
                assertArrayEquals(java.util.Arrays.copyOfRange(bytes, 0, 60), host.receive());
                assertNull(host.poll(), "the half message stays");
                // 30 bytes held at offset 60: 20 more do not fit behind them, so they move to the front.
                backlog.append(source, 90, 20);
                backlog.endMessage();
                assertEquals(50, backlog.flush(fd));
                assertArrayEquals(java.util.Arrays.copyOfRange(bytes, 60, 110), host.receive());
                assertEquals(0, backlog.size());
            } finally {
                Libc.close(fd);
            }
        }
    }

    @Test
    void aBufferFullOfOneByteMessagesGrowsTheLengthsOnceAndKeepsEveryBoundary() throws Exception {
        try (AFUNIXDatagramChannel listener = SeqpacketHostEnd.listen(dir.resolve("l"))) {
            int fd = Libc.unixConnect(dir.resolve("l"), Libc.SOCK_SEQPACKET);
            try (SeqpacketHostEnd host = SeqpacketHostEnd.accept(listener)) {
                SeqpacketBacklog backlog = new SeqpacketBacklog(64);
                MemorySegment one = MemorySegment.ofArray(new byte[1]);
                for (int i = 0; i < 64; i++) {
                    one.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (byte) i);
                    backlog.append(one, 0, 1);
                    backlog.endMessage();
                }
                backlog.endMessage(); // an empty message is not kept
                assertEquals(64, backlog.messages());
                assertEquals(64, backlog.flush(fd));
                for (int i = 0; i < 64; i++) {
                    assertArrayEquals(new byte[] {(byte) i}, host.receive(), "record " + i);
                }
                assertNull(host.poll());
            } finally {
                Libc.close(fd);
            }
        }
    }
}
