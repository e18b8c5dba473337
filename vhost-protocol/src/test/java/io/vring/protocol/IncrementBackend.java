package io.vring.protocol;

import io.vring.engine.DeviceQueue;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.DescriptorChain;
import io.vring.protocol.message.ProtocolFeatures;

import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A test device with two queues: each chain carries a readable u32 and a writable u32; the device
 * writes the value plus one. Proves data crossed the ring both ways. It keeps a little config
 * space (16 bytes, writable) and saves/loads its request counter as its state.
 */
final class IncrementBackend implements Backend {
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    final AtomicInteger processed = new AtomicInteger();
    final AtomicInteger resets = new AtomicInteger();
    final byte[] config = new byte[16];
    /** While set, chains whose value is a multiple of 3 are popped but never completed (a crash loses them). */
    volatile boolean holdMultiplesOfThree;
    /** A queue whose next process() call throws, as a buggy device would; -1 for none. */
    volatile int failingQueue = -1;

    @Override
    public long features() {
        return VirtioFeatures.RING_FEATURES | VirtioFeatures.bit(VirtioFeatures.IN_ORDER);
    }

    @Override
    public long protocolFeatures() {
        return ProtocolFeatures.bit(ProtocolFeatures.CONFIG) | ProtocolFeatures.bit(ProtocolFeatures.DEVICE_STATE)
                | ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD);
    }

    @Override
    public int queueCount() {
        return 2;
    }

    @Override
    public int configSize() {
        return config.length;
    }

    @Override
    public synchronized void readConfig(int offset, byte[] dst) {
        System.arraycopy(config, offset, dst, 0, dst.length);
    }

    @Override
    public synchronized void writeConfig(int offset, byte[] src) {
        System.arraycopy(src, 0, config, offset, src.length);
    }

    @Override
    public int process(int queueIndex, DeviceQueue queue) {
        if (failingQueue == queueIndex) {
            failingQueue = -1;
            throw new IllegalStateException("test device failure");
        }
        int done = 0;
        for (DescriptorChain c; (c = queue.poll()) != null; done++) {
            int value = c.segment(0).get(U32, c.offset(0));
            if (holdMultiplesOfThree && value % 3 == 0) {
                continue;
            }
            int w = c.readableCount();
            c.segment(w).set(U32, c.offset(w), value + 1);
            queue.addUsed(c, 4);
        }
        processed.addAndGet(done);
        return done;
    }

    @Override
    public void reset() {
        resets.incrementAndGet();
    }

    @Override
    public byte[] saveState() {
        int n = processed.get();
        return new byte[] {(byte) n, (byte) (n >>> 8), (byte) (n >>> 16), (byte) (n >>> 24)};
    }

    @Override
    public void loadState(byte[] state) {
        if (state.length != 4) {
            throw new VhostUserException(VhostUserError.InvalidParam, "state of " + state.length + " bytes, expected 4");
        }
        processed.set((state[0] & 0xFF) | (state[1] & 0xFF) << 8 | (state[2] & 0xFF) << 16 | (state[3] & 0xFF) << 24);
    }
}
