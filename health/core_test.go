package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shardwire/shardwire/config"
)

const (
	P  = "127.0.0.1:5000" // configured primary
	R1 = "127.0.0.1:5001"
	R2 = "127.0.0.1:5002"
)

var (
	errTimeout = fmt.Errorf("health check: %w", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("i/o timeout")})
	errRefused = fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
)

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// script drives a core through a scripted history: one shard, primary P,
// replicas R1 and R2, checks every 100ms, 3 failures down, 2 successes up.
type script struct {
	t    *testing.T
	c    *core
	now  time.Time
	acts []action // every action decided so far
}

func testConfig(mode Mode) *config.Config {
	cfg := config.Defaults()
	cfg.Users = []config.User{{Name: "app", Password: "pw"}}
	cfg.Health.Interval = 100 * time.Millisecond
	cfg.Health.Timeout = 100 * time.Millisecond
	cfg.Health.FailuresBeforeDown = 3
	cfg.Health.SuccessesBeforeUp = 2
	cfg.Failover.Mode = string(mode)
	cfg.Routing.MaxReplicaLag = time.Second
	cfg.Shards = []config.Shard{{Name: "s0", Primary: P, Replicas: []string{R1, R2}}}
	return cfg
}

func newScript(t *testing.T, mode Mode, edit ...func(*config.Config)) *script {
	t.Helper()
	cfg := testConfig(mode)
	for _, e := range edit {
		e(cfg)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &script{t: t, c: newCore(cfg, testLogger(t), now), now: now}
	s.decide()
	return s
}

func (s *script) tick() { s.now = s.now.Add(100 * time.Millisecond) }

func (s *script) primary(addr string, tl uint32, lsn LSN) {
	s.c.observe(observation{Addr: addr, At: s.now, Timeline: tl, CurrentLSN: lsn})
}

func (s *script) replica(addr string, tl uint32, receive, replay LSN) {
	s.c.observe(observation{Addr: addr, At: s.now, InRecovery: true, Timeline: tl, ReceiveLSN: receive, ReplayLSN: replay})
}

func (s *script) fail(addr string, err error) {
	s.c.observe(observation{Addr: addr, At: s.now, Err: err})
}

func (s *script) decide() []action {
	acts := s.c.decide(s.now)
	s.acts = append(s.acts, acts...)
	return acts
}

// healthy is one round of checks of a healthy shard on timeline 1 with every
// replica caught up.
func (s *script) healthy(lsn LSN) {
	s.tick()
	s.primary(P, 1, lsn)
	s.replica(R1, 1, lsn, lsn)
	s.replica(R2, 1, lsn, lsn)
	s.decide()
}

func (s *script) topo() *Topology { return s.c.snapshot(s.now, 1) }

func (s *script) wantWriter(want string) {
	s.t.Helper()
	w := s.topo().Writer("s0")
	got := ""
	if w != nil {
		got = w.Addr
	}
	if got != want {
		s.t.Fatalf("at %v: writer %q, want %q (reason: %s)", s.now.Format("05.000"), got, want, s.topo().Shard("s0").WriterReason)
	}
}

func (s *script) wantReaders(want ...string) {
	s.t.Helper()
	var got []string
	for _, n := range s.topo().Readers("s0") {
		got = append(got, n.Addr)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		s.t.Fatalf("at %v: readers %v, want %v", s.now.Format("05.000"), got, want)
	}
}

func (s *script) wantState(addr string, want State) {
	s.t.Helper()
	if got := s.topo().Node(addr).State; got != want {
		s.t.Fatalf("at %v: %s is %v, want %v", s.now.Format("05.000"), addr, got, want)
	}
}

func (s *script) promotions() []action {
	var out []action
	for _, a := range s.acts {
		if a.kind == actPromote {
			out = append(out, a)
		}
	}
	return out
}

func TestHealthyShard(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModePromote)
	s.wantWriter("")
	if r := s.topo().Shard("s0").WriterReason; !strings.Contains(r, "not checked yet") {
		t.Fatalf("reason before any check: %q", r)
	}
	s.healthy(100)
	s.wantWriter(P)
	s.wantReaders(R1, R2)
	for _, a := range []string{P, R1, R2} {
		s.wantState(a, StateUp)
	}
	top := s.topo()
	if n := top.Node(P); n.Role != RolePrimary || n.Timeline != 1 || n.CurrentLSN != 100 {
		t.Fatalf("primary node: %+v", n)
	}
	if lsn, ok := top.ReplayLSN(R1); !ok || lsn != 100 {
		t.Fatalf("ReplayLSN(R1) = %v, %v", lsn, ok)
	}
	if _, ok := top.ReplayLSN(P); ok {
		t.Fatal("ReplayLSN of a primary")
	}
}

// A primary failing fewer checks in a row than failures_before_down is a
// blip: no failover, and writes stay (or come back) on it.
func TestFlappingPrimaryNoFailover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		err       error
		writesOff bool // the blip pauses writes (node marked down at once)
	}{
		{"timeouts", errTimeout, false},
		{"refused", errRefused, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newScript(t, ModePromote)
			s.healthy(100)
			for cycle := 0; cycle < 5; cycle++ {
				for i := 0; i < 2; i++ { // two failures, threshold three
					s.tick()
					s.fail(P, tc.err)
					s.replica(R1, 1, 100, 100)
					s.replica(R2, 1, 100, 100)
					s.decide()
					if tc.writesOff {
						s.wantWriter("")
					} else {
						s.wantWriter(P)
					}
				}
				s.healthy(100)
				s.healthy(100)
				s.wantWriter(P)
			}
			if p := s.promotions(); len(p) != 0 {
				t.Fatalf("promoted on a blip: %+v", p)
			}
			if s.topo().Shard("s0").Failovers != 0 {
				t.Fatal("failover counted")
			}
		})
	}
}

func TestPromotePicksHighestLSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                         string
		r1Recv, r1Rep, r2Recv, r2Rep LSN
		want                         string
	}{
		{"r2 received more", 300, 250, 400, 200, R2},
		{"r1 replayed more", 500, 500, 400, 400, R1},
		{"receive ties, replay decides", 400, 300, 400, 350, R2},
		{"full tie: configuration order", 400, 400, 400, 400, R1},
		{"no receiver: replay counts", 0, 450, 400, 400, R1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newScript(t, ModePromote)
			s.healthy(100)
			for i := 1; i <= 3; i++ {
				s.tick()
				s.fail(P, errTimeout)
				s.replica(R1, 1, tc.r1Recv, tc.r1Rep)
				s.replica(R2, 1, tc.r2Recv, tc.r2Rep)
				acts := s.decide()
				if i < 3 && len(acts) != 0 {
					t.Fatalf("action after %d failures: %+v", i, acts)
				}
			}
			p := s.promotions()
			if len(p) != 1 {
				t.Fatalf("promotions: %+v", p)
			}
			if p[0].node != tc.want || p[0].primary != P || p[0].timeline != 1 {
				t.Fatalf("promote %+v, want node %s", p[0], tc.want)
			}
			// In flight: no second promotion.
			s.tick()
			s.fail(P, errTimeout)
			if acts := s.decide(); len(acts) != 0 {
				t.Fatalf("second action while promoting: %+v", acts)
			}
			if !s.topo().Shard("s0").Promoting {
				t.Fatal("Promoting not set")
			}
		})
	}
}

func TestPromoteWaitsForGrace(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModePromote, func(c *config.Config) { c.Failover.Grace = 450 * time.Millisecond })
	s.healthy(100)
	var at []time.Time
	for i := 0; i < 10 && len(s.promotions()) == 0; i++ {
		s.tick()
		s.fail(P, errTimeout)
		s.replica(R1, 1, 100, 100)
		s.replica(R2, 1, 100, 100)
		s.decide()
		at = append(at, s.now)
	}
	if len(s.promotions()) != 1 {
		t.Fatal("never promoted")
	}
	// Third failure at at[2]; grace 450ms: the first decide at or after
	// at[2]+450ms promotes.
	if got, min := s.now, at[2].Add(450*time.Millisecond); got.Before(min) || got.Sub(min) >= 100*time.Millisecond {
		t.Fatalf("promoted at %v, want first tick after %v", got, min)
	}
}

func TestPromotionOutcome(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModePromote)
	s.healthy(100)
	for i := 0; i < 3; i++ {
		s.tick()
		s.fail(P, errRefused)
		s.replica(R1, 1, 100, 100)
		s.replica(R2, 1, 120, 120)
		s.decide()
	}
	p := s.promotions()
	if len(p) != 1 || p[0].node != R2 {
		t.Fatalf("promotions %+v", p)
	}
	s.wantWriter("")
	if r := s.topo().Shard("s0").WriterReason; !strings.Contains(r, "promoting") {
		t.Fatalf("reason while promoting: %q", r)
	}

	s.tick()
	s.c.promoted(promoteResult{shard: "s0", node: R2, timeline: 2, lsn: 130, at: s.now})
	acts := s.decide()
	s.wantWriter(R2)
	s.wantState(P, StateFenced)
	sh := s.topo().Shard("s0")
	if sh.Failovers != 1 || sh.Promotions != 1 || sh.Timeline != 2 || sh.Promoting {
		t.Fatalf("shard after promotion: %+v", sh)
	}
	if len(acts) != 1 || acts[0].kind != actRepoint || acts[0].node != R1 || acts[0].primary != R2 {
		t.Fatalf("actions after promotion: %+v", acts)
	}
	// In flight: not again.
	s.tick()
	if acts := s.decide(); len(acts) != 0 {
		t.Fatalf("re-point issued twice: %+v", acts)
	}
	// A failed re-point is retried after a back-off.
	s.c.repointed(repointResult{shard: "s0", node: R1, at: s.now, err: errors.New("boom")})
	if acts := s.decide(); len(acts) != 0 {
		t.Fatalf("re-point retried without back-off: %+v", acts)
	}
	s.tick()
	s.tick()
	if acts := s.decide(); len(acts) != 1 || acts[0].node != R1 {
		t.Fatalf("re-point not retried: %+v", acts)
	}
	s.c.repointed(repointResult{shard: "s0", node: R1, at: s.now})
	s.tick()
	s.tick()
	if acts := s.decide(); len(acts) != 0 {
		t.Fatalf("re-point after success: %+v", acts)
	}
	if len(s.promotions()) != 1 {
		t.Fatalf("promoted again: %+v", s.promotions())
	}
	// The time without a writer was counted.
	if d := sh.TimeWithoutWriter(s.now); d <= 0 {
		t.Fatalf("TimeWithoutWriter = %v", d)
	}
}

func TestPromotionFailureRetries(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModePromote)
	s.healthy(100)
	round := func() []action {
		s.tick()
		s.fail(P, errTimeout)
		s.replica(R1, 1, 100, 100)
		s.replica(R2, 1, 100, 100)
		return s.decide()
	}
	for len(s.promotions()) == 0 {
		round()
	}
	s.c.promoted(promoteResult{shard: "s0", node: R1, at: s.now, err: errors.New("permission denied for function pg_promote")})
	if acts := s.decide(); len(acts) != 0 {
		t.Fatalf("retried at once: %+v", acts)
	}
	for i := 0; i < 3 && len(s.promotions()) == 1; i++ {
		round()
	}
	if len(s.promotions()) != 2 {
		t.Fatalf("not retried after the back-off: %d promotions", len(s.promotions()))
	}
}

func TestTwoPrimaries(t *testing.T) {
	t.Parallel()
	t.Run("higher timeline wins", func(t *testing.T) {
		t.Parallel()
		s := newScript(t, ModeFollow)
		s.healthy(100)
		s.tick()
		s.primary(P, 1, 150)
		s.primary(R1, 2, 120)
		s.replica(R2, 1, 100, 100)
		s.decide()
		s.wantWriter(R1)
		s.wantState(P, StateFenced)
		if f := s.topo().Shard("s0").Failovers; f != 1 {
			t.Fatalf("failovers %d", f)
		}
		// The old one stays out even though it is up and claims primary.
		for i := 0; i < 5; i++ {
			s.tick()
			s.primary(P, 1, 160)
			s.primary(R1, 2, 130)
			s.decide()
			s.wantWriter(R1)
			s.wantState(P, StateFenced)
		}
	})
	t.Run("same timeline is undecidable", func(t *testing.T) {
		t.Parallel()
		s := newScript(t, ModePromote)
		s.healthy(100)
		s.tick()
		s.primary(P, 1, 150)
		s.primary(R1, 1, 120)
		s.replica(R2, 1, 100, 100)
		s.decide()
		s.wantWriter("")
		if r := s.topo().Shard("s0").WriterReason; !strings.Contains(r, "undecidable") {
			t.Fatalf("reason %q", r)
		}
		// And nobody gets promoted: a primary exists already.
		for i := 0; i < 10; i++ {
			s.tick()
			s.fail(P, errTimeout)
			s.primary(R1, 1, 120)
			s.replica(R2, 1, 100, 100)
			s.decide()
		}
		if p := s.promotions(); len(p) != 0 {
			t.Fatalf("promoted beside an existing primary: %+v", p)
		}
		// R1 on the same timeline as the leader had is not followed.
		s.wantWriter("")
	})
}

func TestFollowOnlyHigherTimeline(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModeFollow)
	s.healthy(100)
	for i := 0; i < 3; i++ {
		s.tick()
		s.fail(P, errTimeout)
		s.replica(R1, 1, 100, 100)
		s.replica(R2, 1, 100, 100)
		s.decide()
	}
	s.wantWriter("")
	if len(s.acts) != 0 {
		t.Fatalf("follow mode acted: %+v", s.acts)
	}
	// A primary on the same timeline: not followed.
	s.tick()
	s.fail(P, errTimeout)
	s.primary(R1, 1, 100)
	s.decide()
	s.wantWriter("")
	// Someone promoted it properly: a new timeline. Followed at once.
	s.tick()
	s.fail(P, errTimeout)
	s.primary(R1, 2, 110)
	s.decide()
	s.wantWriter(R1)
	s.wantState(P, StateFenced)
	// The remaining replica, not yet following, falls behind the new
	// primary's writes and loses its reads; when it catches up it is back.
	for i := 0; i < 15; i++ {
		s.tick()
		s.primary(R1, 2, LSN(200+i))
		s.replica(R2, 1, 100, 100)
		s.decide()
	}
	s.wantReaders()
	s.tick()
	s.primary(R1, 2, 300)
	s.replica(R2, 2, 300, 300)
	s.decide()
	s.wantReaders(R2)
}

func TestFencedOldPrimaryStaysFenced(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModePromote)
	s.healthy(100)
	for len(s.promotions()) == 0 {
		s.tick()
		s.fail(P, errRefused)
		s.replica(R1, 1, 100, 100)
		s.replica(R2, 1, 100, 100)
		s.decide()
	}
	s.c.promoted(promoteResult{shard: "s0", node: R1, timeline: 2, lsn: 110, at: s.now})
	s.decide()
	s.wantWriter(R1)
	// The old primary is restarted in place: up, primary, timeline 1.
	for i := 0; i < 5; i++ {
		s.tick()
		s.primary(P, 1, 100)
		s.primary(R1, 2, LSN(120+i))
		s.replica(R2, 2, LSN(120+i), LSN(120+i))
		s.decide()
		s.wantWriter(R1)
		s.wantState(P, StateFenced)
		if n := s.topo().Node(P); n.Readable {
			t.Fatalf("fenced node readable: %+v", n)
		}
	}
	if n := s.topo().Node(P); !n.Reachable {
		t.Fatalf("fenced node up for 5 checks, not reachable: %+v", n)
	}
	// The new primary dies: the fenced one must still get nothing, and is
	// not a promotion candidate (it is no replica), R2 is.
	for i := 0; i < 3; i++ {
		s.tick()
		s.primary(P, 1, 100)
		s.fail(R1, errRefused)
		s.replica(R2, 2, 130, 130)
		s.decide()
		s.wantState(P, StateFenced)
	}
	s.wantWriter("")
	p := s.promotions()
	if len(p) != 2 || p[1].node != R2 || p[1].timeline != 2 {
		t.Fatalf("promotions %+v", p)
	}
	s.c.promoted(promoteResult{shard: "s0", node: R2, timeline: 3, lsn: 140, at: s.now})
	s.decide()
	s.wantWriter(R2)
	s.wantState(P, StateFenced)
	s.wantState(R1, StateFenced)

	// Restarted as a replica but still on timeline 1 (not rewound): fenced.
	s.tick()
	s.replica(P, 1, 100, 100)
	s.primary(R2, 3, 150)
	s.decide()
	s.wantState(P, StateFenced)
	// Rewound and streaming on timeline 3: re-attached.
	s.tick()
	s.replica(P, 3, 150, 150)
	s.primary(R2, 3, 150)
	s.decide()
	s.wantState(P, StateUp)
	s.wantReaders(P)
	// The operator's Unfence on R1 works, but a node that is still a
	// primary on an old timeline is fenced again.
	s.tick()
	s.primary(R1, 2, 130)
	s.decide()
	if err := s.c.adminUnfence(R1, s.now); err != nil {
		t.Fatal(err)
	}
	s.decide()
	s.wantState(R1, StateFenced)
	if err := s.c.adminUnfence(P, s.now); err == nil {
		t.Fatal("unfencing a node that is not fenced succeeded")
	}
	if err := s.c.adminUnfence("127.0.0.1:1", s.now); err == nil {
		t.Fatal("unfencing an unknown node succeeded")
	}
}

func TestAllReplicasLagging(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModePromote)
	s.healthy(100)
	s.wantReaders(R1, R2)
	// The primary writes on; both replicas stop replaying at 100.
	lsn := LSN(100)
	for i := 0; i < 9; i++ {
		lsn += 50
		s.tick()
		s.primary(P, 1, lsn)
		s.replica(R1, 1, lsn, 100)
		s.replica(R2, 1, lsn, 100)
		s.decide()
		s.wantReaders(R1, R2) // within max_replica_lag (1s)
	}
	for i := 0; i < 3; i++ {
		lsn += 50
		s.tick()
		s.primary(P, 1, lsn)
		s.replica(R1, 1, lsn, 100)
		s.replica(R2, 1, lsn, 100)
		s.decide()
	}
	s.wantReaders()
	s.wantWriter(P)
	n := s.topo().Node(R1)
	if n.Lag <= time.Second || n.LagBytes != uint64(lsn-100) || n.Readable || n.State != StateUp {
		t.Fatalf("lagging replica %+v", n)
	}
	if len(s.acts) != 0 {
		t.Fatalf("lag caused actions: %+v", s.acts)
	}
	// R2 catches up: back in.
	s.tick()
	s.primary(P, 1, lsn)
	s.replica(R1, 1, lsn, 100)
	s.replica(R2, 1, lsn, lsn)
	s.decide()
	s.wantReaders(R2)
}

func TestLagBytesLimit(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModeFollow, func(c *config.Config) { c.Routing.MaxReplicaLagBytes = 1000 })
	s.healthy(100)
	s.tick()
	s.primary(P, 1, 5000)
	s.replica(R1, 1, 5000, 4500)
	s.replica(R2, 1, 5000, 3000)
	s.decide()
	s.wantReaders(R1)
}

// A quiet primary (no writes, so no new WAL) must not make replicas look
// behind, however long it stays quiet.
func TestQuietPrimaryNoLag(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModeFollow)
	for i := 0; i < 100; i++ {
		s.healthy(100)
	}
	s.wantReaders(R1, R2)
	if n := s.topo().Node(R1); n.Lag != 0 || n.LagBytes != 0 {
		t.Fatalf("quiet replica lag %v / %d bytes", n.Lag, n.LagBytes)
	}
}

// With the primary down there is nothing to compare with: a replica that
// replayed what it received keeps taking reads, one with WAL pending replay
// is as old as its last replayed commit.
func TestLagWithoutPrimary(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModeFollow)
	s.healthy(100)
	for i := 0; i < 30; i++ {
		s.tick()
		s.fail(P, errRefused)
		s.replica(R1, 1, 100, 100)
		s.c.observe(observation{Addr: R2, At: s.now, InRecovery: true, Timeline: 1, ReceiveLSN: 200, ReplayLSN: 100, ReplayAge: 2 * time.Second})
		s.decide()
	}
	s.wantReaders(R1)
	if n := s.topo().Node(R2); n.Lag != 2*time.Second || n.LagBytes != 100 {
		t.Fatalf("R2 %+v", n)
	}
}

func TestReplicaDownAndBack(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModeFollow)
	s.healthy(100)
	for i := 1; i <= 3; i++ {
		s.tick()
		s.primary(P, 1, 100)
		s.replica(R1, 1, 100, 100)
		s.fail(R2, errTimeout)
		s.decide()
		if i < 3 {
			s.wantState(R2, StateUp)
			s.wantReaders(R1, R2)
		}
	}
	s.wantState(R2, StateDown)
	s.wantReaders(R1)
	s.tick()
	s.primary(P, 1, 100)
	s.replica(R2, 1, 100, 100)
	s.decide()
	s.wantState(R2, StateDown) // one success of two
	s.tick()
	s.primary(P, 1, 100)
	s.replica(R2, 1, 100, 100)
	s.decide()
	s.wantState(R2, StateUp)
	s.wantReaders(R1, R2)
	if n := s.topo().Node(R2); n.StateChanges != 2 || !strings.Contains(n.LastError, "timeout") {
		t.Fatalf("R2 %+v", n)
	}
}

func TestReportFailure(t *testing.T) {
	t.Parallel()
	t.Run("refused marks down at once", func(t *testing.T) {
		t.Parallel()
		s := newScript(t, ModePromote)
		s.healthy(100)
		s.tick()
		s.c.report(R1, errRefused, s.now)
		s.decide()
		s.wantState(R1, StateDown)
		s.wantReaders(R2)
	})
	t.Run("reports between checks count once", func(t *testing.T) {
		t.Parallel()
		s := newScript(t, ModePromote)
		s.healthy(100)
		s.tick()
		for i := 0; i < 10; i++ {
			s.c.report(R1, errTimeout, s.now)
		}
		s.decide()
		s.wantState(R1, StateUp)
		// Two failed checks: with the report, three failures in a row.
		for i := 0; i < 2; i++ {
			s.tick()
			s.fail(R1, errTimeout)
			s.decide()
		}
		s.wantState(R1, StateDown)
	})
	t.Run("a report older than the last good check is ignored", func(t *testing.T) {
		t.Parallel()
		s := newScript(t, ModePromote)
		s.healthy(100)
		s.c.report(R1, errRefused, s.now.Add(-time.Millisecond))
		s.decide()
		s.wantState(R1, StateUp)
	})
	t.Run("errors about the client are ignored", func(t *testing.T) {
		t.Parallel()
		s := newScript(t, ModePromote)
		s.healthy(100)
		s.tick()
		s.c.report(R1, fmt.Errorf("dial: %w", context.Canceled), s.now)
		s.decide()
		s.wantState(R1, StateUp)
	})
	t.Run("reports never promote", func(t *testing.T) {
		t.Parallel()
		s := newScript(t, ModePromote)
		s.healthy(100)
		for i := 0; i < 20; i++ {
			s.tick()
			s.c.report(P, errRefused, s.now)
			s.decide()
		}
		s.wantWriter("")
		if p := s.promotions(); len(p) != 0 {
			t.Fatalf("reports promoted: %+v", p)
		}
	})
}

func TestModeOff(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModeOff)
	s.healthy(100)
	s.wantWriter(P)
	for i := 0; i < 10; i++ {
		s.tick()
		s.fail(P, errRefused)
		s.primary(R1, 2, 100)
		s.replica(R2, 1, 100, 100)
		s.decide()
	}
	s.wantWriter("")
	if len(s.acts) != 0 {
		t.Fatalf("mode off acted: %+v", s.acts)
	}
	if r := s.topo().Shard("s0").WriterReason; !strings.Contains(r, "mode off") {
		t.Fatalf("reason %q", r)
	}
	if f := s.topo().Shard("s0").Failovers; f != 0 {
		t.Fatalf("failovers %d", f)
	}
	// The configured primary comes back: writes go there again. Mode off
	// fences nothing.
	for i := 0; i < 2; i++ {
		s.tick()
		s.primary(P, 2, 100)
		s.replica(R1, 2, 100, 100)
		s.decide()
	}
	s.wantWriter(P)
}

// At start-up a node other than the configured primary claiming primary is
// not followed before the configured primary's first check.
func TestStartupWaitsForConfiguredPrimary(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModeFollow)
	s.tick()
	s.primary(R1, 1, 100)
	s.decide()
	s.wantWriter("")
	s.primary(P, 1, 100)
	s.decide()
	s.wantWriter("")
	if r := s.topo().Shard("s0").WriterReason; !strings.Contains(r, "undecidable") {
		t.Fatalf("reason %q", r)
	}
	s.wantState(P, StateUp)
}

// A restarted shardwire that finds the configured primary on timeline 1 and
// a replica already on timeline 2 (a failover it did not see) fences the
// configured primary instead of writing to it.
func TestStartupBehindTimelineFenced(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModeFollow)
	s.tick()
	s.primary(P, 1, 100)
	s.replica(R2, 2, 200, 200)
	s.fail(R1, errRefused)
	s.decide()
	s.wantWriter("")
	s.wantState(P, StateFenced)
}

// The checks may see the promoted replica as primary before the promotion
// reports back, and the promotion may then report an error (its wait for
// writes timed out): writes stay there and the other replica is still
// re-pointed.
func TestPromotionErrorButPrimary(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModePromote)
	s.healthy(100)
	for len(s.promotions()) == 0 {
		s.tick()
		s.fail(P, errRefused)
		s.replica(R1, 1, 100, 100)
		s.replica(R2, 1, 100, 100)
		s.decide()
	}
	s.tick()
	s.fail(P, errRefused)
	s.primary(R1, 2, 110)
	s.replica(R2, 1, 100, 100)
	if acts := s.decide(); len(acts) != 0 {
		t.Fatalf("actions before the promotion reported: %+v", acts)
	}
	s.wantWriter(R1)
	s.c.promoted(promoteResult{shard: "s0", node: R1, at: s.now, err: errors.New("timed out waiting for writes")})
	acts := s.decide()
	if len(acts) != 1 || acts[0].kind != actRepoint || acts[0].node != R2 || acts[0].primary != R1 {
		t.Fatalf("actions %+v", acts)
	}
	sh := s.topo().Shard("s0")
	if sh.Promotions != 1 || sh.Failovers != 1 || sh.Promoting {
		t.Fatalf("shard %+v", sh)
	}
	s.wantWriter(R1)
	s.wantState(P, StateFenced)
}

func TestWriterLSNAfter(t *testing.T) {
	t.Parallel()
	s := newScript(t, ModeFollow)
	s.tick()
	sent := s.now.Add(-time.Millisecond)
	s.c.observe(observation{Addr: P, At: s.now, Sent: sent, Timeline: 1, CurrentLSN: 90, InsertLSN: 100})
	s.replica(R1, 1, 100, 100)
	s.decide()
	top := s.topo()
	if lsn, ok := top.WriterLSNAfter("s0", sent); !ok || lsn != 100 {
		t.Fatalf("WriterLSNAfter(sent) = %v, %v", lsn, ok)
	}
	if _, ok := top.WriterLSNAfter("s0", sent.Add(time.Nanosecond)); ok {
		t.Fatal("a check sent before the commit answered")
	}
	if _, ok := top.WriterLSNAfter("nope", sent); ok {
		t.Fatal("unknown shard answered")
	}
	if n := top.Node(P); n.InsertLSN != 100 || !n.InsertLSNAt.Equal(sent) {
		t.Fatalf("primary %+v", n)
	}
	// No writer, no answer.
	for i := 0; i < 3; i++ {
		s.tick()
		s.fail(P, errRefused)
		s.decide()
	}
	if _, ok := s.topo().WriterLSNAfter("s0", sent); ok {
		t.Fatal("answered without a writer")
	}
}
