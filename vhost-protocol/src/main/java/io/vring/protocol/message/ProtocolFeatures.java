package io.vring.protocol.message;

import java.util.StringJoiner;

/**
 * vhost-user protocol feature bit numbers (GET/SET_PROTOCOL_FEATURES), and the two virtio feature bits
 * that belong to vhost-user rather than to a device. Bits as in the QEMU spec; bits 20 and up changed
 * number while the spec moved (rust-vmm vhost 0.16 put SHMEM at 21, which is GPA_ADDRESSES): never
 * offer a bit here by accident.
 */
public final class ProtocolFeatures {
    /** GET_QUEUE_NUM; the spec asks back-ends to always offer it. */
    public static final int MQ = 0;
    /** SET_LOG_BASE carries the dirty log as an fd, and gets a reply. */
    public static final int LOG_SHMFD = 1;
    /** SEND_RARP (net). */
    public static final int RARP = 2;
    /** NEED_REPLY is honoured on every request with a u64 ack. */
    public static final int REPLY_ACK = 3;
    /** NET_SET_MTU (QEMU calls it NET_MTU). */
    public static final int MTU = 4;
    /** The back-end channel (SET_BACKEND_REQ_FD); formerly SLAVE_REQ. */
    public static final int BACKEND_REQ = 5;
    /** SET_VRING_ENDIAN for legacy devices. */
    public static final int CROSS_ENDIAN = 6;
    /** CREATE/CLOSE_CRYPTO_SESSION. */
    public static final int CRYPTO_SESSION = 7;
    /** Postcopy migration (POSTCOPY_ADVISE/LISTEN/END). */
    public static final int PAGEFAULT = 8;
    /** GET/SET_CONFIG and BACKEND_CONFIG_CHANGE_MSG. */
    public static final int CONFIG = 9;
    /** fds on the back-end channel; formerly SLAVE_SEND_FD. */
    public static final int BACKEND_SEND_FD = 10;
    /** BACKEND_VRING_HOST_NOTIFIER_MSG. */
    public static final int HOST_NOTIFIER = 11;
    /** GET/SET_INFLIGHT_FD. */
    public static final int INFLIGHT_SHMFD = 12;
    /** RESET_DEVICE. */
    public static final int RESET_DEVICE = 13;
    /** VRING_KICK and BACKEND_VRING_CALL/ERR; invalid without BACKEND_REQ and REPLY_ACK. */
    public static final int INBAND_NOTIFICATIONS = 14;
    /** GET_MAX_MEM_SLOTS, ADD/REM_MEM_REG. */
    public static final int CONFIGURE_MEM_SLOTS = 15;
    /** SET/GET_STATUS. */
    public static final int STATUS = 16;
    /** 40-byte Xen memory region descriptors. */
    public static final int XEN_MMAP = 17;
    /** GET_SHARED_OBJECT, BACKEND_SHARED_OBJECT_*. */
    public static final int SHARED_OBJECT = 18;
    /** SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE. */
    public static final int DEVICE_STATE = 19;
    /** GET_VRING_BASE may cancel in-flight requests into the inflight region; needs INFLIGHT_SHMFD. */
    public static final int GET_VRING_BASE_INFLIGHT = 20;
    /** Ring addresses are guest-physical and region user addresses equal GPAs. */
    public static final int GPA_ADDRESSES = 21;
    /** GET_SHMEM_CONFIG, BACKEND_SHMEM_MAP/UNMAP. */
    public static final int SHMEM = 22;
    /** GET_VRING_BASE_SKIP_DRAIN (newest spec text only); needs bits 20 and 12. */
    public static final int GET_VRING_BASE_SKIP_DRAIN = 23;

    /** Virtio feature bit 30 (VHOST_USER_F_PROTOCOL_FEATURES): GET/SET_PROTOCOL_FEATURES exist. */
    public static final int VIRTIO_PROTOCOL_FEATURES = 30;
    /** Virtio feature bit 26 (VHOST_F_LOG_ALL): dirty-page logging is on. */
    public static final int VIRTIO_LOG_ALL = 26;

    private static final String[] NAMES = {
        "MQ", "LOG_SHMFD", "RARP", "REPLY_ACK", "MTU", "BACKEND_REQ", "CROSS_ENDIAN", "CRYPTO_SESSION",
        "PAGEFAULT", "CONFIG", "BACKEND_SEND_FD", "HOST_NOTIFIER", "INFLIGHT_SHMFD", "RESET_DEVICE",
        "INBAND_NOTIFICATIONS", "CONFIGURE_MEM_SLOTS", "STATUS", "XEN_MMAP", "SHARED_OBJECT",
        "DEVICE_STATE", "GET_VRING_BASE_INFLIGHT", "GPA_ADDRESSES", "SHMEM", "GET_VRING_BASE_SKIP_DRAIN",
    };

    /** The mask of bit {@code bit}. */
    public static long bit(int bit) {
        return 1L << bit;
    }

    /** True if {@code bit} is set in {@code features}. */
    public static boolean has(long features, int bit) {
        return (features & (1L << bit)) != 0;
    }

    /** The name of protocol feature {@code bit}, or {@code "bit<n>"} for one this class does not know. */
    public static String name(int bit) {
        return bit >= 0 && bit < NAMES.length ? NAMES[bit] : "bit" + bit;
    }

    /** {@code "MQ|REPLY_ACK|bit40"}: the names of the bits set in {@code features}, or {@code "none"}. */
    public static String describe(long features) {
        if (features == 0) {
            return "none";
        }
        StringJoiner names = new StringJoiner("|");
        for (long rest = features; rest != 0; rest &= rest - 1) {
            names.add(name(Long.numberOfTrailingZeros(rest)));
        }
        return names.toString();
    }

    private ProtocolFeatures() {
    }
}
