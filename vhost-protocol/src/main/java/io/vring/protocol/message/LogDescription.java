package io.vring.protocol.message;

import java.nio.ByteBuffer;

/** SET_LOG_BASE: the dirty log's mmap_size u64 and mmap_offset u64 in the fd that comes with it. */
public record LogDescription(long mmapSize, long mmapOffset) implements Payload {
    public static final int SIZE = 16;
    public static final int MMAP_SIZE = 0;
    public static final int MMAP_OFFSET = 8;

    @Override
    public int encodedSize() {
        return SIZE;
    }

    @Override
    public void encode(ByteBuffer dst) {
        PayloadView.reserve(dst, SIZE).putLong(MMAP_SIZE, mmapSize).putLong(MMAP_OFFSET, mmapOffset);
    }

    public static LogDescription decode(ByteBuffer src) {
        ByteBuffer b = PayloadView.exactly(src, SIZE, "log description");
        return new LogDescription(b.getLong(MMAP_SIZE), b.getLong(MMAP_OFFSET));
    }
}
