package io.vring.backends.vsock;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads vhost-device-vsock's YAML configuration: a top-level {@code vms:} list whose entries are flat
 * maps of the {@link VmSpec} keys.
 *
 * <pre>
 * vms:
 *     - guest_cid: 4
 *       socket: /tmp/vhost4.socket
 *       uds_path: /tmp/vm4.vsock
 *       tx_buffer_size: 65536
 *       queue_size: 1024
 *       groups: group1+group2
 * </pre>
 *
 * Only this shape is read (no anchors, flow style or nesting), which keeps the device free of a YAML
 * library; anything else is an error naming the line.
 */
public final class VsockConfigFile {
    private VsockConfigFile() {
    }

    public static List<VsockConfig> read(Path file) throws IOException {
        return parse(Files.readAllLines(file), file.toString());
    }

    static List<VsockConfig> parse(List<String> lines, String name) {
        List<Map<String, String>> vms = new ArrayList<>();
        List<Integer> starts = new ArrayList<>();
        boolean inVms = false;
        for (int i = 0; i < lines.size(); i++) {
            String where = name + ":" + (i + 1);
            String line = stripComment(lines.get(i));
            if (line.isBlank()) {
                continue;
            }
            String text = line.strip();
            if (!Character.isWhitespace(line.charAt(0))) {
                if (!text.equals("vms:")) {
                    throw new IllegalArgumentException(where + ": expected \"vms:\", got \"" + text + "\"");
                }
                inVms = true;
                continue;
            }
            if (!inVms) {
                throw new IllegalArgumentException(where + ": entries must follow \"vms:\"");
            }
            if (text.startsWith("- ") || text.equals("-")) {
                vms.add(new LinkedHashMap<>());
                starts.add(i + 1);
                text = text.substring(1).strip();
                if (text.isEmpty()) {
                    continue;
                }
            } else if (vms.isEmpty()) {
                throw new IllegalArgumentException(where + ": a key before the first \"- \" entry");
            }
            int colon = text.indexOf(':');
            if (colon <= 0) {
                throw new IllegalArgumentException(where + ": expected key: value, got \"" + text + "\"");
            }
            VmSpec.put(vms.getLast(), text.substring(0, colon), unquote(text.substring(colon + 1).strip()), where);
        }
        if (vms.isEmpty()) {
            throw new IllegalArgumentException(name + ": no VMs under \"vms:\"");
        }
        List<VsockConfig> configs = new ArrayList<>();
        for (int i = 0; i < vms.size(); i++) {
            configs.add(VmSpec.of(vms.get(i), name + ":" + starts.get(i)));
        }
        return configs;
    }

    private static String stripComment(String line) {
        int hash = line.indexOf(" #");
        if (line.stripLeading().startsWith("#")) {
            return "";
        }
        return hash >= 0 ? line.substring(0, hash) : line;
    }

    private static String unquote(String value) {
        if (value.length() >= 2 && (value.startsWith("\"") && value.endsWith("\"")
                || value.startsWith("'") && value.endsWith("'"))) {
            return value.substring(1, value.length() - 1);
        }
        return value;
    }
}
