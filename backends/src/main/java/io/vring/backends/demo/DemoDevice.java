package io.vring.backends.demo;

import io.vring.engine.DeviceQueue;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.SharedMemory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;

/**
 * The demo's device side: pops chains, reads each payload, checks the sequence number the driver
 * put in its first 8 bytes, completes the chain. Busy-polls. Runs as a thread of the demo or, with
 * {@link #main}, as the child process of the cross-process run.
 */
final class DemoDevice {
    private DemoDevice() {
    }

    /** Serves until the control page says stop; returns the chains served, or -1 on a failure. */
    static long serve(DeviceQueue queue, MemorySegment control, int batch, int payload) {
        ChainReader reader = new ChainReader();
        MemorySegment scratch = Arena.ofAuto().allocate(Math.max(payload, 8), 8);
        long expected = 0;
        DemoRing.set(control, DemoRing.READY, 1);
        while (true) {
            int done = 0;
            DescriptorChain chain;
            while (done < batch && (chain = queue.poll()) != null) {
                reader.reset(chain).read(scratch, 0, chain.readableBytes());
                long seq = scratch.get(ValueLayout.JAVA_LONG, 0);
                if (seq != expected) {
                    System.err.println("demo device: expected sequence " + expected + ", got " + seq);
                    DemoRing.set(control, DemoRing.FAILED, 1);
                    return -1;
                }
                expected++;
                queue.addUsed(chain, 0);
                done++;
            }
            if (done > 0) {
                queue.publish();
                queue.needsNotification(); // busy-poll: the driver polls, but the check is part of the real cost
            } else if (queue.isBroken()) {
                System.err.println("demo device: " + queue.brokenReason());
                DemoRing.set(control, DemoRing.FAILED, 1);
                return -1;
            } else if (DemoRing.get(control, DemoRing.STOP) != 0) {
                DemoRing.set(control, DemoRing.SERVED, expected);
                return expected;
            } else {
                Thread.onSpinWait();
            }
        }
    }

    /** Child process entry: {@code DemoDevice <memfd path> <bytes> <batch> <kind> <queue size> <payload>}. */
    public static void main(String[] args) {
        Path memfd = Path.of(args[0]);
        long bytes = Long.parseLong(args[1]);
        int batch = Integer.parseInt(args[2]);
        DemoRing ring = DemoRing.fromArgs(args, 3);
        try (SharedMemory shared = SharedMemory.openPath(memfd, bytes)) {
            GuestMemory memory = shared.guestMemory(0);
            DeviceQueue queue = ring.kind().device("demo device (child)", memory, ring.queueSize(),
                    ring.placement().rings(), DemoRing.FEATURES);
            long served = serve(queue, shared.segment(), batch, ring.payload());
            System.exit(served < 0 ? 1 : 0);
        }
    }
}
