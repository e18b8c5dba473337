package io.vring.engine;

/** The EVENT_IDX decision (virtio 1.x §2.7.10, {@code vring_need_event}), in u16 arithmetic. */
public final class EventIndex {

    /**
     * True if {@code event} lies in the window {@code [oldIdx, newIdx)} of indices written since the
     * last check: the slot the peer asked to hear about was just filled.
     */
    public static boolean needsEvent(int event, int newIdx, int oldIdx) {
        return ((newIdx - event - 1) & 0xFFFF) < ((newIdx - oldIdx) & 0xFFFF);
    }

    private EventIndex() {
    }
}
