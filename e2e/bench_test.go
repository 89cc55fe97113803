package e2e

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/shardwire/shardwire/pgcluster"
)

// BenchmarkReadsReplicasVsPrimary runs pgbench -S -c 32 through shardwire
// in front of a primary with two streaming replicas, once with reads
// spread over the replicas and once with every read on the primary, and
// reports both throughputs (tps_replicas, tps_primary). On one small
// machine all servers share the same cores, so the ratio says more about
// the proxy's routing cost than about scaling.
//
//	go test ./e2e -run '^$' -bench ReadsReplicasVsPrimary -benchtime 1x
func BenchmarkReadsReplicasVsPrimary(b *testing.B) {
	sh := startShard(b, "benchrep", 2, "scram-sha-256")
	pgbench := tool(b, "pgbench")
	tps := regexp.MustCompile(`tps = ([0-9.]+)`)
	run := func(reads string) float64 {
		p := startProxy(b, proxyConfig{size: 20, shards: []*pgcluster.Shard{sh},
			extra: "routing:\n  reads: " + reads + "\n  max_replica_lag: 5s\nhealth:\n  interval: 200ms\n"})
		if reads == "replicas" {
			if out, err := p.run(b, 2*time.Minute, pgbench, "-i", "-s", "5", "-q"); err != nil {
				b.Fatalf("pgbench -i: %v\n%s", err, out)
			}
			for _, r := range sh.Replicas {
				if err := r.CatchUp(context.Background(), sh.Primary); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		var total float64
		for i := 0; i < b.N; i++ {
			out, err := p.run(b, 2*time.Minute, pgbench, "-S", "-c", "32", "-j", "2", "-T", "10", "-M", "prepared")
			m := tps.FindStringSubmatch(out)
			if err != nil || m == nil {
				b.Fatalf("pgbench: %v\n%s", err, out)
			}
			v, _ := strconv.ParseFloat(m[1], 64)
			total += v
		}
		p.stop(b)
		return total / float64(b.N)
	}
	rep := run("replicas")
	pri := run("primary")
	b.ReportMetric(rep, "tps_replicas")
	b.ReportMetric(pri, "tps_primary")
	b.ReportMetric(rep/pri, "ratio")
}
