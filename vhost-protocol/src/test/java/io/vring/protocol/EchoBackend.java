package io.vring.protocol;

import io.vring.engine.DeviceQueue;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.protocol.message.ProtocolFeatures;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A device for end-to-end tests: every chain's readable bytes come back in its writable buffers with
 * 1 added to each byte. Its state is the number of chains it has served, which its 8-byte config space
 * shows and DEVICE_STATE saves and loads, so a test can see a state travel to a fresh back-end.
 */
final class EchoBackend implements Backend {
    static final int QUEUES = 2;
    /** Saved state: magic, then the count. */
    private static final long STATE_MAGIC = 0x6563686f_73746174L;

    final AtomicLong served = new AtomicLong();
    /** While set, chains are left in the ring (a back-end that hangs before it dies). */
    volatile boolean hold;
    private final ChainReader[] readers = new ChainReader[QUEUES];
    private final ChainWriter[] writers = new ChainWriter[QUEUES];
    private final byte[][] scratch = new byte[QUEUES][4096];

    EchoBackend() {
        for (int i = 0; i < QUEUES; i++) {
            readers[i] = new ChainReader();
            writers[i] = new ChainWriter();
        }
    }

    @Override
    public long features() {
        return VirtioFeatures.bit(VirtioFeatures.VERSION_1) | VirtioFeatures.bit(VirtioFeatures.EVENT_IDX)
                | VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC) | VirtioFeatures.bit(VirtioFeatures.RING_PACKED);
    }

    @Override
    public long protocolFeatures() {
        return ProtocolFeatures.bit(ProtocolFeatures.CONFIG) | ProtocolFeatures.bit(ProtocolFeatures.DEVICE_STATE);
    }

    @Override
    public int queueCount() {
        return QUEUES;
    }

    @Override
    public int configSize() {
        return 8;
    }

    @Override
    public void readConfig(int offset, byte[] dst) {
        byte[] all = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, served.get()).array();
        System.arraycopy(all, offset, dst, 0, dst.length);
    }

    @Override
    public int process(int queueIndex, DeviceQueue queue) {
        if (hold) {
            return 0;
        }
        ChainReader reader = readers[queueIndex];
        ChainWriter writer = writers[queueIndex];
        byte[] buf = scratch[queueIndex];
        int done = 0;
        for (DescriptorChain chain; (chain = queue.poll()) != null; done++) {
            reader.reset(chain);
            writer.reset(chain);
            int n = reader.read(buf, 0, (int) Math.min(buf.length, reader.remaining()));
            for (int i = 0; i < n; i++) {
                buf[i]++;
            }
            int written = writer.write(buf, 0, (int) Math.min(n, writer.remaining()));
            queue.addUsed(chain, written);
            served.incrementAndGet();
        }
        return done;
    }

    @Override
    public byte[] saveState() {
        return ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(0, STATE_MAGIC).putLong(8, served.get()).array();
    }

    @Override
    public void loadState(byte[] state) {
        ByteBuffer b = ByteBuffer.wrap(state).order(ByteOrder.LITTLE_ENDIAN);
        if (state.length != 16 || b.getLong(0) != STATE_MAGIC) {
            throw new VhostUserException(VhostUserError.InvalidParam, "not an echo device state: " + state.length + " bytes");
        }
        served.set(b.getLong(8));
    }
}
