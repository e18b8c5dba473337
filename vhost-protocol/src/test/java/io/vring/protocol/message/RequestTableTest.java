package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class RequestTableTest {
    @Test
    void frontendCodesRunFromOneToFortyFiveWithoutGaps() {
        Set<Integer> codes = new HashSet<>();
        for (FrontendRequest r : FrontendRequest.values()) {
            assertTrue(codes.add(r.code()), r + " duplicates a code");
            assertEquals(r, FrontendRequest.of(r.code()).orElseThrow());
        }
        for (int code = 1; code <= 45; code++) {
            assertTrue(codes.contains(code), "code " + code);
        }
        assertTrue(FrontendRequest.of(0).isEmpty());
        assertTrue(FrontendRequest.of(46).isEmpty());
        assertTrue(FrontendRequest.of(1000).isEmpty());
        assertTrue(FrontendRequest.of(-1).isEmpty());
    }

    @Test
    void backendCodesRunFromOneToTen() {
        for (int code = 1; code <= 10; code++) {
            assertEquals(code, BackendRequest.of(code).orElseThrow().code());
        }
        assertTrue(BackendRequest.of(0).isEmpty());
        assertTrue(BackendRequest.of(1006).isEmpty());
    }

    @Test
    void theCodesAndNamesMatchTheSpecWhereImplementationsOftenSlip() {
        assertEquals(21, FrontendRequest.SET_BACKEND_REQ_FD.code());
        assertEquals(31, FrontendRequest.GET_INFLIGHT_FD.code());
        assertEquals(37, FrontendRequest.ADD_MEM_REG.code());
        assertEquals(43, FrontendRequest.CHECK_DEVICE_STATE.code());
        assertEquals(3, BackendRequest.VRING_HOST_NOTIFIER_MSG.code());
    }

    @Test
    void requestsThatAlwaysReplyAreTheSpecsList() {
        Set<FrontendRequest> replying = Arrays.stream(FrontendRequest.values()).filter(FrontendRequest::alwaysReplies)
                .collect(Collectors.toSet());
        assertEquals(Set.of(FrontendRequest.GET_FEATURES, FrontendRequest.GET_PROTOCOL_FEATURES,
                FrontendRequest.GET_VRING_BASE, FrontendRequest.SET_LOG_BASE, FrontendRequest.GET_QUEUE_NUM,
                FrontendRequest.IOTLB_MSG, FrontendRequest.GET_CONFIG, FrontendRequest.CREATE_CRYPTO_SESSION,
                FrontendRequest.POSTCOPY_ADVISE, FrontendRequest.POSTCOPY_END, FrontendRequest.GET_INFLIGHT_FD,
                FrontendRequest.GET_MAX_MEM_SLOTS, FrontendRequest.GET_STATUS, FrontendRequest.GET_SHARED_OBJECT,
                FrontendRequest.SET_DEVICE_STATE_FD, FrontendRequest.CHECK_DEVICE_STATE,
                FrontendRequest.GET_SHMEM_CONFIG, FrontendRequest.GET_VRING_BASE_SKIP_DRAIN), replying);
    }

    @Test
    void anAckIsAU64Reply() {
        assertFalse(FrontendRequest.SET_VRING_NUM.alwaysReplies());
        assertTrue(FrontendRequest.SET_VRING_NUM.replyPayload().accepts(8));
        assertFalse(FrontendRequest.SET_VRING_NUM.replyPayload().accepts(0));
    }

    @Test
    void vringFdMessagesTakeZeroOrOneFdAndTheMemoryTableUpToEight() {
        for (FrontendRequest r : new FrontendRequest[] {FrontendRequest.SET_VRING_KICK, FrontendRequest.SET_VRING_CALL,
                FrontendRequest.SET_VRING_ERR}) {
            assertTrue(r.fds().accepts(0));
            assertTrue(r.fds().accepts(1));
            assertFalse(r.fds().accepts(2));
        }
        assertTrue(FrontendRequest.SET_MEM_TABLE.fds().accepts(8));
        assertFalse(FrontendRequest.SET_MEM_TABLE.fds().accepts(9));
        assertEquals(new FdRule(1, 1), FrontendRequest.ADD_MEM_REG.fds());
        assertEquals(new FdRule(0, 1), FrontendRequest.REM_MEM_REG.fds());
    }

    @Test
    void theMemoryTableSizeIsEightPlusThirtyTwoPerRegion() {
        SizeRule rule = FrontendRequest.SET_MEM_TABLE.payload();
        assertTrue(rule.accepts(8));
        assertTrue(rule.accepts(40));
        assertTrue(rule.accepts(264));
        assertFalse(rule.accepts(41));
        assertFalse(rule.accepts(296));
    }

    @Test
    void aWrongFdCountNamesTheRequestAndTheCounts() {
        VhostUserException e = assertThrows(VhostUserException.class, () -> FrontendRequest.ADD_MEM_REG.checkRequest(40, 0));
        assertEquals(VhostUserError.IncorrectFds, e.kind());
        assertTrue(e.getMessage().contains("ADD_MEM_REG expects 1 fd, got 0"), e.getMessage());
    }

    @Test
    void aWrongSizeNamesTheRequestAndTheSize() {
        VhostUserException e = assertThrows(VhostUserException.class, () -> FrontendRequest.SET_VRING_ADDR.checkRequest(32, 0));
        assertEquals(VhostUserError.InvalidMessage, e.kind());
        assertTrue(e.getMessage().contains("SET_VRING_ADDR payload must be 40 bytes, got 32"), e.getMessage());
    }

    @Test
    void aRequestWhoseFeatureWasNotNegotiatedIsAnInvalidOperation() {
        long acked = ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK);
        VhostUserException e = assertThrows(VhostUserException.class, () -> FrontendRequest.GET_QUEUE_NUM.checkFeature(acked));
        assertEquals(VhostUserError.InvalidOperation, e.kind());
        assertTrue(e.getMessage().contains("GET_QUEUE_NUM needs protocol feature MQ, negotiated REPLY_ACK"), e.getMessage());
        FrontendRequest.GET_QUEUE_NUM.checkFeature(acked | ProtocolFeatures.bit(ProtocolFeatures.MQ));
        FrontendRequest.SET_OWNER.checkFeature(0);
    }

    @Test
    void protocolFeatureMasksAreTheReferenceMasks() {
        assertEquals(0x1L, ProtocolFeatures.bit(ProtocolFeatures.MQ));
        assertEquals(0x8L, ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK));
        assertEquals(0x20L, ProtocolFeatures.bit(ProtocolFeatures.BACKEND_REQ));
        assertEquals(0x200L, ProtocolFeatures.bit(ProtocolFeatures.CONFIG));
        assertEquals(0x1000L, ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD));
        assertEquals(0x8000L, ProtocolFeatures.bit(ProtocolFeatures.CONFIGURE_MEM_SLOTS));
        assertEquals(0x1_0000L, ProtocolFeatures.bit(ProtocolFeatures.STATUS));
        assertEquals(0x8_0000L, ProtocolFeatures.bit(ProtocolFeatures.DEVICE_STATE));
        assertEquals(0x20_0000L, ProtocolFeatures.bit(ProtocolFeatures.GPA_ADDRESSES));
        assertEquals(0x40_0000L, ProtocolFeatures.bit(ProtocolFeatures.SHMEM));
        assertEquals("MQ|REPLY_ACK|CONFIGURE_MEM_SLOTS|STATUS", ProtocolFeatures.describe(0x18009));
        assertEquals("none", ProtocolFeatures.describe(0));
        assertEquals("bit40", ProtocolFeatures.describe(1L << 40));
    }
}
