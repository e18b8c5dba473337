package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;

import java.nio.ByteBuffer;
import java.util.List;

/**
 * SET_MEM_TABLE: u32 region count, u32 padding (zero), then that many 32-byte {@link MemoryRegion}s,
 * one fd per region in the same order. QEMU sends at most 8 regions and only as many entries as it
 * uses. An empty table is legal on the wire (postcopy's acknowledgement); whether a back-end accepts
 * one is its business.
 */
public record MemoryTable(List<MemoryRegion> regions) implements Payload {
    /** The most regions (and so fds) in one table: QEMU's VHOST_MEMORY_BASELINE_NREGIONS. */
    public static final int MAX_REGIONS = 8;
    public static final int NUM_REGIONS = 0;
    public static final int PADDING = 4;
    /** Offset of the first region. */
    public static final int REGIONS = 8;
    /** 8 + 32 n bytes for n from 0 to 8. */
    public static final SizeRule SIZE_RULE = SizeRule.stepping(REGIONS, REGIONS + MAX_REGIONS * MemoryRegion.SIZE,
            MemoryRegion.SIZE);

    public MemoryTable {
        regions = List.copyOf(regions);
        if (regions.size() > MAX_REGIONS) {
            throw new IllegalArgumentException(regions.size() + " memory regions, at most " + MAX_REGIONS);
        }
    }

    @Override
    public int encodedSize() {
        return REGIONS + regions.size() * MemoryRegion.SIZE;
    }

    @Override
    public void encode(ByteBuffer dst) {
        ByteBuffer b = PayloadView.reserve(dst, encodedSize());
        b.putInt(NUM_REGIONS, regions.size()).putInt(PADDING, 0).position(REGIONS);
        for (MemoryRegion r : regions) {
            r.encode(b);
        }
    }

    /**
     * Reads a table that arrived with {@code fdCount} fds. The count field, the payload size and the fd
     * count must all agree, the padding must be zero, and every region must be valid.
     *
     * @throws VhostUserException InvalidMessage for sizes, IncorrectFds for the fd count, InvalidParam
     *                            for padding, a count over 8 or a bad region
     */
    public static MemoryTable decode(ByteBuffer src, int fdCount) {
        if (src.remaining() < REGIONS) {
            throw new VhostUserException(VhostUserError.InvalidMessage,
                    "SET_MEM_TABLE payload must be at least " + REGIONS + " bytes, got " + src.remaining());
        }
        ByteBuffer head = src.slice().order(java.nio.ByteOrder.LITTLE_ENDIAN);
        long count = Integer.toUnsignedLong(head.getInt(NUM_REGIONS));
        int padding = head.getInt(PADDING);
        if (count > MAX_REGIONS) {
            throw new VhostUserException(VhostUserError.InvalidParam,
                    "SET_MEM_TABLE num_regions " + count + ", at most " + MAX_REGIONS);
        }
        int n = (int) count;
        ByteBuffer b = PayloadView.exactly(src, REGIONS + n * MemoryRegion.SIZE,
                "SET_MEM_TABLE with num_regions " + n);
        if (padding != 0) {
            throw new VhostUserException(VhostUserError.InvalidParam,
                    "SET_MEM_TABLE padding 0x" + Integer.toHexString(padding) + ", must be 0");
        }
        if (fdCount != n) {
            throw new VhostUserException(VhostUserError.IncorrectFds,
                    "SET_MEM_TABLE with num_regions " + n + " expects " + n + " fds, got " + fdCount);
        }
        MemoryRegion[] regions = new MemoryRegion[n];
        for (int i = 0; i < n; i++) {
            regions[i] = MemoryRegion.decode(b.slice(REGIONS + i * MemoryRegion.SIZE, MemoryRegion.SIZE));
        }
        return new MemoryTable(List.of(regions));
    }
}
