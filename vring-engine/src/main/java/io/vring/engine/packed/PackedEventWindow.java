package io.vring.engine.packed;

/**
 * The packed-ring form of {@code vring_need_event}: did the slot the peer named in its event
 * suppression structure get passed by the slots published since the last check?
 *
 * <p>Slots live in {@code [0, size)} and carry a wrap bit. Both ends of the window and the event
 * slot are "unwrapped" onto one line by subtracting {@code size} from anything that belongs to the
 * previous lap, then compared in u16 arithmetic exactly as the split ring compares indices.
 */
final class PackedEventWindow {

    /** True iff {@code event} lies in {@code [oldIdx, newIdx)}, all modulo 2^16. */
    static boolean needEvent(int event, int newIdx, int oldIdx) {
        return ((newIdx - event - 1) & 0xFFFF) < ((newIdx - oldIdx) & 0xFFFF);
    }

    /**
     * The event slot of {@code offWrap} placed on the line of a side whose position has wrap counter
     * {@code currentWrap}: an event slot of the other lap is taken to be in the previous one.
     */
    static int eventSlot(int offWrap, int currentWrap, int size) {
        int slot = offWrap & PackedLayout.EVENT_OFF_MASK;
        int wrap = (offWrap >>> PackedLayout.EVENT_WRAP_BIT) & 1;
        return wrap == currentWrap ? slot : slot - size;
    }

    /**
     * Device side, as DPDK's {@code vhost_vring_call_packed}: the used position moved from
     * {@code oldSlot} to {@code newSlot} (fewer than {@code size} slots, at least one; equal slots
     * mean a whole lap), the new position has wrap {@code newWrap}.
     */
    static boolean passedSince(int offWrap, int oldSlot, int newSlot, int newWrap, int size) {
        int old = newSlot <= oldSlot ? oldSlot - size : oldSlot;
        return needEvent(eventSlot(offWrap, newWrap, size), newSlot, old);
    }

    /**
     * Driver side, as Linux's {@code virtqueue_kick_prepare_packed}: {@code added} slots (fewer
     * than {@code size}) were made available, ending at {@code newSlot} with wrap {@code newWrap}.
     */
    static boolean passedAdding(int offWrap, int newSlot, int newWrap, int added, int size) {
        return needEvent(eventSlot(offWrap, newWrap, size), newSlot, newSlot - added);
    }

    private PackedEventWindow() {
    }
}
