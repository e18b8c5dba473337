package io.vring.backends.rng;

import io.vring.engine.DeviceQueue;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.DescriptorChain;
import io.vring.protocol.Backend;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A virtio entropy device (virtio-rng, device id 4): one queue, no config space. The driver offers
 * writable buffers; the device fills them with random bytes and returns them. The whole device is
 * this class: see {@code docs/WRITING-A-BACKEND.md}.
 */
public final class RngBackend implements Backend {
    /** Bytes handed out per chain at most, as vhost-device-rng does: a hostile driver cannot ask for gigabytes at once. */
    static final int MAX_BYTES_PER_CHAIN = 64 << 10;

    private final EntropySource source;
    private final byte[] scratch = new byte[MAX_BYTES_PER_CHAIN];
    private final MemorySegment scratchSegment = MemorySegment.ofArray(scratch);
    private final AtomicLong bytesServed = new AtomicLong();
    private final AtomicLong requestsServed = new AtomicLong();

    public RngBackend(EntropySource source) {
        this.source = source;
    }

    @Override
    public long features() {
        return VirtioFeatures.RING_FEATURES | VirtioFeatures.bit(VirtioFeatures.IN_ORDER); // it completes in order
    }

    @Override
    public int queueCount() {
        return 1;
    }

    /** Runs on the ring's worker thread: fill every writable buffer of every available chain. */
    @Override
    public int process(int queueIndex, DeviceQueue queue) {
        int done = 0;
        for (DescriptorChain chain; (chain = queue.poll()) != null; done++) {
            int written = 0;
            for (int i = chain.readableCount(); i < chain.bufferCount() && written < MAX_BYTES_PER_CHAIN; i++) {
                int n = Math.min(chain.length(i), MAX_BYTES_PER_CHAIN - written);
                source.fill(scratch, n);
                MemorySegment.copy(scratchSegment, 0, chain.segment(i), chain.offset(i), n);
                written += n;
            }
            queue.addUsed(chain, written);
            bytesServed.addAndGet(written);
        }
        requestsServed.addAndGet(done);
        return done;
    }

    /** Random bytes written to the driver so far. */
    public long bytesServed() {
        return bytesServed.get();
    }

    /** Chains completed so far. */
    public long requestsServed() {
        return requestsServed.get();
    }
}
