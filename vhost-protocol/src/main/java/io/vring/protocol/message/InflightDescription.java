package io.vring.protocol.message;

import java.nio.ByteBuffer;

/**
 * GET_INFLIGHT_FD / SET_INFLIGHT_FD: mmap_size u64, mmap_offset u64, num_queues u16, queue_size u16,
 * then 4 bytes of C padding: 24 bytes on the wire in every implementation. In a GET request the sizes
 * are 0 and the queue fields set; {@code mmapSize == 0} in the reply means the back-end declined.
 */
public record InflightDescription(long mmapSize, long mmapOffset, int numQueues, int queueSize) implements Payload {
    public static final int SIZE = 24;
    public static final int MMAP_SIZE = 0;
    public static final int MMAP_OFFSET = 8;
    public static final int NUM_QUEUES = 16;
    public static final int QUEUE_SIZE = 18;

    public InflightDescription {
        PayloadView.u16("num_queues", numQueues);
        PayloadView.u16("queue_size", queueSize);
    }

    @Override
    public int encodedSize() {
        return SIZE;
    }

    @Override
    public void encode(ByteBuffer dst) {
        PayloadView.reserve(dst, SIZE).putLong(MMAP_SIZE, mmapSize).putLong(MMAP_OFFSET, mmapOffset)
                .putShort(NUM_QUEUES, (short) numQueues).putShort(QUEUE_SIZE, (short) queueSize).putInt(20, 0);
    }

    public static InflightDescription decode(ByteBuffer src) {
        ByteBuffer b = PayloadView.exactly(src, SIZE, "inflight description");
        return new InflightDescription(b.getLong(MMAP_SIZE), b.getLong(MMAP_OFFSET),
                Short.toUnsignedInt(b.getShort(NUM_QUEUES)), Short.toUnsignedInt(b.getShort(QUEUE_SIZE)));
    }
}
