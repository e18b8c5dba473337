package io.vring.backends.vsock;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * One VM's settings as vhost-device-vsock spells them, in a {@code --vm} value
 * ({@code guest-cid=4,socket=/tmp/vhost4.socket,uds-path=/tmp/vm4.vsock}) or a {@code --config} file
 * entry: keys {@code guest_cid}, {@code socket}, {@code uds_path}, {@code tx_buffer_size},
 * {@code queue_size}, {@code groups} ({@code +}-separated), with {@code -} or {@code _}. Missing keys
 * take vhost-device-vsock's defaults; {@code socket} and {@code uds_path} are required.
 */
public final class VmSpec {
    private static final List<String> KEYS = List.of("guest_cid", "socket", "uds_path", "tx_buffer_size", "queue_size",
            "groups");

    private VmSpec() {
    }

    /** Parses a {@code --vm} value. */
    public static VsockConfig parse(String value) {
        Map<String, String> pairs = new LinkedHashMap<>();
        for (String item : value.split(",")) {
            int eq = item.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("--vm " + value + ": \"" + item + "\" is not key=value");
            }
            put(pairs, item.substring(0, eq), item.substring(eq + 1), "--vm " + value);
        }
        return of(pairs, "--vm " + value);
    }

    static void put(Map<String, String> pairs, String key, String value, String where) {
        String name = key.strip().toLowerCase(Locale.ROOT).replace('-', '_');
        if (name.equals("forward_cid") || name.equals("forward_listen")) {
            throw new IllegalArgumentException(where + ": " + key + " (the AF_VSOCK forwarding back-end) is not supported; use uds_path");
        }
        if (!KEYS.contains(name)) {
            throw new IllegalArgumentException(where + ": unknown key " + key + " (known: " + String.join(", ", KEYS) + ")");
        }
        if (pairs.put(name, value.strip()) != null) {
            throw new IllegalArgumentException(where + ": " + key + " given twice");
        }
    }

    /** A VM from its key/value pairs (underscore spelling), defaults for the rest. */
    static VsockConfig of(Map<String, String> pairs, String where) {
        try {
            String socket = pairs.get("socket");
            String uds = pairs.get("uds_path");
            if (socket == null || socket.isEmpty() || uds == null || uds.isEmpty()) {
                throw new IllegalArgumentException("socket and uds_path are required");
            }
            String groups = pairs.getOrDefault("groups", "default");
            return new VsockConfig(
                    parseLong(pairs.getOrDefault("guest_cid", String.valueOf(VsockConfig.DEFAULT_GUEST_CID)), "guest_cid"),
                    Path.of(socket), Path.of(uds),
                    (int) parseLong(pairs.getOrDefault("tx_buffer_size", String.valueOf(VsockConfig.DEFAULT_TX_BUFFER_SIZE)), "tx_buffer_size"),
                    (int) parseLong(pairs.getOrDefault("queue_size", String.valueOf(VsockConfig.DEFAULT_QUEUE_SIZE)), "queue_size"),
                    Arrays.asList(groups.split("\\+")));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(where + ": " + e.getMessage(), e);
        }
    }

    private static long parseLong(String text, String key) {
        try {
            long value = Long.parseLong(text);
            if (value < 0 || (!key.equals("guest_cid") && value > Integer.MAX_VALUE)) {
                throw new NumberFormatException();
            }
            return value;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(key + " must be a non-negative number, got \"" + text + "\"");
        }
    }
}
