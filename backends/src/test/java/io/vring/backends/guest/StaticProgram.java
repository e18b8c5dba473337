package io.vring.backends.guest;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A C program from the test resources, compiled with {@code gcc -static} so it runs in a guest
 * whose initramfs has no C library. Warnings are errors: a guest program that compiles with
 * warnings is a test that may be checking the wrong thing.
 */
final class StaticProgram {
    private static final long COMPILE_TIMEOUT_SECONDS = 60;

    private StaticProgram() {
    }

    /** Compiles the class-path resource {@code resource} (a .c file) into {@code outDir}; returns the binary. */
    static Path compile(GuestKit kit, String resource, Path outDir) throws IOException, InterruptedException {
        byte[] source;
        try (InputStream in = StaticProgram.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IOException("no test resource " + resource);
            }
            source = in.readAllBytes();
        }
        String name = Path.of(resource).getFileName().toString().replaceFirst("\\.c$", "");
        Files.createDirectories(outDir);
        Path sourceFile = outDir.resolve(name + ".c");
        Path binary = outDir.resolve(name);
        Files.write(sourceFile, source);
        Path log = outDir.resolve(name + ".gcc.log");
        List<String> command = List.of(kit.gcc().toString(), "-static", "-O2", "-Wall", "-Wextra", "-Werror",
                "-o", binary.toString(), sourceFile.toString());
        Process gcc = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        if (!gcc.waitFor(COMPILE_TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
            gcc.destroyForcibly().waitFor();
            throw new IOException("gcc did not finish in " + COMPILE_TIMEOUT_SECONDS + " s: " + command);
        }
        if (gcc.exitValue() != 0) {
            throw new IOException("gcc failed (" + gcc.exitValue() + "): " + command + "\n"
                    + Files.readString(log, StandardCharsets.UTF_8));
        }
        return binary;
    }
}
