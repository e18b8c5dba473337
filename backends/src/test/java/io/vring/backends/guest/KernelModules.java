package io.vring.backends.guest;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.SequencedSet;
import java.util.stream.Stream;

/**
 * The loadable modules of the guest kernel, by name, and the order to {@code insmod} them in.
 * A module's name is its file name with dashes as underscores ({@code virtio-rng.ko} is
 * {@code virtio_rng}), as the kernel spells it in {@code depends=}.
 */
public final class KernelModules {
    private final Path modulesDir;
    private final Map<String, Path> files;

    private KernelModules(Path modulesDir, Map<String, Path> files) {
        this.modulesDir = modulesDir;
        this.files = files;
    }

    /** Indexes every {@code .ko} under {@code lib/modules/<version>}. */
    static KernelModules index(Path modulesDir) throws IOException {
        Map<String, Path> files = new HashMap<>();
        try (Stream<Path> walk = Files.walk(modulesDir)) {
            walk.filter(p -> p.getFileName().toString().endsWith(".ko")).forEach(p -> {
                String file = p.getFileName().toString();
                files.put(canonical(file.substring(0, file.length() - 3)), p);
            });
        }
        return new KernelModules(modulesDir, files);
    }

    static String canonical(String moduleName) {
        return moduleName.replace('-', '_');
    }

    /** The module's file; fails naming the directory if the kernel has no such loadable module. */
    Path file(String name) {
        Path file = files.get(canonical(name));
        if (file == null) {
            throw new IllegalArgumentException("no loadable module " + name + " under " + modulesDir
                    + " (built into the kernel, or not in this kernel)");
        }
        return file;
    }

    /** The modules {@code name} needs loaded first, from the {@code depends=} entry of its .modinfo. */
    List<String> dependsOn(String name) {
        Path file = file(name);
        try {
            byte[] modinfo = ElfFile.read(file).section(".modinfo")
                    .orElseThrow(() -> new IOException(file + " has no .modinfo section"));
            for (String entry : new String(modinfo, StandardCharsets.US_ASCII).split("\0")) {
                if (entry.startsWith("depends=")) {
                    String list = entry.substring("depends=".length());
                    return list.isEmpty() ? List.of() : List.of(list.split(","));
                }
            }
            return List.of();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** {@code names} and everything they depend on, each once, every module after its dependencies. */
    List<Path> loadOrder(List<String> names) {
        SequencedSet<String> order = new LinkedHashSet<>();
        for (String name : names) {
            visit(canonical(name), order, new ArrayList<>());
        }
        return order.stream().map(this::file).toList();
    }

    private void visit(String name, SequencedSet<String> order, List<String> path) {
        if (order.contains(name)) {
            return;
        }
        if (path.contains(name)) {
            throw new IllegalStateException("module dependency cycle: " + path + " -> " + name);
        }
        path.add(name);
        for (String dependency : dependsOn(name)) {
            visit(canonical(dependency), order, path);
        }
        path.removeLast();
        order.add(name);
    }
}
