package io.vring.protocol.message;

import static io.vring.protocol.message.ProtocolFeatures.CONFIG;
import static io.vring.protocol.message.ProtocolFeatures.HOST_NOTIFIER;
import static io.vring.protocol.message.ProtocolFeatures.INBAND_NOTIFICATIONS;
import static io.vring.protocol.message.ProtocolFeatures.SHARED_OBJECT;
import static io.vring.protocol.message.ProtocolFeatures.SHMEM;

import java.util.Optional;

/**
 * Back-end → front-end requests on the back-end channel (the spec's {@code VHOST_USER_BACKEND_*}
 * messages 1-10). The whole channel needs {@link ProtocolFeatures#BACKEND_REQ}; a message that carries
 * fds also needs {@link ProtocolFeatures#BACKEND_SEND_FD}. The front-end answers in the u64 convention
 * (0 = success; crosvm sends a negative errno, so treat any non-zero as failure).
 */
public enum BackendRequest implements RequestType {
    /** IOTLB miss or access failure (needs VIRTIO_F_IOMMU_PLATFORM, not a protocol feature). */
    IOTLB_MSG(1, SizeRule.exactly(32), FdRule.none(), NO_FEATURE, Reply.ack()),
    /** The device's config space changed; the front-end then sends GET_CONFIG. */
    CONFIG_CHANGE_MSG(2, SizeRule.none(), FdRule.none(), CONFIG, Reply.ack()),
    /** u64 ring index (+ NOFD bit 8), u64 size, u64 offset; the fd is the notify area, none deregisters. */
    VRING_HOST_NOTIFIER_MSG(3, SizeRule.exactly(24), FdRule.optional(), HOST_NOTIFIER, Reply.ack()),
    /** In-band call: vring state with num 0. */
    VRING_CALL(4, SizeRule.exactly(VringState.SIZE), FdRule.none(), INBAND_NOTIFICATIONS, Reply.ack()),
    /** In-band error: vring state with num 0. */
    VRING_ERR(5, SizeRule.exactly(VringState.SIZE), FdRule.none(), INBAND_NOTIFICATIONS, Reply.ack()),
    SHARED_OBJECT_ADD(6, SizeRule.exactly(16), FdRule.none(), SHARED_OBJECT, Reply.ack()),
    SHARED_OBJECT_REMOVE(7, SizeRule.exactly(16), FdRule.none(), SHARED_OBJECT, Reply.ack()),
    /** Always answered: u64 (0 ok) plus a dmabuf fd on success. */
    SHARED_OBJECT_LOOKUP(8, SizeRule.exactly(16), FdRule.none(), SHARED_OBJECT,
            Reply.of(SizeRule.exactly(U64Payload.SIZE), FdRule.optional())),
    /** u8 shmid, 7 padding, u64 fd offset, u64 shm offset, u64 length, u64 flags; plus the fd to map. */
    SHMEM_MAP(9, SizeRule.exactly(40), FdRule.one(), SHMEM, Reply.ack()),
    SHMEM_UNMAP(10, SizeRule.exactly(40), FdRule.none(), SHMEM, Reply.ack());

    private static final BackendRequest[] BY_CODE = new BackendRequest[11];

    static {
        for (BackendRequest r : values()) {
            BY_CODE[r.code()] = r;
        }
    }

    private final RequestShape shape;

    BackendRequest(int code, SizeRule payload, FdRule fds, int requiredFeature, Reply reply) {
        this.shape = new RequestShape(code, payload, fds, requiredFeature, reply);
    }

    /** The request with {@code code}, or empty for an unknown one (crosvm's 1000+ codes included). */
    public static Optional<BackendRequest> of(int code) {
        return code >= 0 && code < BY_CODE.length ? Optional.ofNullable(BY_CODE[code]) : Optional.empty();
    }

    @Override
    public RequestShape shape() {
        return shape;
    }
}
