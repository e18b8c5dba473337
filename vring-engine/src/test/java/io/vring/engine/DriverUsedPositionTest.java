package io.vring.engine;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The driver's used position is where a front-end resumes a ring whose back-end died without inflight
 * tracking (QEMU's rewind): it follows what the driver collected, not what the device published, and
 * matches the device's own used position once everything is collected, across the ring's end.
 */
class DriverUsedPositionTest {

    @ParameterizedTest(name = "{0}")
    @EnumSource(RingFixture.Kind.class)
    void theDriversUsedPositionFollowsWhatItCollectedAcrossTheRingEnd(RingFixture.Kind kind) {
        int size = 8;
        long features = VirtioFeatures.bit(VirtioFeatures.VERSION_1)
                | (kind == RingFixture.Kind.PACKED ? VirtioFeatures.bit(VirtioFeatures.RING_PACKED) : 0);
        try (RingFixture f = new RingFixture(kind, size, features, 4096)) {
            int fresh = kind == RingFixture.Kind.PACKED ? 1 << 15 : 0;
            assertEquals(fresh, f.driver.usedPosition(), "a fresh ring: slot 0, wrap counter 1 for packed");
            for (int round = 0; round < 5; round++) {
                for (int i = 0; i < 3; i++) {
                    f.driver.addWritable(f.dataGpa + i * 64L, 64);
                    f.driver.submit();
                }
                f.driver.publish();
                for (int i = 0; i < 3; i++) {
                    f.device.addUsed(f.device.poll(), 1);
                }
                f.device.publish();
                int before = f.driver.usedPosition();
                f.driver.pollUsed();
                assertEquals(advance(kind, before, size), f.driver.usedPosition(), "one chain collected");
                f.driver.pollUsed();
                f.driver.pollUsed();
                assertEquals(f.device.usedPosition(), f.driver.usedPosition(), "round " + round + ": all collected");
            }
            // 15 one-descriptor chains on a ring of 8: past the end, once for split's index, once for packed's wrap.
            int expected = kind == RingFixture.Kind.PACKED ? 7 : 15;
            assertEquals(expected, f.driver.usedPosition() & 0x7FFF);
        }
    }

    private static int advance(RingFixture.Kind kind, int position, int size) {
        if (kind == RingFixture.Kind.SPLIT) {
            return (position + 1) & 0xFFFF;
        }
        int slot = (position & 0x7FFF) + 1;
        int wrap = position >>> 15;
        return slot == size ? (wrap ^ 1) << 15 : slot | wrap << 15;
    }
}
