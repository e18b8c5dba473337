package io.vring.backends.guest;

import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * What a guest test needs on the host: qemu-system-x86_64, a static busybox, gcc, and Debian's
 * cloud kernel unpacked (not installed) by {@code .ci/guest-kit.sh}.
 *
 * <p>Where the kit is: the system property {@value #KIT_PROPERTY}, else the environment variable
 * {@code VRING_GUEST_KIT}, else {@code $VRING_GUEST_CACHE/current} (default
 * {@code /var/cache/vring-guest/current}). The directory holds {@code boot/vmlinuz-<version>} and
 * {@code lib/modules/<version>/}.
 *
 * <p>A machine without the kit skips the guest tests, unless the system property
 * {@value #REQUIRED_PROPERTY} is {@code true} (CI sets it): then a missing piece fails the test,
 * so a broken CI machine cannot pass by skipping.
 *
 * @param kernelVersion the {@code uname -r} the guest will report
 * @param kernel the bzImage QEMU boots
 * @param modules the kernel's loadable modules
 */
public record GuestKit(String kernelVersion, Path kernel, KernelModules modules, Path qemu, Path busybox, Path gcc) {
    public static final String REQUIRED_PROPERTY = "vring.guest.required";
    public static final String KIT_PROPERTY = "vring.guest.kit";
    private static final String HOW_TO_PREPARE = "prepare the machine with .ci/guest-kit.sh (as root)";

    private static Optional<GuestKit> found;
    private static String missing;

    /** The kit, or the test is skipped (or failed, if guest tests are required) saying what is missing. */
    public static synchronized GuestKit require() {
        if (found == null) {
            List<String> problems = new ArrayList<>();
            found = locate(problems);
            missing = String.join("; ", problems);
        }
        if (found.isEmpty()) {
            String message = "guest test needs " + missing + "; " + HOW_TO_PREPARE;
            if (Boolean.getBoolean(REQUIRED_PROPERTY)) {
                Assertions.fail(message + " (" + REQUIRED_PROPERTY + "=true: a missing kit is a failure)");
            }
            Assumptions.abort(message);
        }
        return found.get();
    }

    private static Optional<GuestKit> locate(List<String> problems) {
        Path qemu = executable("qemu-system-x86_64", problems);
        Path busybox = executable("busybox", problems);
        Path gcc = executable("gcc", problems);
        if (busybox != null) {
            try {
                if (ElfFile.read(busybox).hasInterpreter()) {
                    problems.add("a static busybox (" + busybox + " is dynamically linked: install busybox-static)");
                }
            } catch (IOException e) {
                problems.add("a readable busybox (" + e.getMessage() + ")");
            }
        }
        Path kit = kitDirectory();
        Path kernel = null;
        KernelModules modules = null;
        String version = null;
        try (DirectoryStream<Path> images = Files.newDirectoryStream(kit.resolve("boot"), "vmlinuz-*")) {
            for (Path image : images) {
                kernel = image;
            }
        } catch (IOException e) {
            // Reported below as a missing kernel.
        }
        if (kernel == null || !Files.isReadable(kernel)) {
            problems.add("a guest kernel (no readable boot/vmlinuz-* in " + kit + ")");
        } else {
            version = kernel.getFileName().toString().substring("vmlinuz-".length());
            try {
                modules = KernelModules.index(kit.resolve("lib/modules").resolve(version));
            } catch (IOException e) {
                problems.add("the kernel's modules (" + e.getMessage() + ")");
            }
        }
        if (!problems.isEmpty()) {
            return Optional.empty();
        }
        return Optional.of(new GuestKit(version, kernel, modules, qemu, busybox, gcc));
    }

    private static Path kitDirectory() {
        String explicit = System.getProperty(KIT_PROPERTY, "");
        if (explicit.isEmpty()) {
            explicit = System.getenv().getOrDefault("VRING_GUEST_KIT", "");
        }
        if (!explicit.isEmpty()) {
            return Path.of(explicit);
        }
        return Path.of(System.getenv().getOrDefault("VRING_GUEST_CACHE", "/var/cache/vring-guest"), "current");
    }

    private static Path executable(String name, List<String> problems) {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            Path candidate = Path.of(dir.isEmpty() ? "." : dir, name);
            if (Files.isExecutable(candidate)) {
                return candidate;
            }
        }
        // Debian puts busybox-static in /bin, which a minimal PATH may leave out.
        for (String dir : new String[] {"/usr/bin", "/bin", "/usr/sbin", "/sbin"}) {
            Path candidate = Path.of(dir, name);
            if (Files.isExecutable(candidate)) {
                return candidate;
            }
        }
        problems.add(name);
        return null;
    }
}
