package io.vring.protocol;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class VhostUserErrorTest {
    @ParameterizedTest(name = "errno {0} ({1}) -> {2}")
    @CsvSource({
        "11, EAGAIN/EWOULDBLOCK, SocketRetry",
        "4, EINTR, SocketRetry",
        "105, ENOBUFS, SocketRetry",
        "12, ENOMEM, SocketRetry",
        "104, ECONNRESET, SocketBroken",
        "32, EPIPE, SocketBroken",
        "13, EACCES, SocketConnect",
        "9, EBADF, SocketError",
        "111, ECONNREFUSED, SocketError",
        "0, none, SocketError",
    })
    void errnoMapsAsRustVmmMapsIt(int errno, String name, VhostUserError kind) {
        assertEquals(kind, VhostUserError.fromErrno(errno));
    }

    @Test
    void onlySocketRetryIsRetryable() {
        for (VhostUserError kind : VhostUserError.values()) {
            assertEquals(kind == VhostUserError.SocketRetry, kind.isRetryable(), kind.name());
        }
        assertTrue(new VhostUserException(VhostUserError.SocketRetry, "x").isRetryable());
    }

    @Test
    void aLostConnectionAsksForAReconnectButADeliberateCloseDoesNot() {
        assertTrue(VhostUserError.PartialMessage.shouldReconnect());
        assertTrue(VhostUserError.SocketBroken.shouldReconnect());
        assertFalse(VhostUserError.Disconnect.shouldReconnect());
        assertFalse(VhostUserError.SocketRetry.shouldReconnect());
        assertFalse(VhostUserError.InvalidMessage.shouldReconnect());
    }

    @Test
    void theMessageStartsWithTheKind() {
        VhostUserException e = new VhostUserException(VhostUserError.IncorrectFds, "SET_VRING_KICK expects 1 fd, got 0");
        assertEquals("IncorrectFds: SET_VRING_KICK expects 1 fd, got 0", e.getMessage());
        assertEquals(VhostUserError.IncorrectFds, e.kind());
    }
}
