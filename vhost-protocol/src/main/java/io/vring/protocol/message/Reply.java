package io.vring.protocol.message;

/**
 * The reply shape of a request: {@code own} when the request always gets a reply with this payload,
 * otherwise the u64 REPLY_ACK ack sent only on NEED_REPLY.
 */
public record Reply(boolean own, SizeRule payload, FdRule fds) {
    private static final Reply ACK = new Reply(false, SizeRule.exactly(U64Payload.SIZE), FdRule.none());
    private static final Reply U64 = new Reply(true, SizeRule.exactly(U64Payload.SIZE), FdRule.none());

    /** No reply of its own: a u64 ack (0 = success) when NEED_REPLY asks for one. */
    static Reply ack() {
        return ACK;
    }

    /** Always a u64 reply. */
    static Reply u64() {
        return U64;
    }

    /** Always a reply with this payload and these fds. */
    static Reply of(SizeRule payload, FdRule fds) {
        return new Reply(true, payload, fds);
    }
}
