package io.vring.backends.blk;

import io.vring.protocol.BackendServer;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code vring blk}: serves a vhost-user block device on a socket until interrupted. */
@Command(
        name = "blk",
        mixinStandardHelpOptions = true,
        description = {"A vhost-user block device (virtio-blk) over an image file or RAM.",
                "QEMU: -chardev socket,id=c0,path=SOCKET -device vhost-user-blk-pci,chardev=c0,num-queues=N",
                "(guest memory must be shared: -object memory-backend-memfd,id=mem,size=...,share=on -numa node,memdev=mem)"})
public final class BlkCommand implements Callable<Integer> {

    @Spec
    CommandSpec spec;

    @Option(names = "--socket", required = true, paramLabel = "PATH",
            description = "The vhost-user socket to listen on (connect to, with --client).")
    Path socket;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Disk disk;

    static final class Disk {
        @Option(names = "--image", paramLabel = "FILE", description = "An existing image file (raw); its size is the disk's size.")
        Path image;

        @Option(names = "--ram", paramLabel = "SIZE", description = "A zeroed disk in memory, e.g. 64M, 2G (lost on exit).")
        String ram;
    }

    @Option(names = "--queues", defaultValue = "1", paramLabel = "N", description = "Request queues (default ${DEFAULT-VALUE}).")
    int queues;

    @Option(names = "--read-only", description = "Refuse writes (the guest sees a read-only disk).")
    boolean readOnly;

    @Option(names = "--io-threads", defaultValue = "" + BlkBackend.DEFAULT_IO_THREADS, paramLabel = "N",
            description = "Threads that carry out requests (default ${DEFAULT-VALUE}).")
    int ioThreads;

    @Option(names = "--serial", paramLabel = "ID", description = "The disk's id for GET_ID (at most 20 bytes; default vring-blk).")
    String serial = "vring-blk";

    @Option(names = "--client", description = "Connect to a front-end listening on the socket instead of listening.")
    boolean client;

    @Option(names = "--busy-poll", description = "Busy-poll the rings instead of sleeping on the kick eventfds.")
    boolean busyPoll;

    @Override
    public Integer call() throws Exception {
        if (queues < 1 || queues > 64) {
            throw new ParameterException(spec.commandLine(), "--queues must be 1..64, got " + queues);
        }
        if (ioThreads < 1 || ioThreads > 256) {
            throw new ParameterException(spec.commandLine(), "--io-threads must be 1..256, got " + ioThreads);
        }
        DiskImage image;
        try {
            image = disk.image != null ? DiskImage.file(disk.image, readOnly) : DiskImage.ram(parseSize(disk.ram), readOnly);
        } catch (IOException | RuntimeException e) {
            if (e instanceof ParameterException p) {
                throw p;
            }
            System.err.println("vring blk: cannot open the disk: " + e.getMessage());
            return 1;
        }
        BlkBackend device = new BlkBackend(image, queues, ioThreads, serial);
        BackendServer.Options options = BackendServer.Options.of(socket).withBusyPoll(busyPoll);
        BackendServer server;
        try {
            server = client ? BackendServer.connect(socket, device, options) : BackendServer.listen(socket, device, options);
        } catch (RuntimeException e) {
            device.close();
            throw e;
        }
        Thread hook = new Thread(() -> {
            server.close();
            device.close();
            System.out.println("vring blk: " + device.stats() + "; " + server.stats());
        });
        Runtime.getRuntime().addShutdownHook(hook);
        System.out.println("vring blk: " + (client ? "connecting to " : "listening on ") + socket + ", " + image.describe()
                + ", " + queues + " queue(s), " + ioThreads + " I/O thread(s)");
        server.awaitClose();
        return 0;
    }

    /** {@code 4096}, {@code 64K}, {@code 64M}, {@code 2G}, {@code 1T} (binary units), a multiple of 512. */
    long parseSize(String text) {
        String t = text.trim().toUpperCase(Locale.ROOT);
        int shift = 0;
        if (!t.isEmpty()) {
            switch (t.charAt(t.length() - 1)) {
                case 'K' -> shift = 10;
                case 'M' -> shift = 20;
                case 'G' -> shift = 30;
                case 'T' -> shift = 40;
                default -> shift = -1;
            }
            if (shift >= 0) {
                t = t.substring(0, t.length() - 1);
            } else {
                shift = 0;
            }
        }
        long value;
        try {
            value = Long.parseLong(t);
        } catch (NumberFormatException e) {
            throw new ParameterException(spec.commandLine(), "--ram: cannot read size '" + text + "' (e.g. 64M, 2G)");
        }
        if (value <= 0 || value > (Long.MAX_VALUE >> shift)) {
            throw new ParameterException(spec.commandLine(), "--ram: size '" + text + "' out of range");
        }
        long bytes = value << shift;
        if (bytes % BlkLayout.SECTOR_SIZE != 0) {
            throw new ParameterException(spec.commandLine(), "--ram: " + bytes + " bytes is not a multiple of 512");
        }
        return bytes;
    }
}
