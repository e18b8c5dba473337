package io.vring.backends.blk;

/**
 * The virtio-blk wire format (virtio 1.2, section 5.2): feature bits, request types, status codes,
 * the request header, the discard / write-zeroes range and the config space, as named constants.
 * Everything is little-endian.
 */
public final class BlkLayout {
    /** Bytes in a sector: every offset and capacity on the wire counts these, whatever blk_size is. */
    public static final int SECTOR_SIZE = 512;
    public static final int SECTOR_SHIFT = 9;

    // ---- feature bits (5.2.3) ----
    /** seg_max holds the most data segments one request may have. */
    public static final int F_SEG_MAX = 2;
    /** The disk is read-only: writes are refused. */
    public static final int F_RO = 5;
    /** blk_size holds the logical block size. */
    public static final int F_BLK_SIZE = 6;
    /** The device takes FLUSH requests. */
    public static final int F_FLUSH = 9;
    /** The driver may switch writeback / writethrough through the writeback field. */
    public static final int F_CONFIG_WCE = 11;
    /** num_queues holds the number of request queues. */
    public static final int F_MQ = 12;
    /** The device takes DISCARD requests. */
    public static final int F_DISCARD = 13;
    /** The device takes WRITE_ZEROES requests. */
    public static final int F_WRITE_ZEROES = 14;

    // ---- request header: le32 type, le32 reserved (ioprio), le64 sector (5.2.6) ----
    public static final int HEADER_SIZE = 16;
    public static final int HEADER_TYPE = 0;
    public static final int HEADER_SECTOR = 8;

    /** Read from the disk into the writable buffers. */
    public static final int T_IN = 0;
    /** Write the readable buffers to the disk. */
    public static final int T_OUT = 1;
    /** Make completed writes durable. */
    public static final int T_FLUSH = 4;
    /** Return the device id string (20 bytes, NUL-padded). */
    public static final int T_GET_ID = 8;
    /** The sectors' contents become unspecified. */
    public static final int T_DISCARD = 11;
    /** The sectors read back as zero. */
    public static final int T_WRITE_ZEROES = 13;

    /** Bytes of the GET_ID answer. */
    public static final int ID_BYTES = 20;

    // ---- status byte: the last writable byte of the chain ----
    public static final byte S_OK = 0;
    public static final byte S_IOERR = 1;
    public static final byte S_UNSUPP = 2;

    // ---- discard / write-zeroes range: le64 sector, le32 num_sectors, le32 flags ----
    public static final int RANGE_SIZE = 16;
    public static final int RANGE_SECTOR = 0;
    public static final int RANGE_NUM_SECTORS = 8;
    public static final int RANGE_FLAGS = 12;
    /** Range flag: the device may deallocate the sectors (write-zeroes) / must (discard, unsupported). */
    public static final int RANGE_FLAG_UNMAP = 1;

    // ---- config space (struct virtio_blk_config, 5.2.4) ----
    /** le64: disk size in 512-byte sectors. */
    public static final int CONFIG_CAPACITY = 0;
    /** le32: largest segment (F_SIZE_MAX; not offered). */
    public static final int CONFIG_SIZE_MAX = 8;
    /** le32: most data segments per request (F_SEG_MAX). */
    public static final int CONFIG_SEG_MAX = 12;
    /** le32: logical block size (F_BLK_SIZE). */
    public static final int CONFIG_BLK_SIZE = 20;
    /** u8: 1 writeback, 0 writethrough (F_CONFIG_WCE makes it writable). */
    public static final int CONFIG_WRITEBACK = 32;
    /** le16: request queues (F_MQ). */
    public static final int CONFIG_NUM_QUEUES = 34;
    /** le32: most sectors one discard range may cover. */
    public static final int CONFIG_MAX_DISCARD_SECTORS = 36;
    /** le32: most ranges per discard request. */
    public static final int CONFIG_MAX_DISCARD_SEG = 40;
    /** le32: discard ranges should be aligned to this many sectors. */
    public static final int CONFIG_DISCARD_SECTOR_ALIGNMENT = 44;
    /** le32: most sectors one write-zeroes range may cover. */
    public static final int CONFIG_MAX_WRITE_ZEROES_SECTORS = 48;
    /** le32: most ranges per write-zeroes request. */
    public static final int CONFIG_MAX_WRITE_ZEROES_SEG = 52;
    /** u8: 1 if write-zeroes with the unmap flag may deallocate. */
    public static final int CONFIG_WRITE_ZEROES_MAY_UNMAP = 56;
    /**
     * The config space the device serves: up to write_zeroes_may_unmap and its three bytes of padding.
     * QEMU 7.2 asks for 57 of them (it sizes the struct by the features it knows); the secure-erase
     * fields after byte 60 belong to a feature this device does not offer.
     */
    public static final int CONFIG_SIZE = 60;

    private BlkLayout() {
    }
}
