package io.vring.backends.crash;

import io.vring.protocol.BackendServer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/**
 * The crash test's back-end process (a child JVM that {@link CrashTest} starts, kills and starts
 * again): a {@link CrashDevice} served on a socket, busy-polling, with the device as the inflight
 * store probe. It runs until it is killed: by the front-end, or by itself at its crash point.
 */
@Command(name = "crash-test-backend", description = "The back-end process of vring crash-test (not for direct use).")
public final class CrashBackend implements Callable<Integer> {
    @Option(names = "--socket", required = true)
    Path socket;

    @Option(names = "--generation", required = true, description = "This incarnation's number, from 1.")
    int generation;

    @Option(names = "--point", required = true, converter = PointConverter.class)
    CrashPoint point;

    @Option(names = "--arm-after", defaultValue = "0", description = "Completions before the crash point arms.")
    long armAfter;

    @Option(names = "--seed", required = true)
    long seed;

    @Option(names = "--no-inflight", description = "Do not offer INFLIGHT_SHMFD (the negative control).")
    boolean noInflight;

    public static void main(String[] args) {
        System.exit(new CommandLine(new CrashBackend()).execute(args));
    }

    @Override
    public Integer call() throws InterruptedException {
        CrashDevice device = new CrashDevice(generation, point, armAfter, !noInflight, seed);
        BackendServer.Options options = new BackendServer.Options("crash-g" + generation, true).withInflightProbe(device);
        try (BackendServer server = BackendServer.listen(socket, device, options)) {
            System.out.println("generation " + generation + " (pid " + ProcessHandle.current().pid() + ") serves "
                    + socket + ", crash point " + point.cliName() + (point.isDeterministic() ? " after " + armAfter : ""));
            System.out.flush();
            server.awaitClose();
        }
        return 0;
    }

    static final class PointConverter implements CommandLine.ITypeConverter<CrashPoint> {
        @Override
        public CrashPoint convert(String value) {
            return CrashPoint.ofCliName(value);
        }
    }
}
