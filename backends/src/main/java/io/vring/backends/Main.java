package io.vring.backends;

import io.vring.backends.bench.BenchCommand;
import io.vring.backends.blk.BlkCommand;
import io.vring.backends.crash.CrashTestCommand;
import io.vring.backends.demo.DemoCommand;
import io.vring.backends.rng.RngCommand;
import io.vring.backends.vsock.VsockCommand;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code vring} command line: one top command, one subcommand per device or engine task.
 * Devices ({@code vsock}, {@code blk}, {@code rng}, {@code net}) and {@code bench} join as they land.
 */
@Command(
        name = "vring",
        mixinStandardHelpOptions = true,
        versionProvider = Main.PackageVersion.class,
        description = "A Java virtqueue engine and vhost-user stack.",
        subcommands = {BlkCommand.class, VsockCommand.class, RngCommand.class, DemoCommand.class, BenchCommand.class,
                CrashTestCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    @CommandLine.Spec
    private CommandLine.Model.CommandSpec spec;

    public static void main(String[] args) {
        System.exit(new CommandLine(new Main()).execute(args));
    }

    /** {@code vring} with no subcommand: say what there is, exit 2 as for any usage error. */
    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "Missing required subcommand");
    }

    /** The version the jar's manifest carries ({@code Implementation-Version}), or "dev" outside a jar. */
    static final class PackageVersion implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String version = Main.class.getPackage().getImplementationVersion();
            return new String[] {"vring " + (version == null ? "dev" : version)};
        }
    }
}
