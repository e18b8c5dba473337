package io.vring.backends.vsock;

import org.agrona.collections.Long2ObjectHashMap;

import java.util.List;

/**
 * The VMs one process serves that may reach each other, as vhost-device-vsock's {@code --groups}:
 * a guest's packet to another guest's CID goes straight into that VM's {@link SiblingInbox} when
 * the two share a group (every VM is in group {@code default} unless told otherwise).
 *
 * <p>Looked up by the tx workers on every sibling packet, so the map they read is an immutable
 * snapshot swapped on join and leave: no lock and no boxing on the data path.
 */
public final class Siblings {
    private volatile Long2ObjectHashMap<VsockDevice> byCid = new Long2ObjectHashMap<>();

    synchronized void join(VsockDevice device) {
        long cid = device.config().guestCid();
        if (byCid.containsKey(cid)) {
            throw new IllegalArgumentException("guest CID " + cid + " already has a device here");
        }
        Long2ObjectHashMap<VsockDevice> next = new Long2ObjectHashMap<>(byCid);
        next.put(cid, device);
        byCid = next;
    }

    synchronized void leave(VsockDevice device) {
        long cid = device.config().guestCid();
        if (byCid.get(cid) == device) {
            Long2ObjectHashMap<VsockDevice> next = new Long2ObjectHashMap<>(byCid);
            next.remove(cid);
            byCid = next;
        }
    }

    /** The device of guest {@code cid} if {@code from}'s guest may reach it, else null. */
    VsockDevice route(VsockConfig from, long cid) {
        VsockDevice to = byCid.get(cid);
        if (to == null || cid == from.guestCid() || !shareAGroup(from.groups(), to.config().groups())) {
            return null;
        }
        return to;
    }

    private static boolean shareAGroup(List<String> a, List<String> b) {
        for (int i = 0; i < a.size(); i++) {
            if (b.contains(a.get(i))) {
                return true;
            }
        }
        return false;
    }
}
