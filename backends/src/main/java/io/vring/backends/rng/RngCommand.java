package io.vring.backends.rng;

import io.vring.protocol.BackendServer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code vring rng}: serves a vhost-user-rng device on a socket until interrupted. */
@Command(
        name = "rng",
        mixinStandardHelpOptions = true,
        description = {"A vhost-user entropy device (virtio-rng).",
                "QEMU: -chardev socket,id=c0,path=SOCKET -device vhost-user-rng-pci,chardev=c0"})
public final class RngCommand implements Callable<Integer> {

    @Option(names = "--socket", required = true, paramLabel = "PATH",
            description = "The vhost-user socket to listen on (connect to, with --client).")
    Path socket;

    @Option(names = "--source", paramLabel = "FILE",
            description = "Read the bytes from FILE in order, starting over at its end (default: the JDK's SecureRandom).")
    Path source;

    @Option(names = "--client", description = "Connect to a front-end listening on the socket instead of listening.")
    boolean client;

    @Option(names = "--busy-poll", description = "Busy-poll the ring instead of sleeping on the kick eventfd.")
    boolean busyPoll;

    @Override
    public Integer call() throws Exception {
        EntropySource entropy = source == null ? EntropySource.secureRandom() : EntropySource.file(source);
        RngBackend device = new RngBackend(entropy);
        BackendServer.Options options = BackendServer.Options.of(socket).withBusyPoll(busyPoll);
        BackendServer server = client ? BackendServer.connect(socket, device, options)
                : BackendServer.listen(socket, device, options);
        System.out.println("vring rng: " + (client ? "connecting to " : "listening on ") + socket
                + (source == null ? " (SecureRandom)" : " (bytes from " + source + ")"));
        Thread hook = new Thread(() -> {
            server.close();
            entropy.close();
            System.out.println("vring rng: served " + device.requestsServed() + " requests, " + device.bytesServed()
                    + " bytes; " + server.stats());
        });
        Runtime.getRuntime().addShutdownHook(hook);
        server.awaitClose();
        return 0;
    }
}
