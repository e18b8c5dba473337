package io.vring.protocol.message;

/**
 * The wire shape of one request code: what its payload and fds may be, the protocol feature it
 * needs, and how it is answered. Both request enums hold one per constant.
 *
 * @param code            the u32 request code in the header
 * @param payload         the sizes the request's payload may have
 * @param fds             how many fds may come with the request
 * @param requiredFeature the protocol feature bit that must be negotiated, or {@link RequestType#NO_FEATURE}
 * @param reply           how the request is answered
 */
public record RequestShape(int code, SizeRule payload, FdRule fds, int requiredFeature, Reply reply) {
}
