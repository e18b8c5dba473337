package io.vring.engine.chain;

import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.GuestRegion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.*;

/** The chain flyweight and its scatter-gather reader and writer. */
class DescriptorChainTest {
    private Arena arena;
    private MemorySegment low;
    private MemorySegment high;
    private GuestMemory memory;
    private final DescriptorChain chain = new DescriptorChain();

    @BeforeEach
    void setUp() {
        arena = Arena.ofShared();
        low = arena.allocate(0x1000, 4096);
        high = arena.allocate(0x1000, 4096);
        memory = GuestMemory.of(new GuestRegion(0x1000, 0x1000, 0x1000, 0, low),
                new GuestRegion(0x2000, 0x1000, 0x2000, 0, high));
        chain.reset(3);
    }

    @AfterEach
    void tearDown() {
        arena.close();
    }

    @Test
    void readableBuffersComeFirstThenWritableOnes() {
        assertEquals(DescriptorChain.APPENDED, chain.append(memory, 0x1100, 4, false));
        assertEquals(DescriptorChain.APPENDED, chain.append(memory, 0x1200, 4, false));
        assertEquals(DescriptorChain.APPENDED, chain.append(memory, 0x1300, 8, true));
        assertEquals(2, chain.readableCount());
        assertEquals(1, chain.writableCount());
        assertEquals(8, chain.readableBytes());
        assertEquals(8, chain.writableBytes());
        assertEquals(DescriptorChain.READABLE_AFTER_WRITABLE, chain.append(memory, 0x1400, 4, false));
    }

    @Test
    void anEmptyWritableDescriptorAlsoEndsTheReadablePart() {
        assertEquals(DescriptorChain.APPENDED, chain.append(memory, 0x1300, 0, true));
        assertEquals(DescriptorChain.READABLE_AFTER_WRITABLE, chain.append(memory, 0x1400, 4, false));
    }

    @Test
    void aBufferOverAdjacentRegionsBecomesOneBufferPerRegion() {
        assertEquals(DescriptorChain.APPENDED, chain.append(memory, 0x1FF0, 0x20, false));
        assertEquals(2, chain.bufferCount());
        assertSame(low, chain.segment(0));
        assertEquals(0xFF0, chain.offset(0));
        assertEquals(0x10, chain.length(0));
        assertSame(high, chain.segment(1));
        assertEquals(0, chain.offset(1));
        assertEquals(0x2000, chain.guestAddress(1));
    }

    @Test
    void aBufferRunningPastGuestMemoryIsRefusedAndLeavesTheChainAsItWas() {
        assertEquals(DescriptorChain.APPENDED, chain.append(memory, 0x1100, 4, false));
        assertEquals(DescriptorChain.OUTSIDE_MEMORY, chain.append(memory, 0x2FF0, 0x20, false));
        assertEquals(1, chain.bufferCount());
        assertEquals(4, chain.readableBytes());
    }

    @Test
    void aChainOfMoreThanFourGibibytesIsRefused() {
        assertEquals(DescriptorChain.APPENDED, chain.append(memory, 0x1000, 0, false));
        assertEquals(DescriptorChain.APPENDED, chain.append(memory, 0x1000, 0x800, false));
        assertEquals(DescriptorChain.TOO_LONG, chain.append(memory, 0x1000, -1, false)); // 0xFFFFFFFF + 0x800 > 2^32
    }

    @Test
    void readerAndWriterCopyAcrossBufferBoundariesInPieces() {
        for (int i = 0; i < 6; i++) {
            low.set(ValueLayout.JAVA_BYTE, 0x100 + i, (byte) ('a' + i));
        }
        chain.append(memory, 0x1100, 2, false);
        chain.append(memory, 0x1102, 3, false);
        chain.append(memory, 0x1105, 1, false);
        chain.append(memory, 0x1FFE, 4, true); // two writable buffers, across the region edge
        ChainReader reader = new ChainReader().reset(chain);
        byte[] got = new byte[8];
        assertEquals(1, reader.read(got, 0, 1));
        assertEquals(1, reader.skip(1));
        assertEquals(4, reader.read(got, 1, 8));
        assertEquals(0, reader.remaining());
        assertEquals("acdef", new String(got, 0, 5, java.nio.charset.StandardCharsets.US_ASCII));

        ChainWriter writer = new ChainWriter().reset(chain);
        assertEquals(3, writer.write(new byte[]{1, 2, 3}, 0, 3));
        assertEquals(1, writer.write(new byte[]{4, 5}, 0, 2), "only one writable byte left");
        assertEquals(4, writer.written());
        assertEquals(1, low.get(ValueLayout.JAVA_BYTE, 0xFFE));
        assertEquals(2, low.get(ValueLayout.JAVA_BYTE, 0xFFF));
        assertEquals(3, high.get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(4, high.get(ValueLayout.JAVA_BYTE, 1));
    }
}
