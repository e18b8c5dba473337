package io.vring.backends.blk;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code vring blk}'s command line: sizes, the disk choice and the ranges it refuses before serving anything. */
class BlkCommandTest {
    @TempDir
    Path dir;

    private static BlkCommand parsed(String... args) {
        BlkCommand command = new BlkCommand();
        new CommandLine(command).parseArgs(args);
        return command;
    }

    @Test
    void ramSizesTakeBinaryUnitsAndMustBeWholeSectors() {
        BlkCommand c = parsed("--socket", "s", "--ram", "64M");
        assertEquals(64L << 20, c.parseSize("64M"));
        assertEquals(2L << 30, c.parseSize("2g"));
        assertEquals(4096, c.parseSize("4096"));
        assertEquals(1L << 40, c.parseSize("1T"));
        assertThrows(CommandLine.ParameterException.class, () -> c.parseSize("1000"), "not whole sectors");
        assertThrows(CommandLine.ParameterException.class, () -> c.parseSize("3Q"));
        assertThrows(CommandLine.ParameterException.class, () -> c.parseSize("-1M"));
        assertThrows(CommandLine.ParameterException.class, () -> c.parseSize("99999999999T"), "overflows");
    }

    @Test
    void exactlyOneOfImageAndRamIsRequired() {
        assertThrows(CommandLine.ParameterException.class, () -> parsed("--socket", "s"));
        assertThrows(CommandLine.ParameterException.class, () -> parsed("--socket", "s", "--ram", "1M", "--image", "x"));
        BlkCommand c = parsed("--socket", "s", "--image", "disk.img", "--queues", "4", "--read-only", "--io-threads", "8");
        assertEquals(Path.of("disk.img"), c.disk.image);
        assertEquals(4, c.queues);
        assertEquals(8, c.ioThreads);
        assertTrue(c.readOnly);
    }

    @Test
    void outOfRangeCountsAndAMissingImageExitWithoutServing() {
        StringWriter err = new StringWriter();
        CommandLine cli = new CommandLine(new BlkCommand()).setErr(new PrintWriter(err));
        assertEquals(2, cli.execute("--socket", dir.resolve("a.sock").toString(), "--ram", "1M", "--queues", "0"));
        assertTrue(err.toString().contains("--queues must be 1..64"), err.toString());
        assertEquals(2, cli.execute("--socket", dir.resolve("a.sock").toString(), "--ram", "1M", "--io-threads", "0"));
        assertEquals(1, cli.execute("--socket", dir.resolve("a.sock").toString(), "--image", dir.resolve("none.img").toString()));
    }
}
