package io.vring.protocol;

import io.vring.engine.DeviceQueue;

/**
 * What a vhost-user device implements. {@link BackendServer} owns everything else: the protocol, the
 * guest memory mappings, the rings and the worker threads that run them.
 *
 * <p><b>Threads.</b> {@link #process} runs on the ring's worker thread, one thread per ring, and is
 * the only method that touches a started ring. Every other method runs on the connection's control
 * thread, and only while the ring it names is stopped (its worker parked), so a device needs no
 * locking between the two for per-ring state. State shared between rings is the device's to guard.
 *
 * <p><b>The data path.</b> {@code process} polls chains, does the work and stages used entries
 * with {@link DeviceQueue#addUsed}; the worker then publishes the batch and signals the driver if
 * it asked to be told. A device may keep chains across calls (by {@link
 * io.vring.engine.chain.DescriptorChain#token()}) and complete them out of order in a later call.
 *
 * <pre>{@code
 * public int process(int queueIndex, DeviceQueue queue) {
 *     int done = 0;
 *     for (DescriptorChain chain; (chain = queue.poll()) != null; done++) {
 *         queue.addUsed(chain, fill(chain));
 *     }
 *     return done;
 * }
 * }</pre>
 */
public interface Backend {

    /**
     * Virtio feature bits to offer ({@code io.vring.engine.VirtioFeatures}). Must include VERSION_1;
     * the server adds VHOST_USER_F_PROTOCOL_FEATURES (bit 30) itself. The engine implements
     * EVENT_IDX, INDIRECT_DESC, RING_PACKED and IN_ORDER for every device, so offer them.
     */
    long features();

    /**
     * Protocol features that depend on the device ({@code ProtocolFeatures} bits as a mask): CONFIG if
     * it has a config space, INFLIGHT_SHMFD if it can resubmit a request after a crash, DEVICE_STATE
     * if it implements {@link #saveState()}. The server offers the device-independent ones itself
     * (MQ, REPLY_ACK, BACKEND_REQ, CONFIGURE_MEM_SLOTS, STATUS, RESET_DEVICE, LOG_SHMFD).
     */
    default long protocolFeatures() {
        return 0;
    }

    /** The number of queues (GET_QUEUE_NUM); a front-end may set up fewer. */
    int queueCount();

    /** The largest queue size the device accepts (SET_VRING_NUM above it is refused). */
    default int maxQueueSize() {
        return 32768;
    }

    /** Bytes of config space (GET_CONFIG reads within it); 0 for none. */
    default int configSize() {
        return 0;
    }

    /** Copies config bytes from {@code offset} into {@code dst}; the range lies within {@link #configSize()}. */
    default void readConfig(int offset, byte[] dst) {
    }

    /**
     * Writes config bytes at {@code offset} (SET_CONFIG). Throw a {@link VhostUserException} of kind
     * InvalidParam to refuse a write to a read-only field.
     */
    default void writeConfig(int offset, byte[] src) {
        throw new VhostUserException(VhostUserError.InvalidOperation, "the device's config space is read-only");
    }

    /** The virtio features the driver acknowledged (SET_FEATURES); sent again on every device start. */
    default void featuresAcked(long features) {
    }

    /**
     * A ring starts (SET_VRING_KICK with memory and addresses known), before its worker first calls
     * {@link #process}. {@code handle} stays valid until {@link #stop}: a device whose work arrives
     * from elsewhere (a host socket, a timer) calls {@link RingHandle#wakeUp()} from any thread.
     */
    default void start(int queueIndex, DeviceQueue queue, RingHandle handle) {
    }

    /**
     * Does the ring's work: called over and over on its worker thread while the ring is started and
     * enabled. Returns how much work it did; 0 lets the worker idle (spin or sleep on the kick fd).
     * A device that returns 0 while chains are available has declined them (it waits for something
     * else: data for a receive ring, room elsewhere): the worker then sleeps despite the chains, and
     * the device must call {@link RingHandle#wakeUp()} once it has work for them.
     */
    int process(int queueIndex, DeviceQueue queue);

    /**
     * The ring stopped (GET_VRING_BASE, reset, a memory change, disconnect) and its worker is parked.
     * Stage used entries for chains still in flight if they can be finished now: the server
     * publishes them before it reports the ring's base. Chains not completed here stay in flight:
     * the front-end sees them as unfinished.
     */
    default void stop(int queueIndex, DeviceQueue queue) {
    }

    /** The device is reset (RESET_DEVICE, SET_STATUS 0, or the front-end went away): forget driver state. */
    default void reset() {
    }

    /**
     * The device's state for migration (DEVICE_STATE), taken while every ring is stopped. Only
     * called if {@link #protocolFeatures()} offers DEVICE_STATE.
     */
    default byte[] saveState() {
        throw new VhostUserException(VhostUserError.InvalidOperation, "the device cannot save its state");
    }

    /** Restores what {@link #saveState()} produced, before any ring starts. Throw InvalidParam to refuse it. */
    default void loadState(byte[] state) {
        throw new VhostUserException(VhostUserError.InvalidOperation, "the device cannot load a state");
    }
}
