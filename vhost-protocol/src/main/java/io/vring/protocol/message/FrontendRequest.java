package io.vring.protocol.message;

import static io.vring.protocol.message.ProtocolFeatures.BACKEND_REQ;
import static io.vring.protocol.message.ProtocolFeatures.CONFIG;
import static io.vring.protocol.message.ProtocolFeatures.CONFIGURE_MEM_SLOTS;
import static io.vring.protocol.message.ProtocolFeatures.CROSS_ENDIAN;
import static io.vring.protocol.message.ProtocolFeatures.CRYPTO_SESSION;
import static io.vring.protocol.message.ProtocolFeatures.DEVICE_STATE;
import static io.vring.protocol.message.ProtocolFeatures.INBAND_NOTIFICATIONS;
import static io.vring.protocol.message.ProtocolFeatures.INFLIGHT_SHMFD;
import static io.vring.protocol.message.ProtocolFeatures.LOG_SHMFD;
import static io.vring.protocol.message.ProtocolFeatures.MQ;
import static io.vring.protocol.message.ProtocolFeatures.MTU;
import static io.vring.protocol.message.ProtocolFeatures.PAGEFAULT;
import static io.vring.protocol.message.ProtocolFeatures.RARP;
import static io.vring.protocol.message.ProtocolFeatures.RESET_DEVICE;
import static io.vring.protocol.message.ProtocolFeatures.SHARED_OBJECT;
import static io.vring.protocol.message.ProtocolFeatures.SHMEM;
import static io.vring.protocol.message.ProtocolFeatures.STATUS;

import java.util.Optional;

/**
 * Front-end → back-end requests on the main channel (the spec's {@code VHOST_USER_*} messages 1-45),
 * with the shape of each request and reply.
 *
 * <p>Notes on the less obvious rows:
 * <ul>
 * <li>SET_LOG_BASE carries the 16-byte log description (the spec table says u64) and, with LOG_SHMFD,
 *     gets a reply whose payload QEMU ignores: DPDK sends 0 bytes, rust-vmm echoes the 16.
 * <li>GET_INFLIGHT_FD's reply is the 24-byte inflight description plus the memfd (the spec says
 *     "N/A"); the description is 24 bytes on the wire, 20 meaningful plus C padding.
 * <li>SET_VRING_KICK/CALL/ERR carry one fd unless bit 8 (NOFD) of the payload is set; REM_MEM_REG may
 *     carry a stray fd, which the back-end closes unused.
 * <li>GET/SET_PROTOCOL_FEATURES and SET_VRING_ENABLE depend on virtio bit 30
 *     ({@link ProtocolFeatures#VIRTIO_PROTOCOL_FEATURES}), not on a protocol feature; IOTLB_MSG on
 *     VIRTIO_F_IOMMU_PLATFORM. Those rows say {@link #NO_FEATURE}; the server checks the virtio bit.
 * <li>SET_MEM_TABLE and ADD_MEM_REG reply with region tables only in postcopy-listen mode, which vring
 *     does not offer: here they are acked like any other request.
 * <li>Memory regions are the 32-byte form; the 40-byte XEN_MMAP form is not offered.
 * </ul>
 */
public enum FrontendRequest implements RequestType {
    GET_FEATURES(1, SizeRule.none(), FdRule.none(), NO_FEATURE, Reply.u64()),
    SET_FEATURES(2, SizeRule.exactly(U64Payload.SIZE), FdRule.none(), NO_FEATURE, Reply.ack()),
    SET_OWNER(3, SizeRule.none(), FdRule.none(), NO_FEATURE, Reply.ack()),
    /** Deprecated: disable the rings at most, keep the session. */
    RESET_OWNER(4, SizeRule.none(), FdRule.none(), NO_FEATURE, Reply.ack()),
    SET_MEM_TABLE(5, MemoryTable.SIZE_RULE, FdRule.upTo(MemoryTable.MAX_REGIONS), NO_FEATURE, Reply.ack()),
    SET_LOG_BASE(6, SizeRule.exactly(LogDescription.SIZE), FdRule.one(), LOG_SHMFD,
            Reply.of(SizeRule.between(0, LogDescription.SIZE), FdRule.none())),
    SET_LOG_FD(7, SizeRule.none(), FdRule.one(), NO_FEATURE, Reply.ack()),
    SET_VRING_NUM(8, SizeRule.exactly(VringState.SIZE), FdRule.none(), NO_FEATURE, Reply.ack()),
    SET_VRING_ADDR(9, SizeRule.exactly(VringAddress.SIZE), FdRule.none(), NO_FEATURE, Reply.ack()),
    SET_VRING_BASE(10, SizeRule.exactly(VringState.SIZE), FdRule.none(), NO_FEATURE, Reply.ack()),
    /** Stops the ring; the reply is its base. */
    GET_VRING_BASE(11, SizeRule.exactly(VringState.SIZE), FdRule.none(), NO_FEATURE,
            Reply.of(SizeRule.exactly(VringState.SIZE), FdRule.none())),
    /** Starts the ring (newest spec); NOFD means "poll, no eventfd". */
    SET_VRING_KICK(12, SizeRule.exactly(VringFdPayload.SIZE), FdRule.optional(), NO_FEATURE, Reply.ack()),
    SET_VRING_CALL(13, SizeRule.exactly(VringFdPayload.SIZE), FdRule.optional(), NO_FEATURE, Reply.ack()),
    SET_VRING_ERR(14, SizeRule.exactly(VringFdPayload.SIZE), FdRule.optional(), NO_FEATURE, Reply.ack()),
    GET_PROTOCOL_FEATURES(15, SizeRule.none(), FdRule.none(), NO_FEATURE, Reply.u64()),
    SET_PROTOCOL_FEATURES(16, SizeRule.exactly(U64Payload.SIZE), FdRule.none(), NO_FEATURE, Reply.ack()),
    GET_QUEUE_NUM(17, SizeRule.none(), FdRule.none(), MQ, Reply.u64()),
    SET_VRING_ENABLE(18, SizeRule.exactly(VringState.SIZE), FdRule.none(), NO_FEATURE, Reply.ack()),
    SEND_RARP(19, SizeRule.exactly(U64Payload.SIZE), FdRule.none(), RARP, Reply.ack()),
    NET_SET_MTU(20, SizeRule.exactly(U64Payload.SIZE), FdRule.none(), MTU, Reply.ack()),
    SET_BACKEND_REQ_FD(21, SizeRule.none(), FdRule.one(), BACKEND_REQ, Reply.ack()),
    /** {@code struct vhost_iotlb_msg}, 32 bytes; always answered with a u64. */
    IOTLB_MSG(22, SizeRule.exactly(32), FdRule.none(), NO_FEATURE, Reply.u64()),
    SET_VRING_ENDIAN(23, SizeRule.exactly(VringState.SIZE), FdRule.none(), CROSS_ENDIAN, Reply.ack()),
    GET_CONFIG(24, DeviceConfig.SIZE_RULE, FdRule.none(), CONFIG, Reply.of(DeviceConfig.SIZE_RULE, FdRule.none())),
    SET_CONFIG(25, DeviceConfig.SIZE_RULE, FdRule.none(), CONFIG, Reply.ack()),
    /** QEMU-defined struct; vring does not offer crypto sessions. */
    CREATE_CRYPTO_SESSION(26, SizeRule.between(8, MessageHeader.MAX_PAYLOAD), FdRule.none(), CRYPTO_SESSION,
            Reply.of(SizeRule.between(8, MessageHeader.MAX_PAYLOAD), FdRule.none())),
    CLOSE_CRYPTO_SESSION(27, SizeRule.exactly(U64Payload.SIZE), FdRule.none(), CRYPTO_SESSION, Reply.ack()),
    /** Reply: empty payload plus the userfaultfd. */
    POSTCOPY_ADVISE(28, SizeRule.none(), FdRule.none(), PAGEFAULT, Reply.of(SizeRule.none(), FdRule.one())),
    POSTCOPY_LISTEN(29, SizeRule.none(), FdRule.none(), PAGEFAULT, Reply.ack()),
    POSTCOPY_END(30, SizeRule.none(), FdRule.none(), PAGEFAULT, Reply.u64()),
    GET_INFLIGHT_FD(31, SizeRule.exactly(InflightDescription.SIZE), FdRule.none(), INFLIGHT_SHMFD,
            Reply.of(SizeRule.exactly(InflightDescription.SIZE), FdRule.optional())),
    SET_INFLIGHT_FD(32, SizeRule.exactly(InflightDescription.SIZE), FdRule.one(), INFLIGHT_SHMFD, Reply.ack()),
    /** vhost-user-gpu only: a socket for the separate GPU protocol. */
    GPU_SET_SOCKET(33, SizeRule.none(), FdRule.one(), NO_FEATURE, Reply.ack()),
    RESET_DEVICE(34, SizeRule.none(), FdRule.none(), ProtocolFeatures.RESET_DEVICE, Reply.ack()),
    VRING_KICK(35, SizeRule.exactly(VringState.SIZE), FdRule.none(), INBAND_NOTIFICATIONS, Reply.ack()),
    GET_MAX_MEM_SLOTS(36, SizeRule.none(), FdRule.none(), CONFIGURE_MEM_SLOTS, Reply.u64()),
    ADD_MEM_REG(37, SizeRule.exactly(SingleMemoryRegion.SIZE), FdRule.one(), CONFIGURE_MEM_SLOTS, Reply.ack()),
    REM_MEM_REG(38, SizeRule.exactly(SingleMemoryRegion.SIZE), FdRule.optional(), CONFIGURE_MEM_SLOTS, Reply.ack()),
    SET_STATUS(39, SizeRule.exactly(U64Payload.SIZE), FdRule.none(), STATUS, Reply.ack()),
    GET_STATUS(40, SizeRule.none(), FdRule.none(), STATUS, Reply.u64()),
    /** 16-byte UUID; reply: empty payload plus a dmabuf fd, or no fd. */
    GET_SHARED_OBJECT(41, SizeRule.exactly(16), FdRule.none(), SHARED_OBJECT, Reply.of(SizeRule.none(), FdRule.optional())),
    /** Reply u64: bits 0-7 error, bit 8 set when the back-end returns no fd of its own. */
    SET_DEVICE_STATE_FD(42, SizeRule.exactly(DeviceStateTransfer.SIZE), FdRule.one(), DEVICE_STATE,
            Reply.of(SizeRule.exactly(U64Payload.SIZE), FdRule.optional())),
    CHECK_DEVICE_STATE(43, SizeRule.none(), FdRule.none(), DEVICE_STATE, Reply.u64()),
    /** Reply: u32 count, u32 padding, u64 size[256]. */
    GET_SHMEM_CONFIG(44, SizeRule.none(), FdRule.none(), SHMEM, Reply.of(SizeRule.exactly(2056), FdRule.none())),
    /** Newest spec text only: stop a ring without draining it. */
    GET_VRING_BASE_SKIP_DRAIN(45, SizeRule.exactly(VringState.SIZE), FdRule.none(), ProtocolFeatures.GET_VRING_BASE_SKIP_DRAIN,
            Reply.of(SizeRule.exactly(VringState.SIZE), FdRule.none()));

    private static final FrontendRequest[] BY_CODE = new FrontendRequest[46];

    static {
        for (FrontendRequest r : values()) {
            BY_CODE[r.code()] = r;
        }
    }

    private final RequestShape shape;

    FrontendRequest(int code, SizeRule payload, FdRule fds, int requiredFeature, Reply reply) {
        this.shape = new RequestShape(code, payload, fds, requiredFeature, reply);
    }

    /** The request with {@code code}, or empty for 0 (NONE), crosvm's retired 1000+ codes and unknown ones. */
    public static Optional<FrontendRequest> of(int code) {
        return code >= 0 && code < BY_CODE.length ? Optional.ofNullable(BY_CODE[code]) : Optional.empty();
    }

    @Override
    public RequestShape shape() {
        return shape;
    }
}
