package io.vring.jmh.report;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ReportWriterTest {
    private static final String JSON = """
            [
              {"benchmark": "io.vring.jmh.RingThroughput.ring", "mode": "thrpt", "jdkVersion": "25", "vmName": "VM", "vmVersion": "1",
               "jvmArgs": [], "params": {"batch": "8", "features": "none", "ring": "SPLIT"},
               "primaryMetric": {"score": 10.0, "scoreError": "NaN", "scoreUnit": "ops/s"},
               "secondaryMetrics": {"transfers": {"score": 3.0E6, "scoreError": 1.0E5, "scoreUnit": "ops/s"}}},
              {"benchmark": "io.vring.jmh.RingThroughput.jctools", "mode": "thrpt",
               "params": {"batch": "8"},
               "primaryMetric": {"score": 10.0, "scoreError": 1.0, "scoreUnit": "ops/s"},
               "secondaryMetrics": {"transfers": {"score": 6.0E6, "scoreError": 2.0E5, "scoreUnit": "ops/s"}}},
              {"benchmark": "io.vring.jmh.RingThroughput.agrona", "mode": "thrpt",
               "params": {"batch": "8"},
               "primaryMetric": {"score": 10.0, "scoreError": 1.0, "scoreUnit": "ops/s"},
               "secondaryMetrics": {"transfers": {"score": 1.5E6, "scoreError": 2.0E4, "scoreUnit": "ops/s"}}}
            ]
            """;

    @Test
    void everyVringFigureSitsNextToItsPeersFromTheSameRunWithTheRatio() {
        List<ReportWriter.Result> results = ReportWriter.read(JSON);
        assertEquals(3, results.size());
        assertEquals("RingThroughput.ring", results.get(0).benchmark());
        assertEquals(3.0e6, results.get(0).secondaryScore("transfers"));
        String md = ReportWriter.markdown(results, "vring bench", "test machine", List.of());
        assertTrue(md.contains("| SPLIT | 8 | none | 3.00 ± 0.10 | 6.00 ± 0.20 | 0.50× | 1.50 ± 0.02 | 2.00× |"), md);
        assertTrue(md.contains("1 of 1 configurations met"), md);
        assertTrue(md.contains("0 of 1 configurations met"), md);
        assertTrue(md.contains("not measured in this run"), md);
    }

    @Test
    void theAllocationGoalIsJudgedPerElementAndShowsTheSampledRoundTripsBesideIt() {
        // a sampled (SampleTime) benchmark's B/op also carries JMH's per-iteration statistics
        String json = """
                [
                  {"benchmark": "io.vring.jmh.RingThroughput.ring", "mode": "thrpt",
                   "params": {"batch": "8", "features": "none", "ring": "SPLIT"},
                   "primaryMetric": {"score": 10.0, "scoreError": 1.0, "scoreUnit": "ops/s"},
                   "secondaryMetrics": {"transfers": {"score": 3.0E6, "scoreError": 1.0E5, "scoreUnit": "ops/s"},
                                        "gc.alloc.rate.norm": {"score": 0.01, "scoreError": 0.0, "scoreUnit": "B/op"}}},
                  {"benchmark": "io.vring.jmh.RingLatency.ring", "mode": "sample",
                   "params": {"ring": "SPLIT", "wake": "eventfd"},
                   "primaryMetric": {"score": 25000.0, "scoreError": 100.0, "scoreUnit": "ns/op",
                     "scorePercentiles": {"50.0": 24000.0, "99.0": 70000.0, "99.9": 160000.0}},
                   "secondaryMetrics": {"gc.alloc.rate.norm": {"score": 6.3, "scoreError": 1.0, "scoreUnit": "B/op"}}}
                ]
                """;
        String md = ReportWriter.markdown(ReportWriter.read(json), null, "test machine", List.of());
        assertTrue(md.contains("throughput (per element) largest 0.0 — met; sampled round trips largest 6.3"), md);

        String allocating = json.replace("\"score\": 0.01,", "\"score\": 24.0,");
        md = ReportWriter.markdown(ReportWriter.read(allocating), null, "test machine", List.of());
        assertTrue(md.contains("throughput (per element) largest 24.0 — not met"), md);
    }

    private static String sample(String backend, double p50, double p99) {
        return """
                {"benchmark": "io.vring.jmh.DeviceSetup.connectStartRequestClose", "mode": "sample",
                 "params": {"backend": "%s"},
                 "primaryMetric": {"score": %f, "scoreError": 1.0, "scoreUnit": "ns/op",
                   "scorePercentiles": {"50.0": %f, "99.0": %f}}}
                """.formatted(backend, p50, p50, p99);
    }

    private static String iops(String backend, int depth, String op, double score) {
        return """
                {"benchmark": "io.vring.jmh.BlkIops.request", "mode": "thrpt",
                 "params": {"backend": "%s", "depth": "%d", "op": "%s"},
                 "primaryMetric": {"score": %f, "scoreError": 500.0, "scoreUnit": "ops/s"}}
                """.formatted(backend, depth, op, score);
    }

    @Test
    void setUpTimeSitsNextToThePeerOfTheSameDeviceAndIopsNextToQemuStorageDaemon() {
        String json = "[" + String.join(",", sample("vring-blk", 2_000_000, 4_000_000), sample("qsd-blk", 1_000_000, 3_000_000),
                sample("vring-rng", 1_500_000, 2_500_000), iops("vring", 32, "read", 80_000), iops("qsd", 32, "read", 64_000),
                iops("vring", 1, "write", 20_000), iops("qsd", 1, "read", 30_000)) + "]";
        String md = ReportWriter.markdown(ReportWriter.read(json), null, "test machine", List.of());
        assertTrue(md.contains("| vring blk | 2.00 ms | 4.00 ms | qemu-storage-daemon blk | 1.00 ms | 3.00 ms | 2.00× |"), md);
        // no DPDK in this run: its cells say so rather than borrow another row's figure
        assertTrue(md.contains("| vring rng | 1.50 ms | 2.50 ms | DPDK testpmd net_vhost (2 rings, another device) | – | – | – |"), md);
        assertTrue(md.contains("| read | 32 | 80.0 ± 0.5 | 64.0 ± 0.5 | 1.25× |"), md);
        // the peer row of another op is not a peer
        assertTrue(md.contains("| write | 1 | 20.0 ± 0.5 | – | – |"), md);
    }
}
