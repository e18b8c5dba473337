package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class MessageHeaderTest {
    private static ByteBuffer wire(int request, int flags, int size) {
        return ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN).putInt(request).putInt(flags).putInt(size).flip();
    }

    @Test
    void aRequestIsTwelveLittleEndianBytesOfCodeFlagsAndSize() {
        ByteBuffer b = MessageHeader.request(FrontendRequest.SET_VRING_KICK.code(), 8, false).encode();
        byte[] bytes = new byte[12];
        b.get(bytes);
        assertArrayEquals(new byte[] {12, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0}, bytes);
    }

    @Test
    void aRequestThatWantsAnAckHasFlagsNine() {
        MessageHeader h = MessageHeader.request(5, 40, true);
        assertEquals(0x9, h.flags());
        assertTrue(h.needsReply());
        assertFalse(h.isReply());
    }

    @Test
    void replyFlagsAreExactlyFive() {
        MessageHeader h = MessageHeader.reply(FrontendRequest.GET_FEATURES.code(), 8);
        assertEquals(0x5, h.flags());
        assertTrue(h.isReply());
        assertFalse(h.needsReply());
        assertTrue(h.isReplyTo(FrontendRequest.GET_FEATURES));
        assertFalse(new MessageHeader(1, 0xD, 8).isReplyTo(FrontendRequest.GET_FEATURES));
    }

    @Test
    void decodingGivesBackWhatWasEncoded() {
        MessageHeader h = new MessageHeader(37, 0x9, 40);
        assertEquals(h, MessageHeader.decode(h.encode()));
    }

    @Test
    void decodingDoesNotMoveTheSourcePosition() {
        ByteBuffer b = wire(1, 1, 0);
        MessageHeader.decode(b);
        assertEquals(0, b.position());
    }

    @ParameterizedTest(name = "version bits {0}")
    @ValueSource(ints = {0, 2, 3})
    void aVersionOtherThanOneIsRejected(int version) {
        VhostUserException e = assertThrows(VhostUserException.class, () -> MessageHeader.decode(wire(1, version, 0)));
        assertEquals(VhostUserError.InvalidMessage, e.kind());
        assertTrue(e.getMessage().contains("version " + version), e.getMessage());
    }

    @ParameterizedTest(name = "flags 0x{0}")
    @ValueSource(ints = {0x11, 0x101, 0x80000001})
    void reservedFlagBitsAreRejected(int flags) {
        VhostUserException e = assertThrows(VhostUserException.class, () -> MessageHeader.decode(wire(1, flags, 0)));
        assertEquals(VhostUserError.InvalidMessage, e.kind());
    }

    @Test
    void aPayloadOfExactlyTheLimitIsAccepted() {
        assertEquals(4096, MessageHeader.decode(wire(1, 1, 4096)).size());
    }

    @ParameterizedTest(name = "size {0}")
    @ValueSource(ints = {4097, Integer.MAX_VALUE, -1})
    void aPayloadOverTheLimitIsOversized(int size) {
        VhostUserException e = assertThrows(VhostUserException.class, () -> MessageHeader.decode(wire(1, 1, size)));
        assertEquals(VhostUserError.OversizedMsg, e.kind());
    }

    @Test
    void aHeaderOfElevenOrThirteenBytesIsRejected() {
        assertEquals(VhostUserError.InvalidMessage, assertThrows(VhostUserException.class,
                () -> MessageHeader.decode(ByteBuffer.allocate(11))).kind());
        assertEquals(VhostUserError.InvalidMessage, assertThrows(VhostUserException.class,
                () -> MessageHeader.decode(ByteBuffer.allocate(13))).kind());
    }
}
