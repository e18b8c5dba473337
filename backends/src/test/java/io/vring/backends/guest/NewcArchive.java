package io.vring.backends.guest;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.Set;

/**
 * Writes a cpio archive in the "newc" format, the one the kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst): per entry a 110-byte ASCII header
 * of 8-digit hex fields, the NUL-terminated name, the data, each padded to 4 bytes; a
 * {@code TRAILER!!!} entry ends it. Parent directories are written before their first child,
 * since the kernel does not create them.
 */
final class NewcArchive implements AutoCloseable {
    private static final int S_IFDIR = 0040000, S_IFREG = 0100000, S_IFLNK = 0120000;

    private final OutputStream out;
    private final Set<String> directories = new HashSet<>();
    private long written;
    private int inode = 1;

    NewcArchive(OutputStream out) {
        this.out = out;
    }

    /** A regular file at {@code path} (relative, no leading slash) with permissions {@code mode}. */
    void file(String path, int mode, byte[] data) throws IOException {
        parents(path);
        entry(path, S_IFREG | mode, data);
    }

    void symlink(String path, String target) throws IOException {
        parents(path);
        entry(path, S_IFLNK | 0777, target.getBytes(StandardCharsets.UTF_8));
    }

    void directory(String path) throws IOException {
        parents(path);
        if (directories.add(path)) {
            entry(path, S_IFDIR | 0755, new byte[0]);
        }
    }

    private void parents(String path) throws IOException {
        if (path.startsWith("/") || path.contains("..")) {
            throw new IllegalArgumentException("archive paths are relative and stay inside: " + path);
        }
        int slash = path.lastIndexOf('/');
        if (slash > 0) {
            directory(path.substring(0, slash));
        }
    }

    private void entry(String name, int mode, byte[] data) throws IOException {
        byte[] nameBytes = (name + "\0").getBytes(StandardCharsets.UTF_8);
        int links = (mode & S_IFDIR) == S_IFDIR ? 2 : 1;
        String header = "070701" + hex(inode++) + hex(mode) + hex(0) + hex(0) + hex(links) + hex(0)
                + hex(data.length) + hex(0) + hex(0) + hex(0) + hex(0) + hex(nameBytes.length) + hex(0);
        write(header.getBytes(StandardCharsets.US_ASCII));
        write(nameBytes);
        pad();
        write(data);
        pad();
    }

    private static String hex(long value) {
        return String.format("%08X", value);
    }

    private void write(byte[] bytes) throws IOException {
        out.write(bytes);
        written += bytes.length;
    }

    private void pad() throws IOException {
        while (written % 4 != 0) {
            out.write(0);
            written++;
        }
    }

    /** Writes the trailer and closes the stream. */
    @Override
    public void close() throws IOException {
        try (out) {
            inode = 0;
            entry("TRAILER!!!", 0, new byte[0]);
        }
    }
}
