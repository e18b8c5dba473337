package io.vring.engine.packed;

import io.vring.engine.chain.DescriptorChain;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A packed device queue resumed at the positions an earlier one stopped at (vhost-user's
 * SET_VRING_BASE after GET_VRING_BASE): chains the earlier queue left in flight can still be
 * completed by token, new chains are read from the right slot, and impossible positions break the
 * queue instead of being trusted.
 */
class PackedResumeTest {
    private static final int WRAP = 1 << PackedLayout.EVENT_WRAP_BIT;

    @Test
    void aResumedQueueCompletesWhatTheOldOneLeftInFlightAndReadsOnPastTheWrap() {
        int size = 8;
        try (PackedRig rig = new PackedRig(size, 1)) {
            PackedDriverQueue driver = rig.driver(0, PackedRig.PLAIN);
            PackedDeviceQueue first = rig.device(0, PackedRig.PLAIN);
            Set<Integer> completed = new HashSet<>();
            // Three laps of single-descriptor chains: the positions cross the wrap twice.
            for (int i = 0; i < 2 * size + 3; i++) {
                driver.addWritable(rig.writable(0, i % size), 8);
                driver.submit();
                driver.publish();
                DescriptorChain c = first.poll();
                first.addUsed(c, 0);
                first.publish();
                assertTrue(driver.pollUsed() >= 0);
            }
            List<Integer> heldTokens = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                driver.addWritable(rig.writable(0, i), 8);
                completed.add(driver.submit());
            }
            driver.publish();
            for (int i = 0; i < 3; i++) {
                heldTokens.add(first.poll().token());
            }
            int avail = first.availPosition();
            int used = first.usedPosition();
            assertEquals((2 * size + 6) % size | WRAP, avail, "22 slots: third lap, wrap counter back to 1");
            assertEquals((2 * size + 3) % size | WRAP, used);

            PackedDeviceQueue resumed = new PackedDeviceQueue("resumed", rig.guarded.memory, size, rig.rings(0),
                    PackedRig.PLAIN, avail, used);
            assertFalse(resumed.isBroken(), () -> resumed.brokenReason());
            assertNull(resumed.poll(), "nothing new is available");
            for (int token : heldTokens.reversed()) {
                resumed.addUsed(token, 8);
            }
            resumed.publish();
            for (int i = 0; i < 3; i++) {
                int id = driver.pollUsed();
                assertTrue(completed.remove(id), "id " + id + " completed once");
            }
            driver.addWritable(rig.writable(0, 5), 8);
            int id = driver.submit();
            driver.publish();
            DescriptorChain next = resumed.poll();
            assertNotNull(next, "the resumed queue reads the next chain at its avail position");
            resumed.addUsed(next, 0);
            resumed.publish();
            assertEquals(id, driver.pollUsed());
        }
    }

    @Test
    void impossiblePositionsBreakTheQueueWithAReason() {
        int size = 8;
        try (PackedRig rig = new PackedRig(size, 1)) {
            PackedDeviceQueue outside = new PackedDeviceQueue("outside", rig.guarded.memory, size, rig.rings(0),
                    PackedRig.PLAIN, 9 | WRAP, WRAP);
            assertTrue(outside.isBroken());
            assertTrue(outside.brokenReason().contains("outside a ring of 8"), outside.brokenReason());
            PackedDeviceQueue usedAhead = new PackedDeviceQueue("ahead", rig.guarded.memory, size, rig.rings(0),
                    PackedRig.PLAIN, 2 | WRAP, 5 | WRAP);
            assertTrue(usedAhead.isBroken());
            assertTrue(usedAhead.brokenReason().contains("ahead of avail"), usedAhead.brokenReason());
            PackedDeviceQueue fullLap = new PackedDeviceQueue("lap", rig.guarded.memory, size, rig.rings(0),
                    PackedRig.PLAIN, 3, 3 | WRAP);
            assertFalse(fullLap.isBroken(), "avail a whole lap ahead of used: every slot in flight");
        }
    }
}
