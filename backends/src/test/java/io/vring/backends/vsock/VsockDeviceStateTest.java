package io.vring.backends.vsock;

import io.vring.engine.RingKind;
import io.vring.protocol.BackendClient;
import io.vring.protocol.BackendServer;
import io.vring.protocol.FrontendConfig;
import io.vring.protocol.FrontendDevice;
import io.vring.protocol.VhostUserException;
import io.vring.protocol.message.ProtocolFeatures;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/**
 * DEVICE_STATE for vsock: a front-end stops the rings, saves the state, and resumes the device in a
 * fresh back-end process's device for the same guest CID; the rings run there. A state for another
 * CID, or bytes that are no vsock state, are refused and the device stays stopped.
 */
@Timeout(60)
class VsockDeviceStateTest {
    @TempDir
    Path dir;

    private VsockDevice device(long cid, String name) throws Exception {
        return VsockDevice.open(VsockConfig.of(cid, dir.resolve(name + ".sock"), dir.resolve(name + ".uds")));
    }

    @Test
    void theStateMovesToAFreshDeviceOfTheSameCidAndItsRingsRun() throws Exception {
        try (VsockDevice source = device(3, "source"); VsockDevice target = device(3, "target");
             BackendServer a = BackendServer.listen(source.config().socket(), source);
             BackendServer b = BackendServer.listen(target.config().socket(), target);
             FrontendDevice frontend = FrontendDevice.start(BackendClient.connect(source.config().socket()),
                     FrontendConfig.of(2, 128))) {
            assertTrue((frontend.protocolFeatures() & 1L << ProtocolFeatures.DEVICE_STATE) != 0, "DEVICE_STATE is offered");
            byte[] state = frontend.saveState();
            assertEquals(16, state.length);
            frontend.resume(BackendClient.connect(target.config().socket()), state);
            assertTrue(frontend.isRunning());
            assertEquals(2, b.stats().ringStarts(RingKind.SPLIT), "rx and tx run in the target: " + b.stats());
            assertEquals(0, b.stats().brokenQueues());
        }
    }

    @Test
    void aStateOfAnotherCidOrNoStateAtAllIsRefused() throws Exception {
        try (VsockDevice source = device(3, "source"); VsockDevice other = device(4, "other");
             BackendServer a = BackendServer.listen(source.config().socket(), source);
             BackendServer b = BackendServer.listen(other.config().socket(), other);
             FrontendDevice frontend = FrontendDevice.start(BackendClient.connect(source.config().socket()),
                     FrontendConfig.of(2, 128))) {
            byte[] state = frontend.saveState();
            assertThrows(VhostUserException.class, () -> frontend.resume(BackendClient.connect(other.config().socket()), state),
                    "a CID 3 state into a CID 4 device");
            assertFalse(frontend.isRunning());
            assertEquals(0, b.stats().ringStarts(RingKind.SPLIT));
            assertThrows(VhostUserException.class, () -> other.loadState(new byte[] {1, 2, 3}));
            byte[] wrongVersion = state.clone();
            wrongVersion[4] = 9;
            assertThrows(VhostUserException.class, () -> source.loadState(wrongVersion));
        }
    }
}
