package io.vring.protocol;

import io.vring.engine.DriverQueue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Drives one ring of an {@link EchoBackend} from the front-end: requests of random length and
 * content in an area of guest memory the caller names, several in flight, each reply checked byte
 * for byte. Each slot of the area is a 256-byte request followed by a 256-byte reply buffer.
 */
final class EchoTraffic {
    static final int SLOT = 512;
    static final int MAX_REQUEST = 256;
    private static final long WAIT_MILLIS = 5_000;

    private final FrontendRing ring;
    private final MemorySegment area;
    private final long areaGpa;
    private final int slots;
    private final SplittableRandom random;
    /** By chain id: the slot and request length of each outstanding chain; -1 if none. */
    private final int[] slotOf;
    private final int[] lengthOf;
    private final boolean[] slotBusy;

    EchoTraffic(FrontendRing ring, MemorySegment area, long areaGpa, long seed) {
        this.ring = ring;
        this.area = area;
        this.areaGpa = areaGpa;
        this.slots = (int) Math.min(ring.queue().size() / 2, area.byteSize() / SLOT);
        this.random = new SplittableRandom(seed);
        this.slotOf = new int[65536];
        this.lengthOf = new int[65536];
        this.slotBusy = new boolean[slots];
        if (slots < 1) {
            throw new IllegalArgumentException("area of " + area.byteSize() + " bytes holds no slot");
        }
    }

    /** Sends {@code count} requests (at most one slot's worth in flight per slot) and checks every reply. */
    void run(int count) {
        DriverQueue q = ring.queue();
        int sent = 0;
        int received = 0;
        while (received < count) {
            int batch = 0;
            while (sent < count && batch < 8) {
                int slot = freeSlot();
                if (slot < 0) {
                    break;
                }
                int length = 1 + random.nextInt(MAX_REQUEST);
                long at = (long) slot * SLOT;
                for (int i = 0; i < length; i++) {
                    area.set(ValueLayout.JAVA_BYTE, at + i, (byte) random.nextInt());
                }
                area.asSlice(at + MAX_REQUEST, MAX_REQUEST).fill((byte) 0);
                q.addReadable(areaGpa + at, length);
                q.addWritable(areaGpa + at + MAX_REQUEST, MAX_REQUEST);
                int id = q.submit();
                if (id < 0) {
                    throw new AssertionError("ring full with " + q.outstanding() + " outstanding");
                }
                slotBusy[slot] = true;
                slotOf[id] = slot;
                lengthOf[id] = length;
                sent++;
                batch++;
            }
            if (batch > 0) {
                ring.publish();
            }
            if (!ring.awaitUsed(WAIT_MILLIS)) {
                throw new AssertionError(ring + ": no used chain within " + WAIT_MILLIS + " ms; sent " + sent
                        + ", received " + received + (q.isBroken() ? ", broken: " + q.brokenReason() : ""));
            }
            for (int id; (id = q.pollUsed()) >= 0; received++) {
                check(id, q.usedLength());
            }
        }
    }

    private void check(int id, int usedLength) {
        int slot = slotOf[id];
        int length = lengthOf[id];
        assertEquals(length, usedLength, "used length of chain " + id);
        long at = (long) slot * SLOT;
        for (int i = 0; i < length; i++) {
            byte sentByte = area.get(ValueLayout.JAVA_BYTE, at + i);
            byte echoed = area.get(ValueLayout.JAVA_BYTE, at + MAX_REQUEST + i);
            if (echoed != (byte) (sentByte + 1)) {
                throw new AssertionError("chain " + id + " byte " + i + ": sent " + sentByte + ", got " + echoed);
            }
        }
        slotBusy[slot] = false;
    }

    private int freeSlot() {
        for (int i = 0; i < slots; i++) {
            if (!slotBusy[i]) {
                return i;
            }
        }
        return -1;
    }
}
