package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;

import java.nio.ByteBuffer;

/**
 * SET_VRING_ADDR: index u32, flags u32, then the descriptor, <b>used</b>, <b>avail</b> and log
 * addresses, u64 each, in that order (used comes before avail on the wire).
 *
 * <p>desc/used/avail are front-end user virtual addresses unless GPA_ADDRESSES is negotiated; for a
 * packed ring "used" is the device event-suppression area and "avail" the driver's. The log address is
 * guest-physical and only used to index the dirty log when {@link #FLAG_LOG} is set.
 */
public record VringAddress(int index, int flags, long descUserAddr, long usedUserAddr, long availUserAddr,
                           long logGuestAddr) implements Payload {
    public static final int SIZE = 40;
    public static final int INDEX = 0;
    public static final int FLAGS = 4;
    public static final int DESC = 8;
    public static final int USED = 16;
    public static final int AVAIL = 24;
    public static final int LOG = 32;
    /** VHOST_VRING_F_LOG: log writes to the used ring. */
    public static final int FLAG_LOG = 0x1;

    /** True if used-ring writes must be logged. */
    public boolean logsUsedRing() {
        return (flags & FLAG_LOG) != 0;
    }

    @Override
    public int encodedSize() {
        return SIZE;
    }

    @Override
    public void encode(ByteBuffer dst) {
        PayloadView.reserve(dst, SIZE).putInt(INDEX, index).putInt(FLAGS, flags).putLong(DESC, descUserAddr)
                .putLong(USED, usedUserAddr).putLong(AVAIL, availUserAddr).putLong(LOG, logGuestAddr);
    }

    /** Reads the 40 bytes; a flag other than {@link #FLAG_LOG} is InvalidParam. */
    public static VringAddress decode(ByteBuffer src) {
        ByteBuffer b = PayloadView.exactly(src, SIZE, "vring address");
        int flags = b.getInt(FLAGS);
        if ((flags & ~FLAG_LOG) != 0) {
            throw new VhostUserException(VhostUserError.InvalidParam,
                    "SET_VRING_ADDR for ring " + b.getInt(INDEX) + " has unknown flags 0x" + Integer.toHexString(flags));
        }
        return new VringAddress(b.getInt(INDEX), flags, b.getLong(DESC), b.getLong(USED), b.getLong(AVAIL),
                b.getLong(LOG));
    }

    @Override
    public String toString() {
        return "VringAddress[index=" + index + ", flags=" + flags + ", desc=0x" + Long.toHexString(descUserAddr)
                + ", used=0x" + Long.toHexString(usedUserAddr) + ", avail=0x" + Long.toHexString(availUserAddr)
                + ", log=0x" + Long.toHexString(logGuestAddr) + "]";
    }
}
