package io.vring.backends.crash;

import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The bytes of one crash-test request and its response, which both processes read and write in guest
 * memory. A request is its sequence number; the response echoes it with a value derived from it, so
 * a stale, duplicated or misrouted completion cannot pass for the right one, and carries what the
 * back-ends noted while executing it (how often it was started, by which incarnation).
 */
final class CrashRequest {
    /** Request (device-readable): seq u64. */
    static final int REQUEST_BYTES = 8;
    static final int REQUEST_SEQ = 0;

    /** Response (device-writable): seq u64, result u64, then four u32 notes. */
    static final int RESPONSE_BYTES = 32;
    static final int RESPONSE_SEQ = 0;
    static final int RESPONSE_RESULT = 8;
    /** How many times a back-end started executing the request. */
    static final int RESPONSE_EXECUTIONS = 16;
    /** The generation that had polled it before the one that polled it last, or 0: it was resubmitted. */
    static final int RESPONSE_RESUBMITTED_FROM = 20;
    /** The generation (child incarnation, from 1) that polled it last. */
    static final int RESPONSE_POLLED_BY = 24;
    /** The generation that completed it. */
    static final int RESPONSE_COMPLETED_BY = 28;

    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** The answer to request {@code seq}: a mix no other sequence number shares (an odd multiplier is a bijection). */
    static long result(long seq) {
        long z = (seq + 0x632B_E59B_D9B4_E019L) * 0x9E37_79B9_7F4A_7C15L;
        return z ^ (z >>> 31);
    }

    private CrashRequest() {
    }
}
