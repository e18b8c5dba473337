package io.vring.engine;

import java.lang.invoke.VarHandle;

/**
 * The StoreLoad fence every queue puts between publishing its own index or flags and reading the
 * other side's suppression state (and between re-enabling notifications and re-reading the ring).
 *
 * <p>x86 reorders a store with a later load, so without this fence both sides can conclude that the
 * other one will act: a notification is lost and the ring hangs. The system property
 * {@code vring.test.removeFences=true} turns the fence off; it exists only so the notification
 * stress test can show that its watchdog catches that hang. Never set it outside that test.
 */
public final class Fences {
    private static final boolean REMOVED = Boolean.getBoolean("vring.test.removeFences");

    /** Full fence (StoreLoad): stores before it are visible before loads after it. */
    public static void storeLoad() {
        if (!REMOVED) {
            VarHandle.fullFence();
        }
    }

    /** True if the test-only switch removed the fences in this JVM. */
    public static boolean removed() {
        return REMOVED;
    }

    private Fences() {
    }
}
