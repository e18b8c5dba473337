package io.vring.engine;

import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.notify.EventFd;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * The device side of {@code CrossProcessTest}, in its own JVM: maps the parent's memfd through
 * {@code /proc/<parent>/fd/<n>}, opens the device side of the queue the parent placed there, and
 * serves {@code chains} chains: reads each 64-byte payload, writes {@link #reply} of it, publishes.
 * With eventfds (duplicated from the parent with pidfd_getfd) it sleeps on the kick with the
 * enable/fence/re-check handshake and calls when the driver wants it; otherwise it busy-polls.
 * Exits 0 when done, 2 on a broken queue, 3 if the parent's eventfds cannot be had, 4 if the
 * parent went away.
 *
 * <p>Arguments: kind size parentPid memfd totalBytes descGpa driverGpa deviceGpa features chains
 * kickFd callFd (the two fds -1 for busy-poll).
 */
public final class CrossProcessDeviceMain {
    static final int PAYLOAD = 64;
    /** How long one sleep on the kick lasts at most before the worker looks whether its kick is overdue. */
    private static final long AWAIT_MILLIS = 1_000;

    /** The reply the device writes for a 64-byte payload: reversed, each byte scrambled with its position. */
    static byte reply(MemorySegment payload, long offset, int i) {
        return (byte) (payload.get(ValueLayout.JAVA_BYTE, offset + PAYLOAD - 1 - i) * 31 + i);
    }

    public static void main(String[] a) throws Exception {
        RingKind kind = RingKind.valueOf(a[0]);
        int size = Integer.parseInt(a[1]);
        long parent = Long.parseLong(a[2]);
        int memfd = Integer.parseInt(a[3]);
        long total = Long.parseLong(a[4]);
        RingAddresses rings = new RingAddresses(Long.parseLong(a[5]), Long.parseLong(a[6]), Long.parseLong(a[7]));
        long features = Long.parseLong(a[8]);
        long chains = Long.parseLong(a[9]);
        int kickFd = Integer.parseInt(a[10]);
        int callFd = Integer.parseInt(a[11]);
        EventFd kick = null;
        EventFd call = null;
        if (kickFd >= 0) {
            try {
                kick = EventFd.wrap(ProcessFd.duplicate(parent, kickFd));
                call = EventFd.wrap(ProcessFd.duplicate(parent, callFd));
            } catch (IllegalStateException e) {
                System.out.println("EVENTFD-UNAVAILABLE " + e.getMessage());
                System.exit(3);
            }
        }
        try (SharedMemory memory = SharedMemory.openPath(Path.of("/proc/" + parent + "/fd/" + memfd), total);
             Arena arena = Arena.ofConfined()) {
            DeviceQueue q = kind.device("child device", memory.guestMemory(0), size, rings, features);
            MemorySegment scratch = arena.allocate(2 * PAYLOAD, 8);
            ChainReader reader = new ChainReader();
            ChainWriter writer = new ChainWriter();
            long served = 0;
            long lostKicks = 0;
            long sleeps = 0;
            long calls = 0;
            long idleSince = 0;
            while (served < chains) {
                int n = 0;
                DescriptorChain c;
                while ((c = q.poll()) != null) {
                    long got = reader.reset(c).read(scratch, 0, PAYLOAD);
                    for (int i = 0; i < PAYLOAD; i++) {
                        scratch.set(ValueLayout.JAVA_BYTE, PAYLOAD + i, reply(scratch, 0, i));
                    }
                    long wrote = got == PAYLOAD ? writer.reset(c).write(scratch, PAYLOAD, PAYLOAD) : 0;
                    q.addUsed(c, (int) wrote);
                    n++;
                }
                if (q.isBroken()) {
                    System.out.println("BROKEN " + q.brokenReason());
                    System.exit(2);
                }
                if (n > 0) {
                    q.publish();
                    served += n;
                    idleSince = 0;
                    if (q.needsNotification() && call != null) {
                        calls++;
                        call.signal();
                    }
                    continue;
                }
                if (kick != null) {
                    if (!q.enableNotification()) {
                        sleeps++;
                        // Timed out with a chain there: the kick may just be late (the driver between
                        // publish and signal); lost if it does not come within the grace time.
                        if (!kick.await(AWAIT_MILLIS) && q.hasAvailable() && !kick.await(CrossProcessTest.LATE_MILLIS)) {
                            lostKicks++;
                        }
                    }
                    q.disableNotification();
                } else {
                    Thread.onSpinWait();
                }
                long now = System.nanoTime();
                if (idleSince == 0) {
                    idleSince = now;
                } else if (now - idleSince > TimeUnit.SECONDS.toNanos(1)) {
                    idleSince = now;
                    if (!ProcessHandle.of(parent).map(ProcessHandle::isAlive).orElse(false)) {
                        System.out.println("PARENT-GONE after " + served);
                        System.exit(4);
                    }
                }
            }
            System.out.println("SERVED " + served + " sleeps=" + sleeps + " calls=" + calls + " lostKicks=" + lostKicks);
        } finally {
            if (kick != null) {
                kick.close();
                call.close();
            }
        }
    }

    private CrossProcessDeviceMain() {
    }
}
