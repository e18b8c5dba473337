package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.HexFormat;

/**
 * GET_CONFIG / SET_CONFIG: offset u32, size u32, flags u32, then {@code size} bytes of config space
 * (at most 256, QEMU's VHOST_USER_MAX_CONFIG_SIZE). A GET_CONFIG request carries zeroed data of the
 * wanted size, and the reply must have the same size.
 *
 * <p>Flags: QEMU sends an enum, 0 for a front-end write and 1 for a live-migration write; rust-vmm and
 * crosvm read the same word as bitflags (WRITABLE 0x1, LIVE_MIGRATION 0x2), so a QEMU migration write
 * looks "writable" to them. The value is kept as sent.
 */
public record DeviceConfig(int offset, int flags, byte[] data) implements Payload {
    public static final int OFFSET = 0;
    public static final int SIZE_FIELD = 4;
    public static final int FLAGS = 8;
    /** Offset of the config bytes. */
    public static final int DATA = 12;
    /** The most config bytes in one message. */
    public static final int MAX_DATA = 256;
    /** Flags value of a normal front-end write. */
    public static final int FLAG_FRONTEND = 0;
    /** Flags value of a write during live migration (read-only fields may be written). */
    public static final int FLAG_MIGRATION = 1;
    /** 12 to 268 bytes. */
    public static final SizeRule SIZE_RULE = SizeRule.between(DATA, DATA + MAX_DATA);

    public DeviceConfig {
        data = data.clone();
        if (data.length > MAX_DATA) {
            throw new IllegalArgumentException(data.length + " config bytes, at most " + MAX_DATA);
        }
    }

    /** A GET_CONFIG request for {@code length} bytes at {@code offset}: zeroed data. */
    public static DeviceConfig request(int offset, int length) {
        return new DeviceConfig(offset, FLAG_FRONTEND, new byte[length]);
    }

    /** The config bytes (a copy). */
    @Override
    public byte[] data() {
        return data.clone();
    }

    /** The number of config bytes. */
    public int length() {
        return data.length;
    }

    @Override
    public int encodedSize() {
        return DATA + data.length;
    }

    @Override
    public void encode(ByteBuffer dst) {
        ByteBuffer b = PayloadView.reserve(dst, encodedSize());
        b.putInt(OFFSET, offset).putInt(SIZE_FIELD, data.length).putInt(FLAGS, flags).put(DATA, data);
    }

    /**
     * Reads a config payload: 12 to 268 bytes whose size field equals the bytes that follow, with
     * {@code offset + size} inside the 4 KiB config window (rust-vmm's VHOST_USER_CONFIG_SIZE).
     */
    public static DeviceConfig decode(ByteBuffer src) {
        ByteBuffer b = PayloadView.checked(src, SIZE_RULE, "config");
        int offset = b.getInt(OFFSET);
        int size = b.getInt(SIZE_FIELD);
        if (size != b.remaining() - DATA) {
            throw new VhostUserException(VhostUserError.InvalidMessage, "config size field " + Integer.toUnsignedString(size)
                    + " but " + (b.remaining() - DATA) + " config bytes follow");
        }
        if (Integer.toUnsignedLong(offset) + size > MessageHeader.MAX_PAYLOAD) {
            throw new VhostUserException(VhostUserError.InvalidParam, "config offset " + Integer.toUnsignedString(offset)
                    + " + size " + size + " is past the 4096-byte config window");
        }
        byte[] data = new byte[size];
        b.get(DATA, data);
        return new DeviceConfig(offset, b.getInt(FLAGS), data);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof DeviceConfig c && c.offset == offset && c.flags == flags && Arrays.equals(c.data, data);
    }

    @Override
    public int hashCode() {
        return 31 * (31 * offset + flags) + Arrays.hashCode(data);
    }

    @Override
    public String toString() {
        return "DeviceConfig[offset=" + offset + ", flags=" + flags + ", data=" + HexFormat.of().formatHex(data) + "]";
    }
}
