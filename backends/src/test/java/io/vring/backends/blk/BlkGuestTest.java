package io.vring.backends.blk;

import io.vring.backends.guest.GuestKit;
import io.vring.backends.guest.Initramfs;
import io.vring.backends.guest.QemuGuest;
import io.vring.engine.RingKind;
import io.vring.protocol.BackendServer;
import io.vring.protocol.ServerStats;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.SplittableRandom;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The blk device serving a real Linux 6.1 guest through QEMU 7.2's vhost-user-blk-pci, offering
 * two queues (the one-CPU guest uses one). The image starts with 4 MiB of seeded bytes; the guest checks what it sees of the disk
 * (size, serial, queues, write cache), reads the first MiB, copies the first 4 MiB to 8 MiB with
 * four writers at once, syncs, drops its cache and reads the copy back, and discards a range.
 * The host then finds the copy in the image file.
 */
class BlkGuestTest {
    private static final Duration GUEST_STEP = Duration.ofSeconds(90);
    private static final int IMAGE_BYTES = 32 << 20;
    private static final int SEEDED = 4 << 20;

    private static final String GUEST_SCRIPT = """
            n=0
            while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
            echo "SIZE $(cat /sys/block/vda/size)"
            echo "RO $(cat /sys/block/vda/ro)"
            echo "SERIAL $(cat /sys/block/vda/serial)"
            echo "QUEUES $(ls /sys/block/vda/mq | wc -l)"
            echo "CACHE $(cat /sys/block/vda/queue/write_cache)"
            echo "FIRST $(dd if=/dev/vda bs=64k count=16 2>/dev/null | md5sum | cut -d' ' -f1)"
            for i in 0 1 2 3; do
                dd if=/dev/vda of=/dev/vda bs=64k count=16 skip=$((i*16)) seek=$((128+i*16)) conv=notrunc,fsync 2>/dev/null &
            done
            wait
            sync
            echo 3 > /proc/sys/vm/drop_caches
            echo "COPY $(dd if=/dev/vda bs=64k count=64 skip=128 2>/dev/null | md5sum | cut -d' ' -f1)"
            blkdiscard -o 16777216 -l 1048576 /dev/vda && echo "DISCARD ok"
            """;

    @ParameterizedTest(name = "{0} rings")
    @EnumSource(RingKind.class)
    void aGuestReadsWritesSyncsAndDiscards(RingKind kind, @TempDir Path dir) throws Exception {
        GuestKit kit = GuestKit.require();
        long seed = new SplittableRandom().nextLong();
        System.out.println("BlkGuestTest " + kind + ": image seed " + seed);
        byte[] seeded = new byte[SEEDED];
        new SplittableRandom(seed).nextBytes(seeded);
        Path image = dir.resolve("disk.img");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(IMAGE_BYTES);
            f.write(seeded);
        }
        Path initramfs = new Initramfs(kit).modules("virtio_pci", "virtio_blk").script(GUEST_SCRIPT)
                .writeTo(dir.resolve("initramfs.cpio.gz"));
        Path socket = dir.resolve("blk.sock");

        ServerStats stats;
        BlkStats blk;
        try (BlkBackend device = new BlkBackend(DiskImage.file(image, false), 2, BlkBackend.DEFAULT_IO_THREADS, "vring-guest-disk");
             BackendServer server = BackendServer.listen(socket, device)) {
            stats = server.stats();
            blk = device.stats();
            try (QemuGuest guest = QemuGuest.builder(kit, initramfs, "blk-" + kind.name().toLowerCase())
                    .vhostUser("vhost-user-blk-pci", socket, "num-queues=2", kind == RingKind.PACKED ? "packed=on" : "packed=off")
                    .start()) {
                assertEquals(String.valueOf(IMAGE_BYTES / 512), value(guest, "SIZE"), "capacity in sectors");
                assertEquals("0", value(guest, "RO"));
                assertEquals("vring-guest-disk", value(guest, "SERIAL"), "GET_ID");
                // virtio_blk uses min(num_queues, CPUs) queues, and the harness boots one CPU.
                assertEquals("1", value(guest, "QUEUES"), "one blk-mq hardware queue per CPU");
                assertEquals("write back", value(guest, "CACHE"), "writeback with FLUSH");
                assertEquals(md5(seeded, 0, 1 << 20), value(guest, "FIRST"), "the guest reads the image's first MiB");
                assertEquals(md5(seeded, 0, SEEDED), value(guest, "COPY"), "the guest reads back its copy from the disk");
                assertEquals("ok", value(guest, "DISCARD"));
                assertEquals(0, guest.awaitPowerOff(GUEST_STEP), "the guest's script succeeded");
                assertEquals(List.of(), guest.qemuMessages(), "QEMU has nothing to complain about");
            }
            System.out.println("BlkGuestTest " + kind + ": " + blk + "; " + stats);
        }
        byte[] file = Files.readAllBytes(image);
        assertArrayEquals(seeded, Arrays.copyOfRange(file, 8 << 20, (8 << 20) + SEEDED), "the copy is in the image file");
        assertTrue(blk.flushes() > 0, "the guest's sync sent FLUSH: " + blk);
        assertTrue(blk.writes() > 0 && blk.reads() > 0, blk.toString());
        assertEquals(0, blk.ioErrors() + blk.refusedWithIoErr() + blk.refusedWithUnsupp(), blk.toString());
        assertEquals(0, stats.brokenQueues(), stats.toString());
        assertTrue(stats.ringStarts(kind) >= 1, "the rings started as " + kind + ": " + stats);
    }

    private static String value(QemuGuest guest, String key) throws InterruptedException {
        return guest.awaitLine(Pattern.compile("^" + key + " (.*)$"), GUEST_STEP).group(1).strip();
    }

    private static String md5(byte[] bytes, int from, int length) throws Exception {
        MessageDigest md5 = MessageDigest.getInstance("MD5");
        md5.update(bytes, from, length);
        return HexFormat.of().formatHex(md5.digest());
    }
}
