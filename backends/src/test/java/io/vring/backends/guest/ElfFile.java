package io.vring.backends.guest;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Just enough of an ELF64 little-endian reader for the guest kit: a named section's bytes (a
 * kernel module's {@code .modinfo}) and whether the file asks for a dynamic loader (a guest
 * initramfs has none, so busybox and test programs must be static). The host has no modinfo
 * (kmod is not a dependency), and the unpacked kernel has no modules.dep, so this is how the
 * module load order is found.
 */
final class ElfFile {
    // ELF header fields (System V gABI, ELF64).
    private static final int EI_CLASS = 4, EI_DATA = 5, ELFCLASS64 = 2, ELFDATA2LSB = 1;
    private static final int E_PHOFF = 0x20, E_SHOFF = 0x28;
    private static final int E_PHENTSIZE = 0x36, E_PHNUM = 0x38, E_SHENTSIZE = 0x3A, E_SHNUM = 0x3C, E_SHSTRNDX = 0x3E;
    // Section header fields.
    private static final int SH_NAME = 0, SH_OFFSET = 0x18, SH_SIZE = 0x20;
    // Program header fields.
    private static final int P_TYPE = 0, PT_INTERP = 3;

    private final Path path;
    private final ByteBuffer bytes;

    private ElfFile(Path path, ByteBuffer bytes) {
        this.path = path;
        this.bytes = bytes;
    }

    static ElfFile read(Path path) throws IOException {
        ByteBuffer bytes = ByteBuffer.wrap(Files.readAllBytes(path)).order(ByteOrder.LITTLE_ENDIAN);
        if (bytes.capacity() < 64 || bytes.getInt(0) != 0x464C457F) {
            throw new IOException(path + " is not an ELF file");
        }
        if (bytes.get(EI_CLASS) != ELFCLASS64 || bytes.get(EI_DATA) != ELFDATA2LSB) {
            throw new IOException(path + " is not a little-endian ELF64 file");
        }
        return new ElfFile(path, bytes);
    }

    /** The contents of the section called {@code name}, if there is one. */
    Optional<byte[]> section(String name) throws IOException {
        long tableOffset = bytes.getLong(E_SHOFF);
        int entrySize = Short.toUnsignedInt(bytes.getShort(E_SHENTSIZE));
        int count = Short.toUnsignedInt(bytes.getShort(E_SHNUM));
        int namesIndex = Short.toUnsignedInt(bytes.getShort(E_SHSTRNDX));
        if (count == 0 || namesIndex >= count) {
            return Optional.empty();
        }
        long namesOffset = bytes.getLong(checkedIndex(tableOffset + (long) namesIndex * entrySize + SH_OFFSET, 8));
        for (int i = 0; i < count; i++) {
            int header = checkedIndex(tableOffset + (long) i * entrySize, entrySize);
            long nameAt = namesOffset + Integer.toUnsignedLong(bytes.getInt(header + SH_NAME));
            if (name.equals(cString(nameAt))) {
                long size = bytes.getLong(header + SH_SIZE);
                int start = checkedIndex(bytes.getLong(header + SH_OFFSET), size);
                byte[] contents = new byte[(int) size];
                bytes.get(start, contents);
                return Optional.of(contents);
            }
        }
        return Optional.empty();
    }

    /** True if the program headers name an interpreter (a dynamic loader): the file is not static. */
    boolean hasInterpreter() throws IOException {
        long tableOffset = bytes.getLong(E_PHOFF);
        int entrySize = Short.toUnsignedInt(bytes.getShort(E_PHENTSIZE));
        int count = Short.toUnsignedInt(bytes.getShort(E_PHNUM));
        for (int i = 0; i < count; i++) {
            int header = checkedIndex(tableOffset + (long) i * entrySize, entrySize);
            if (bytes.getInt(header + P_TYPE) == PT_INTERP) {
                return true;
            }
        }
        return false;
    }

    private String cString(long offset) throws IOException {
        int start = checkedIndex(offset, 1);
        int end = start;
        while (end < bytes.capacity() && bytes.get(end) != 0) {
            end++;
        }
        byte[] text = new byte[end - start];
        bytes.get(start, text);
        return new String(text, StandardCharsets.US_ASCII);
    }

    private int checkedIndex(long offset, long length) throws IOException {
        if (offset < 0 || length < 0 || offset + length > bytes.capacity()) {
            throw new IOException(path + ": offset " + offset + " + " + length + " lies outside the file");
        }
        return (int) offset;
    }
}
