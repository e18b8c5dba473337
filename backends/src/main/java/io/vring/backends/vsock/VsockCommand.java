package io.vring.backends.vsock;

import io.vring.protocol.BackendServer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;

/**
 * {@code vring vsock}: vhost-user-vsock devices with the hybrid host side, one per VM, on the command
 * line of vhost-device-vsock (single-VM flags, or {@code --vm} repeated, or {@code --config FILE}).
 */
@Command(
        name = "vsock",
        mixinStandardHelpOptions = true,
        description = {"A vhost-user-vsock device per VM (virtio-vsock), host side in the hybrid model:",
                "hosts connect to UDS_PATH and write \"CONNECT <port>\\n\", get \"OK <host-port>\\n\";",
                "a guest connecting to CID 2 port P reaches a listener on UDS_PATH_P.",
                "Writing \"STATS\\n\" to UDS_PATH instead returns the VM's counters.",
                "QEMU: -chardev socket,id=c0,path=SOCKET -device vhost-user-vsock-pci,chardev=c0"})
public final class VsockCommand implements Callable<Integer> {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--socket", paramLabel = "PATH", description = "The vhost-user socket to listen on.")
    Path socket;

    @Option(names = "--uds-path", paramLabel = "PATH", description = "The hybrid host socket.")
    Path udsPath;

    @Option(names = "--guest-cid", paramLabel = "CID", defaultValue = "3",
            description = "The guest's CID (default: ${DEFAULT-VALUE}).")
    long guestCid;

    @Option(names = "--tx-buffer-size", paramLabel = "BYTES", defaultValue = "65536",
            description = "Per-connection guest-to-host buffer, also the advertised buf_alloc (default: ${DEFAULT-VALUE}).")
    int txBufferSize;

    @Option(names = "--queue-size", paramLabel = "N", defaultValue = "1024",
            description = "Largest queue size accepted (default: ${DEFAULT-VALUE}).")
    int queueSize;

    @Option(names = "--groups", paramLabel = "G1+G2", defaultValue = "default",
            description = "Groups this VM belongs to, '+'-separated: guests of VMs in one process that share a group reach each other by CID (default: default).")
    String groups;

    @Option(names = "--vm", paramLabel = "KEY=VALUE,...",
            description = "One VM: guest-cid, socket, uds-path, tx-buffer-size, queue-size, groups. Repeatable.")
    List<String> vms = new ArrayList<>();

    @Option(names = "--config", paramLabel = "FILE", description = "A YAML file with a \"vms:\" list (vhost-device-vsock's format).")
    Path config;

    @Option(names = "--busy-poll", description = "Busy-poll the rings instead of sleeping on the kick eventfds.")
    boolean busyPoll;

    /** The VMs the options describe, checked as vhost-device-vsock checks them. */
    List<VsockConfig> configs() throws Exception {
        CommandLine.ParseResult parsed = spec.commandLine().getParseResult();
        boolean single = Arrays.asList("--socket", "--uds-path", "--guest-cid", "--tx-buffer-size", "--queue-size",
                "--groups").stream().anyMatch(parsed::hasMatchedOption);
        int modes = (single ? 1 : 0) + (vms.isEmpty() ? 0 : 1) + (config == null ? 0 : 1);
        if (modes != 1) {
            throw new CommandLine.ParameterException(spec.commandLine(),
                    "give exactly one of: --socket/--uds-path (one VM), --vm (repeated), --config FILE");
        }
        List<VsockConfig> all = new ArrayList<>();
        try {
            if (single) {
                if (socket == null || udsPath == null) {
                    throw new IllegalArgumentException("--socket and --uds-path are both required");
                }
                all.add(new VsockConfig(guestCid, socket, udsPath, txBufferSize, queueSize, List.of(groups.split("\\+"))));
            } else if (!vms.isEmpty()) {
                for (String vm : vms) {
                    all.add(VmSpec.parse(vm));
                }
            } else {
                all.addAll(VsockConfigFile.read(config));
            }
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
        }
        Set<Long> cids = new HashSet<>();
        Set<Path> paths = new HashSet<>();
        for (VsockConfig vm : all) {
            if (!cids.add(vm.guestCid())) {
                throw new CommandLine.ParameterException(spec.commandLine(), "guest CID " + vm.guestCid() + " is used twice");
            }
            if (!paths.add(vm.socket()) || !paths.add(vm.udsPath())) {
                throw new CommandLine.ParameterException(spec.commandLine(), "a socket path is used twice (CID " + vm.guestCid() + ")");
            }
        }
        return all;
    }

    @Override
    public Integer call() throws Exception {
        List<VsockConfig> all = configs();
        List<VsockDevice> devices = new ArrayList<>();
        List<BackendServer> servers = new ArrayList<>();
        Siblings siblings = new Siblings();
        try {
            for (VsockConfig vm : all) {
                VsockDevice device = VsockDevice.open(vm, siblings);
                devices.add(device);
                servers.add(BackendServer.listen(vm.socket(), device,
                        new BackendServer.Options("vsock-cid-" + vm.guestCid(), busyPoll)));
                System.out.println("vring vsock: cid " + vm.guestCid() + " on " + vm.socket() + ", host side " + vm.udsPath()
                        + ", tx buffer " + vm.txBufferSize() + ", queue size up to " + vm.queueSize());
            }
        } catch (Exception e) {
            closeAll(servers, devices);
            throw e;
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> closeAll(servers, devices)));
        for (BackendServer server : servers) {
            server.awaitClose();
        }
        return 0;
    }

    private static void closeAll(List<BackendServer> servers, List<VsockDevice> devices) {
        servers.forEach(BackendServer::close);
        for (VsockDevice device : devices) {
            VsockStats.Snapshot stats = device.stats();
            device.close();
            System.out.println("vring vsock: cid " + device.config().guestCid() + ": " + stats);
        }
    }
}
