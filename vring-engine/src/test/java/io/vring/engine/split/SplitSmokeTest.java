package io.vring.engine.split;

import io.vring.engine.IndirectArea;
import io.vring.engine.RingAddresses;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.GuestRegion;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static org.junit.jupiter.api.Assertions.*;

class SplitSmokeTest {
    @Test
    void chainsRoundTripThroughDeviceAndDriver() {
        for (long features : new long[]{0, VirtioFeatures.bit(VirtioFeatures.EVENT_IDX) | VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC),
                VirtioFeatures.bit(VirtioFeatures.IN_ORDER) | VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC)}) {
            MemorySegment seg = Arena.ofShared().allocate(1 << 20, 4096);
            GuestMemory mem = GuestMemory.of(new GuestRegion(0x10000, seg.byteSize(), 0x10000, 0, seg));
            int n = 8;
            RingAddresses rings = new RingAddresses(0x10000, 0x11000, 0x12000);
            var driver = new SplitDriverQueue("d", mem, n, rings, features,
                    VirtioFeatures.has(features, VirtioFeatures.INDIRECT_DESC) ? new IndirectArea(0x20000, 4) : null);
            var device = new SplitDeviceQueue("q", mem, n, rings, features);
            ChainReader reader = new ChainReader();
            ChainWriter writer = new ChainWriter();
            for (int round = 0; round < 70_000; round++) {
                long buf = 0x40000 + (round % n) * 128L;
                seg.set(java.lang.foreign.ValueLayout.JAVA_LONG, buf - 0x10000, round);
                driver.addReadable(buf, 8);
                driver.addWritable(buf + 64, 16);
                int id = (round % 3 == 0 && VirtioFeatures.has(features, VirtioFeatures.INDIRECT_DESC)) ? driver.submitIndirect() : driver.submit();
                assertTrue(id >= 0);
                driver.publish();
                driver.needsKick();
                DescriptorChain c = device.poll();
                assertNotNull(c, device.toString());
                assertEquals(8, c.readableBytes());
                assertEquals(16, c.writableBytes());
                byte[] b = new byte[8];
                reader.reset(c).read(b, 0, 8);
                assertEquals(round, java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong());
                writer.reset(c).write(b, 0, 8);
                device.addUsed(c, (int) writer.written());
                device.publish();
                device.needsNotification();
                assertEquals(id, driver.pollUsed());
                assertEquals(8, driver.usedLength());
                assertEquals(-1, driver.pollUsed());
            }
            assertFalse(device.isBroken());
        }
    }
}
