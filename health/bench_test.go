package health

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

func benchChecker(b *testing.B) *Checker {
	b.Helper()
	c, err := New(testConfig(ModeFollow), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for _, o := range []observation{
		{Addr: P, At: now, Timeline: 1, CurrentLSN: 100},
		{Addr: R1, At: now, InRecovery: true, Timeline: 1, ReceiveLSN: 100, ReplayLSN: 100},
		{Addr: R2, At: now, InRecovery: true, Timeline: 1, ReceiveLSN: 100, ReplayLSN: 100},
	} {
		c.core.observe(o)
	}
	c.core.decide(now)
	c.publish(now)
	return c
}

// The proxy's per-statement look-ups: snapshot, writer, readers, a replay
// position.
func BenchmarkTopologyRead(b *testing.B) {
	c := benchChecker(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t := c.Topology()
			if t.Writer("s0") == nil || len(t.Readers("s0")) != 2 {
				b.Fatal("bad topology")
			}
			if _, ok := t.ReplayLSN(R1); !ok {
				b.Fatal("no replay LSN")
			}
		}
	})
}

func BenchmarkAllowDial(b *testing.B) {
	c := benchChecker(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !c.AllowDial(R1) {
				b.Fatal("refused")
			}
		}
	})
}

func BenchmarkReportFailure(b *testing.B) {
	c := benchChecker(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.ReportFailure(R1, errTimeout)
		}
	})
}

// What one check result costs the deciding goroutine: apply, decide and
// publish a new snapshot of a three-node shard.
func BenchmarkObserveDecidePublish(b *testing.B) {
	c := benchChecker(b)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(time.Millisecond)
		c.core.observe(observation{Addr: P, At: now, Timeline: 1, CurrentLSN: LSN(200 + i)})
		c.core.decide(now)
		c.publish(now)
	}
}
