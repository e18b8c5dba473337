package io.vring.backends.guest;

import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The guest kit's module load order, read from the modules' own .modinfo (no host modinfo). */
class KernelModulesTest {

    @Test
    void everyModuleIsLoadedAfterTheModulesItDependsOn() {
        KernelModules modules = GuestKit.require().modules();
        List<String> order = modules.loadOrder(List.of("virtio_pci", "virtio-rng", "vmw_vsock_virtio_transport")).stream()
                .map(KernelModulesTest::name).toList();
        assertEquals(order.size(), order.stream().distinct().count(), "each module once: " + order);
        for (int i = 0; i < order.size(); i++) {
            for (String dependency : modules.dependsOn(order.get(i))) {
                int at = order.indexOf(KernelModules.canonical(dependency));
                assertTrue(at >= 0 && at < i, order.get(i) + " needs " + dependency + " first: " + order);
            }
        }
        // What the reference recipe lists for virtio over PCI, found here from depends= alone (the
        // transport is named: a virtio driver does not depend on virtio_pci).
        assertTrue(order.containsAll(List.of("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
                "virtio_pci", "virtio_rng", "vsock", "vmw_vsock_virtio_transport_common")), order.toString());
    }

    @Test
    void aModuleTheKernelDoesNotHaveAsAFileIsNamedInTheError() {
        KernelModules modules = GuestKit.require().modules();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> modules.loadOrder(List.of("rng_core")));   // built into Debian's cloud kernel
        assertTrue(e.getMessage().contains("rng_core"), e.getMessage());
    }

    private static String name(Path file) {
        String fileName = file.getFileName().toString();
        return KernelModules.canonical(fileName.substring(0, fileName.length() - ".ko".length()));
    }
}
