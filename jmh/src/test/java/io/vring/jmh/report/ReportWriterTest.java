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
}
