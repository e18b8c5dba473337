package io.vring.backends.guest;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.GZIPOutputStream;

/**
 * Builds the guest's whole userspace: a gzip'd newc cpio with a static busybox, the chosen kernel
 * modules (with everything they depend on), static test programs and an {@code /init} that sets
 * the guest up, runs the test's shell script and powers off.
 *
 * <p>On the serial console the guest prints {@value #READY} once its modules are loaded, then
 * whatever the script prints, then {@code VRING-GUEST-EXIT <status of the script>}, and powers
 * off; QEMU then exits by itself. A module that fails to load prints
 * {@code VRING-GUEST-FAILED insmod <module>} and powers off at once.
 */
public final class Initramfs {
    public static final String READY = "VRING-GUEST-READY";
    public static final String EXIT = "VRING-GUEST-EXIT";
    public static final String FAILED = "VRING-GUEST-FAILED";

    private final GuestKit kit;
    private final List<String> modules = new ArrayList<>();
    private final List<String> programs = new ArrayList<>();
    private String script = "";

    public Initramfs(GuestKit kit) {
        this.kit = kit;
    }

    /**
     * Kernel modules to load at boot, in this order; their dependencies ({@code depends=}) are added
     * and loaded first. A virtio driver does not depend on its transport: name {@code virtio_pci}
     * before it.
     */
    public Initramfs modules(String... names) {
        modules.addAll(List.of(names));
        return this;
    }

    /** A C program from the test resources, compiled static, installed as {@code /bin/<file name without .c>}. */
    public Initramfs program(String resource) {
        programs.add(resource);
        return this;
    }

    /** The test's shell script (busybox sh), run once the modules are loaded; its exit status is reported. */
    public Initramfs script(String script) {
        this.script = script;
        return this;
    }

    /** Writes the archive to {@code file}, compiling programs next to it. */
    public Path writeTo(Path file) throws IOException, InterruptedException {
        Files.createDirectories(file.toAbsolutePath().getParent());
        List<Path> moduleFiles = kit.modules().loadOrder(modules);
        List<Path> binaries = new ArrayList<>();
        for (String resource : programs) {
            binaries.add(StaticProgram.compile(kit, resource, file.resolveSibling(file.getFileName() + ".programs")));
        }
        try (NewcArchive cpio = new NewcArchive(new GZIPOutputStream(new BufferedOutputStream(Files.newOutputStream(file))))) {
            for (String dir : new String[] {"dev", "proc", "sys", "tmp", "lib/modules"}) {
                cpio.directory(dir);
            }
            cpio.file("bin/busybox", 0755, Files.readAllBytes(kit.busybox()));
            for (Path binary : binaries) {
                cpio.file("bin/" + binary.getFileName(), 0755, Files.readAllBytes(binary));
            }
            for (Path module : moduleFiles) {
                cpio.file("lib/modules/" + module.getFileName(), 0644, Files.readAllBytes(module));
            }
            cpio.file("init", 0755, init(moduleFiles).getBytes(StandardCharsets.UTF_8));
            cpio.file("test.sh", 0755, script.getBytes(StandardCharsets.UTF_8));
        }
        return file;
    }

    private static String init(List<Path> moduleFiles) {
        StringBuilder init = new StringBuilder("""
                #!/bin/busybox sh
                # The applet links come from the binary itself, so they always match its applet list.
                /bin/busybox --install -s /bin
                export PATH=/bin
                mount -t proc proc /proc
                mount -t sysfs sysfs /sys
                mount -t devtmpfs devtmpfs /dev
                """);
        for (Path module : moduleFiles) {
            String file = module.getFileName().toString();
            init.append("insmod /lib/modules/").append(file)
                    .append(" || { echo '").append(FAILED).append(" insmod ").append(file).append("'; poweroff -f; }\n");
        }
        // The script runs in its own shell: an `exit` in it still reaches the report and the power-off.
        init.append("echo ").append(READY).append('\n')
                .append("sh /test.sh\n")
                .append("echo \"").append(EXIT).append(" $?\"\n")
                .append("poweroff -f\n");
        return init.toString();
    }
}
