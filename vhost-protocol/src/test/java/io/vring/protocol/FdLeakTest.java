package io.vring.protocol;

import io.vring.engine.memory.SharedMemory;
import io.vring.engine.notify.EventFd;
import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.MemoryRegion;
import io.vring.protocol.message.MemoryTable;
import io.vring.protocol.message.MessageHeader;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Every fd a connection receives is closed on every path: taken, untaken, rejected, cut short. */
class FdLeakTest {
    private static long openFds() throws IOException {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.count();
        }
    }

    private static void oneRoundOfEveryPath(SharedMemory memory, EventFd event) {
        try (ConnectionPair pair = Connection.pair()) {
            Connection fe = pair.first();
            Connection be = pair.second();
            List<MemoryRegion> regions = new ArrayList<>();
            int[] fds = new int[8];
            for (int i = 0; i < 8; i++) {
                regions.add(new MemoryRegion(i * 4096L, 4096, i * 4096L, 0));
                fds[i] = memory.fd();
            }
            // Taken and mapped, then released.
            fe.sendRequest(FrontendRequest.SET_MEM_TABLE, new MemoryTable(regions), false, fds);
            try (Message m = be.receive()) {
                for (int i = 0; i < 8; i++) {
                    SharedMemory.open(m.takeFd(i), 4096).close();
                }
            }
            // Never taken: the message closes them.
            fe.sendRequest(FrontendRequest.SET_MEM_TABLE, new MemoryTable(regions), false, fds);
            be.receive().close();
            // Rejected by the payload decoder after receipt.
            fe.sendRequest(FrontendRequest.SET_MEM_TABLE, new MemoryTable(regions.subList(0, 1)), false, event.fd(), event.fd());
            try (Message m = be.receive()) {
                assertThrows(VhostUserException.class, () -> MemoryTable.decode(m.payload(), m.fdCount()));
            }
            // Nine fds.
            int[] nine = new int[9];
            java.util.Arrays.fill(nine, event.fd());
            fe.writeRaw(MessageHeader.request(5, 0, false).encode(), nine);
            assertThrows(VhostUserException.class, be::receive);
            // Fds with the payload.
            fe.writeRaw(MessageHeader.request(12, 8, false).encode());
            fe.writeRaw(ByteBuffer.allocate(8), event.fd());
            assertThrows(VhostUserException.class, be::receive);
            // Oversized header with fds: the connection breaks.
            fe.writeRaw(new MessageHeader(5, 1, 5000).encode(), event.fd(), event.fd());
            assertThrows(VhostUserException.class, be::receive);
        }
        // Cut short inside the payload, with fds.
        try (ConnectionPair pair = Connection.pair()) {
            pair.first().writeRaw(MessageHeader.request(13, 8, false).encode(), event.fd());
            pair.first().close();
            assertThrows(VhostUserException.class, pair.second()::receive);
        }
    }

    @Test
    void aThousandMessagesWithFdsOnEveryPathLeaveTheFdCountUnchanged() throws IOException {
        try (SharedMemory memory = SharedMemory.create("leak", 4096); EventFd event = EventFd.create()) {
            oneRoundOfEveryPath(memory, event);   // warm up: junixsocket's library, class loading
            long before = openFds();
            for (int i = 0; i < 125; i++) {   // 8 messages with fds per round: 1000 messages
                oneRoundOfEveryPath(memory, event);
            }
            assertEquals(before, openFds());
        }
    }
}
