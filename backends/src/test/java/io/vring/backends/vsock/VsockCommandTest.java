package io.vring.backends.vsock;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The command line takes what vhost-device-vsock takes, and refuses what it refuses. */
class VsockCommandTest {
    @TempDir
    Path dir;

    private static List<VsockConfig> configs(String... args) throws Exception {
        VsockCommand command = new VsockCommand();
        new CommandLine(command).parseArgs(args);
        return command.configs();
    }

    @Test
    void singleVmFlagsWithDefaults() throws Exception {
        List<VsockConfig> vms = configs("--socket", "/tmp/v.sock", "--uds-path", "/tmp/vm.vsock");
        assertEquals(List.of(new VsockConfig(3, Path.of("/tmp/v.sock"), Path.of("/tmp/vm.vsock"), 65536, 1024,
                List.of("default"))), vms);
    }

    @Test
    void singleVmFlagsAllGiven() throws Exception {
        VsockConfig vm = configs("--socket", "/s", "--uds-path", "/u", "--guest-cid", "7", "--tx-buffer-size",
                "262144", "--queue-size", "256", "--groups", "a+b").getFirst();
        assertEquals(new VsockConfig(7, Path.of("/s"), Path.of("/u"), 262144, 256, List.of("a", "b")), vm);
    }

    @Test
    void repeatedVmTakesEitherKeySpelling() throws Exception {
        List<VsockConfig> vms = configs("--vm", "guest-cid=4,socket=/tmp/vhost4.socket,uds-path=/tmp/vm4.vsock",
                "--vm", "guest_cid=5,socket=/tmp/vhost5.socket,uds_path=/tmp/vm5.vsock,tx_buffer_size=1024,queue-size=32,groups=g1+g2");
        assertEquals(2, vms.size());
        assertEquals(VsockConfig.of(4, Path.of("/tmp/vhost4.socket"), Path.of("/tmp/vm4.vsock")), vms.get(0));
        assertEquals(new VsockConfig(5, Path.of("/tmp/vhost5.socket"), Path.of("/tmp/vm5.vsock"), 1024, 32,
                List.of("g1", "g2")), vms.get(1));
    }

    @Test
    void aYamlConfigListsTheVms() throws Exception {
        Path file = dir.resolve("vms.yaml");
        Files.writeString(file, """
                # two VMs
                vms:
                    - guest_cid: 4
                      socket: /tmp/vhost4.socket
                      uds_path: /tmp/vm4.vsock
                      tx_buffer_size: 65536
                      queue_size: 1024
                      groups: group1+group2
                    - guest_cid: 5
                      socket: "/tmp/vhost5.socket"
                      uds-path: /tmp/vm5.vsock
                """);
        List<VsockConfig> vms = configs("--config", file.toString());
        assertEquals(List.of(
                new VsockConfig(4, Path.of("/tmp/vhost4.socket"), Path.of("/tmp/vm4.vsock"), 65536, 1024, List.of("group1", "group2")),
                VsockConfig.of(5, Path.of("/tmp/vhost5.socket"), Path.of("/tmp/vm5.vsock"))), vms);
    }

    @Test
    void mistakesAreRefusedWithTheirReason() throws Exception {
        assertRefused("exactly one of", "--socket", "/s", "--uds-path", "/u", "--vm", "socket=/a,uds-path=/b");
        assertRefused("exactly one of");
        assertRefused("both required", "--socket", "/s");
        assertRefused("socket and uds_path are required", "--vm", "guest-cid=4,socket=/a");
        assertRefused("unknown key colour", "--vm", "socket=/a,uds-path=/b,colour=red");
        assertRefused("forwarding back-end", "--vm", "socket=/a,forward-cid=1");
        assertRefused("used twice", "--vm", "guest-cid=4,socket=/a,uds-path=/b", "--vm", "guest-cid=4,socket=/c,uds-path=/d");
        assertRefused("used twice", "--vm", "guest-cid=4,socket=/a,uds-path=/b", "--vm", "guest-cid=5,socket=/a,uds-path=/d");
        assertRefused("reserved", "--socket", "/s", "--uds-path", "/u", "--guest-cid", "2");
        assertRefused("non-negative number", "--vm", "socket=/a,uds-path=/b,queue-size=lots");
        Path bad = dir.resolve("bad.yaml");
        Files.writeString(bad, "vms:\n  - guest_cid: 4\n    socket /tmp/x\n");
        assertRefused("bad.yaml:3", "--config", bad.toString());
    }

    private static void assertRefused(String reason, String... args) {
        CommandLine.ParameterException e = assertThrows(CommandLine.ParameterException.class, () -> configs(args));
        assertTrue(e.getMessage().contains(reason), e.getMessage());
    }
}
