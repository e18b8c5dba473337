package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PayloadRecordsTest {
    private static final MemoryRegion REGION = new MemoryRegion(0x1_0000_0000L, 0x4000_0000L, 0x7feb_2fff_f000L, 0x8000_0000L);

    /** One sample of every fixed-size payload with its decoder. */
    static Stream<Arguments> fixedSizePayloads() {
        return Stream.of(
                Arguments.of(new U64Payload(0x1_6100_0000L), (Function<ByteBuffer, Payload>) U64Payload::decode, 8),
                Arguments.of(new VringState(1, 256), (Function<ByteBuffer, Payload>) VringState::decode, 8),
                Arguments.of(new VringFdPayload(7, true), (Function<ByteBuffer, Payload>) VringFdPayload::decode, 8),
                Arguments.of(new VringAddress(1, 1, 0x7feb_329c_4000L, 0x7feb_329c_4940L, 0x7feb_329c_4800L, 0x29c_5940L),
                        (Function<ByteBuffer, Payload>) VringAddress::decode, 40),
                Arguments.of(REGION, (Function<ByteBuffer, Payload>) MemoryRegion::decode, 32),
                Arguments.of(new SingleMemoryRegion(REGION), (Function<ByteBuffer, Payload>) SingleMemoryRegion::decode, 40),
                Arguments.of(new InflightDescription(4160, 0, 2, 256), (Function<ByteBuffer, Payload>) InflightDescription::decode, 24),
                Arguments.of(new LogDescription(0x10000, 0x1000), (Function<ByteBuffer, Payload>) LogDescription::decode, 16),
                Arguments.of(new DeviceStateTransfer(DeviceStateTransfer.LOAD, DeviceStateTransfer.PHASE_STOPPED),
                        (Function<ByteBuffer, Payload>) DeviceStateTransfer::decode, 8));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("fixedSizePayloads")
    void everyPayloadRoundTripsAtItsWireSize(Payload payload, Function<ByteBuffer, Payload> decode, int wireSize) {
        ByteBuffer bytes = payload.encode();
        assertEquals(wireSize, bytes.remaining());
        assertEquals(wireSize, payload.encodedSize());
        assertEquals(payload, decode.apply(bytes));
        assertEquals(0, bytes.position(), "decode must not move the source position");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("fixedSizePayloads")
    void everyPayloadRejectsOneByteTooFewOrTooMany(Payload payload, Function<ByteBuffer, Payload> decode, int wireSize) {
        ByteBuffer shorter = ByteBuffer.allocate(wireSize - 1);
        ByteBuffer longer = ByteBuffer.allocate(wireSize + 1);
        assertEquals(VhostUserError.InvalidMessage, assertThrows(VhostUserException.class, () -> decode.apply(shorter)).kind());
        assertEquals(VhostUserError.InvalidMessage, assertThrows(VhostUserException.class, () -> decode.apply(longer)).kind());
    }

    @Test
    void encodingAdvancesTheDestinationPastThePayload() {
        ByteBuffer b = ByteBuffer.allocate(20);
        b.position(4);
        new VringState(2, 3).encode(b);
        assertEquals(12, b.position());
        assertEquals(ByteOrder.BIG_ENDIAN, b.order(), "the caller's byte order is left alone");
        assertEquals(2, b.order(ByteOrder.LITTLE_ENDIAN).getInt(4));
    }

    @Test
    void theVringAddressPutsUsedBeforeAvail() {
        ByteBuffer b = new VringAddress(3, 0, 0x1000, 0x2000, 0x3000, 0x4000).encode();
        assertEquals(3, b.getInt(0));
        assertEquals(0x1000, b.getLong(8));
        assertEquals(0x2000, b.getLong(16), "used at offset 16");
        assertEquals(0x3000, b.getLong(24), "avail at offset 24");
        assertEquals(0x4000, b.getLong(32));
    }

    @Test
    void aVringAddressWithAnUnknownFlagIsRejected() {
        ByteBuffer b = new VringAddress(0, 0, 0, 0, 0, 0).encode();
        b.putInt(4, 2);
        assertEquals(VhostUserError.InvalidParam, assertThrows(VhostUserException.class, () -> VringAddress.decode(b)).kind());
    }

    @Test
    void theVringFdPayloadKeepsTheIndexInTheLowEightBitsAndNofdInBitEight() {
        assertEquals(0x105, new VringFdPayload(5, true).toU64());
        assertEquals(new VringFdPayload(255, false), VringFdPayload.fromU64(0xFF));
        assertEquals(1, VringFdPayload.fromU64(3).expectedFds());
        assertEquals(0, VringFdPayload.fromU64(0x103).expectedFds());
    }

    @ParameterizedTest(name = "0x{0}")
    @ValueSource(longs = {0x200, 0x1_0000_0000L, 0x8000_0000_0000_0000L})
    void aVringFdPayloadWithOtherBitsIsRejected(long value) {
        assertEquals(VhostUserError.InvalidParam, assertThrows(VhostUserException.class, () -> VringFdPayload.fromU64(value)).kind());
    }

    @Test
    void aKickWithoutItsFdNamesTheRequestAndTheCounts() {
        VhostUserException e = assertThrows(VhostUserException.class, () -> new VringFdPayload(0, false).checkFds("SET_VRING_KICK", 0));
        assertEquals(VhostUserError.IncorrectFds, e.kind());
        assertTrue(e.getMessage().contains("SET_VRING_KICK for ring 0 expects 1 fd, got 0"), e.getMessage());
        new VringFdPayload(0, true).checkFds("SET_VRING_KICK", 0);
    }

    private static List<MemoryRegion> regions(int n) {
        List<MemoryRegion> list = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            list.add(new MemoryRegion(i * 0x1000_0000L, 0x1000_0000L, 0x7f00_0000_0000L + i * 0x1000_0000L, 0));
        }
        return list;
    }

    @ParameterizedTest(name = "{0} regions")
    @ValueSource(ints = {0, 1, 8})
    void aMemoryTableOfZeroOneOrEightRegionsRoundTrips(int n) {
        MemoryTable table = new MemoryTable(regions(n));
        ByteBuffer b = table.encode();
        assertEquals(8 + 32 * n, b.remaining());
        assertEquals(n, b.order(ByteOrder.LITTLE_ENDIAN).getInt(0));
        assertEquals(table, MemoryTable.decode(b, n));
        assertTrue(FrontendRequest.SET_MEM_TABLE.payload().accepts(b.remaining()));
    }

    @Test
    void aMemoryTableOfNineRegionsIsRejected() {
        assertThrows(IllegalArgumentException.class, () -> new MemoryTable(regions(9)));
        ByteBuffer b = ByteBuffer.allocate(8 + 9 * 32).order(ByteOrder.LITTLE_ENDIAN).putInt(0, 9);
        VhostUserException e = assertThrows(VhostUserException.class, () -> MemoryTable.decode(b, 9));
        assertEquals(VhostUserError.InvalidParam, e.kind());
        assertTrue(e.getMessage().contains("num_regions 9"), e.getMessage());
    }

    @Test
    void aMemoryTableWhoseCountDisagreesWithItsSizeIsRejected() {
        ByteBuffer b = new MemoryTable(regions(2)).encode();
        b.putInt(0, 1);
        assertEquals(VhostUserError.InvalidMessage, assertThrows(VhostUserException.class, () -> MemoryTable.decode(b, 1)).kind());
    }

    @Test
    void aMemoryTableWhoseFdsDisagreeWithItsCountIsRejected() {
        ByteBuffer b = new MemoryTable(regions(2)).encode();
        VhostUserException e = assertThrows(VhostUserException.class, () -> MemoryTable.decode(b, 1));
        assertEquals(VhostUserError.IncorrectFds, e.kind());
        assertTrue(e.getMessage().contains("expects 2 fds, got 1"), e.getMessage());
    }

    @Test
    void aMemoryTableWithPaddingSetOrShorterThanItsHeaderIsRejected() {
        ByteBuffer b = new MemoryTable(regions(1)).encode();
        b.putInt(4, 1);
        assertEquals(VhostUserError.InvalidParam, assertThrows(VhostUserException.class, () -> MemoryTable.decode(b, 1)).kind());
        assertEquals(VhostUserError.InvalidMessage,
                assertThrows(VhostUserException.class, () -> MemoryTable.decode(ByteBuffer.allocate(4), 0)).kind());
    }

    @Test
    void aRegionOfSizeZeroOrOneThatWrapsIsRejected() {
        assertEquals(VhostUserError.InvalidParam, assertThrows(VhostUserException.class,
                () -> MemoryRegion.decode(new MemoryRegion(0, 0, 0x1000, 0).encode())).kind());
        assertEquals(VhostUserError.InvalidParam, assertThrows(VhostUserException.class,
                () -> MemoryRegion.decode(new MemoryRegion(-0x1000L, 0x2000, 0x1000, 0).encode())).kind());
        assertEquals(VhostUserError.InvalidParam, assertThrows(VhostUserException.class,
                () -> MemoryRegion.decode(new MemoryRegion(0, 0x2000, 0x1000, -1L).encode())).kind());
        // The last page of the address space is fine: it ends exactly at 2^64.
        MemoryRegion.decode(new MemoryRegion(-0x1000L, 0x1000, 0x1000, 0).encode());
    }

    @Test
    void aSingleRegionIgnoresItsPadding() {
        ByteBuffer b = new SingleMemoryRegion(REGION).encode();
        b.putLong(0, 0xdead);
        assertEquals(REGION, SingleMemoryRegion.decode(b).region());
    }

    @ParameterizedTest(name = "{0} config bytes")
    @ValueSource(ints = {0, 8, 57, 256})
    void aDeviceConfigRoundTripsWithItsData(int length) {
        byte[] data = new byte[length];
        for (int i = 0; i < length; i++) {
            data[i] = (byte) i;
        }
        DeviceConfig config = new DeviceConfig(4, DeviceConfig.FLAG_MIGRATION, data);
        ByteBuffer b = config.encode();
        assertEquals(12 + length, b.remaining());
        DeviceConfig back = DeviceConfig.decode(b);
        assertEquals(config, back);
        assertArrayEquals(data, back.data());
    }

    @Test
    void aDeviceConfigWithMoreThan256BytesIsRejected() {
        assertThrows(IllegalArgumentException.class, () -> new DeviceConfig(0, 0, new byte[257]));
        ByteBuffer b = ByteBuffer.allocate(12 + 257).order(ByteOrder.LITTLE_ENDIAN).putInt(4, 257);
        assertEquals(VhostUserError.InvalidMessage, assertThrows(VhostUserException.class, () -> DeviceConfig.decode(b)).kind());
    }

    @Test
    void aDeviceConfigWhoseSizeFieldDisagreesWithItsBytesIsRejected() {
        ByteBuffer b = DeviceConfig.request(0, 8).encode();
        b.putInt(4, 9);
        VhostUserException e = assertThrows(VhostUserException.class, () -> DeviceConfig.decode(b));
        assertEquals(VhostUserError.InvalidMessage, e.kind());
        assertTrue(e.getMessage().contains("size field 9 but 8 config bytes follow"), e.getMessage());
    }

    @Test
    void aDeviceConfigPastTheConfigWindowIsRejected() {
        ByteBuffer b = new DeviceConfig(4090, 0, new byte[8]).encode();
        assertEquals(VhostUserError.InvalidParam, assertThrows(VhostUserException.class, () -> DeviceConfig.decode(b)).kind());
    }

    @Test
    void theInflightDescriptionIsTwentyFourBytesWithU16QueueFields() {
        ByteBuffer b = new InflightDescription(0, 0, 0xFFFF, 1024).encode();
        assertEquals(24, b.remaining());
        assertEquals((short) 0xFFFF, b.getShort(16));
        assertEquals(1024, b.getShort(18));
        assertEquals(0xFFFF, InflightDescription.decode(b).numQueues());
        assertThrows(VhostUserException.class, () -> new InflightDescription(0, 0, 0x10000, 1));
    }

    @Test
    void aDeviceStateTransferWithAnUnknownDirectionOrPhaseIsRejected() {
        ByteBuffer direction = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(0, 2);
        ByteBuffer phase = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(4, 1);
        assertEquals(VhostUserError.InvalidParam, assertThrows(VhostUserException.class, () -> DeviceStateTransfer.decode(direction)).kind());
        assertEquals(VhostUserError.InvalidParam, assertThrows(VhostUserException.class, () -> DeviceStateTransfer.decode(phase)).kind());
        assertTrue(new DeviceStateTransfer(DeviceStateTransfer.SAVE, 0).saves());
        assertFalse(new DeviceStateTransfer(DeviceStateTransfer.LOAD, 0).saves());
    }
}
