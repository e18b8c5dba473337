package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;

import java.nio.ByteBuffer;

/**
 * SET_DEVICE_STATE_FD: direction u32 (0 save: the back-end writes its state into the fd; 1 load: it
 * reads it) and phase u32 (0: the device is stopped, the only phase defined). Unknown values are
 * InvalidParam.
 */
public record DeviceStateTransfer(int direction, int phase) implements Payload {
    public static final int SIZE = 8;
    public static final int DIRECTION = 0;
    public static final int PHASE = 4;
    /** The back-end saves its state into the fd. */
    public static final int SAVE = 0;
    /** The back-end loads its state from the fd. */
    public static final int LOAD = 1;
    /** The device is stopped (all rings stopped). */
    public static final int PHASE_STOPPED = 0;
    /** Bit 8 of the u64 reply: the back-end sends no fd of its own. */
    public static final long REPLY_NO_FD = 0x100;
    /** Bits 0-7 of the u64 reply: 0 on success. */
    public static final long REPLY_ERROR_MASK = 0xFF;

    public DeviceStateTransfer {
        if (direction != SAVE && direction != LOAD) {
            throw new VhostUserException(VhostUserError.InvalidParam,
                    "SET_DEVICE_STATE_FD direction " + Integer.toUnsignedString(direction) + ", expected 0 (save) or 1 (load)");
        }
        if (phase != PHASE_STOPPED) {
            throw new VhostUserException(VhostUserError.InvalidParam,
                    "SET_DEVICE_STATE_FD phase " + Integer.toUnsignedString(phase) + ", expected 0 (stopped)");
        }
    }

    /** True for a save (back-end → fd). */
    public boolean saves() {
        return direction == SAVE;
    }

    @Override
    public int encodedSize() {
        return SIZE;
    }

    @Override
    public void encode(ByteBuffer dst) {
        PayloadView.reserve(dst, SIZE).putInt(DIRECTION, direction).putInt(PHASE, phase);
    }

    public static DeviceStateTransfer decode(ByteBuffer src) {
        ByteBuffer b = PayloadView.exactly(src, SIZE, "device state transfer");
        return new DeviceStateTransfer(b.getInt(DIRECTION), b.getInt(PHASE));
    }
}
