package health

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/pgcluster"
)

// These tests start real PostgreSQL servers (pgcluster). Deadlines are
// generous and every wait polls the topology: a loaded two-core machine
// must not make them fail. Measured times are logged.

const itInterval = 100 * time.Millisecond

func requirePostgres(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	if err := pgcluster.PostgresAvailable(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run the PostgreSQL tests: %v", err)
		}
		t.Skipf("no PostgreSQL: %v", err)
	}
}

func itCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func startCluster(t *testing.T, name string, replicas int) *pgcluster.Shard {
	t.Helper()
	requirePostgres(t)
	s, err := pgcluster.StartShard(itCtx(t, 2*time.Minute), name, replicas, pgcluster.Options{
		Users: []pgcluster.User{
			{Name: "app", Password: "app-pw"},
			{Name: "ops", Password: "ops pw'1", Superuser: true},
		},
		Database: "app",
		Logf:     t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func startChecker(t *testing.T, s *pgcluster.Shard, mode Mode, edit ...func(*config.Config)) *Checker {
	t.Helper()
	return startCheckerAs(t, s, mode, "", edit...)
}

func startCheckerAs(t *testing.T, s *pgcluster.Shard, mode Mode, user string, edit ...func(*config.Config)) *Checker {
	t.Helper()
	cfg := config.Defaults()
	cfg.Users = []config.User{{Name: "app", Password: "app-pw"}, {Name: "ops", Password: "ops pw'1", Admin: true}}
	cfg.Database = "app"
	cfg.Health = config.Health{Interval: itInterval, Timeout: 2 * time.Second, FailuresBeforeDown: 3, SuccessesBeforeUp: 2}
	cfg.Failover.Mode = string(mode)
	cfg.Routing.MaxReplicaLag = time.Second
	sh := config.Shard{Name: s.Name, Primary: s.Primary.Addr()}
	for _, r := range s.Replicas {
		sh.Replicas = append(sh.Replicas, r.Addr())
	}
	cfg.Shards = []config.Shard{sh}
	for _, e := range edit {
		e(cfg)
	}
	c, err := New(cfg, Options{Logger: testLogger(t), User: user})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(itCtx(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitFor polls the topology until cond holds, failing after d.
func waitFor(t *testing.T, c *Checker, d time.Duration, what string, cond func(*Topology) bool) *Topology {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		top := c.Topology()
		if cond(top) {
			return top
		}
		select {
		case <-top.Changed():
		case <-deadline.C:
			t.Fatalf("after %v still not %s; topology:\n%s", d, what, dump(top))
		}
	}
}

func dump(t *Topology) string {
	var b strings.Builder
	for _, s := range t.Shards {
		w := "none (" + s.WriterReason + ")"
		if s.Writer != nil {
			w = s.Writer.Addr
		}
		fmt.Fprintf(&b, "shard %s timeline %d writer %s\n", s.Name, s.Timeline, w)
		for _, n := range s.Nodes {
			fmt.Fprintf(&b, "  %s %s/%s tl=%d cur=%s recv=%s replay=%s lag=%v/%dB readable=%v err=%q fence=%q\n",
				n.Addr, n.Role, n.State, n.Timeline, n.CurrentLSN, n.ReceiveLSN, n.ReplayLSN, n.Lag, n.LagBytes, n.Readable, n.LastError, n.FenceReason)
		}
	}
	return b.String()
}

func readers(t *Topology, shard string) map[string]bool {
	m := map[string]bool{}
	for _, n := range t.Readers(shard) {
		m[n.Addr] = true
	}
	return m
}

func writerIs(shard, addr string) func(*Topology) bool {
	return func(t *Topology) bool { w := t.Writer(shard); return w != nil && w.Addr == addr }
}

func TestIntegrationHealthyShard(t *testing.T) {
	t.Parallel()
	s := startCluster(t, "h0", 2)
	c := startChecker(t, s, ModeFollow)
	top := waitFor(t, c, 30*time.Second, "writer and two readers", func(t *Topology) bool {
		return t.Writer("h0") != nil && len(t.Readers("h0")) == 2
	})
	p := top.Node(s.Primary.Addr())
	if p.Role != RolePrimary || p.Timeline != 1 || p.CurrentLSN == 0 || top.Writer("h0") != p {
		t.Fatalf("primary:\n%s", dump(top))
	}
	for _, r := range s.Replicas {
		n := top.Node(r.Addr())
		if n.Role != RoleReplica || n.ReplayLSN == 0 || n.Timeline != 1 {
			t.Fatalf("replica %s:\n%s", r.Name, dump(top))
		}
	}
	// The checker uses its own connections, one per node, named.
	v, err := s.Primary.QueryValue(itCtx(t, 10*time.Second),
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shardwire-health' AND usename = 'ops'")
	if err != nil || v != "1" {
		t.Fatalf("checker connections on the primary: %q, %v", v, err)
	}
	// A quiet shard stays readable: the replicas must not look lagged.
	time.Sleep(1500 * time.Millisecond)
	top = c.Topology()
	if len(top.Readers("h0")) != 2 {
		t.Fatalf("quiet shard lost readers:\n%s", dump(top))
	}
	m := c.Metrics()
	if len(m.Nodes) != 3 || m.Nodes[0].Checks < 5 || m.Shards[0].Failovers != 0 || !m.Shards[0].HasWriter {
		t.Fatalf("metrics %+v", m)
	}

	// An ordinary user can run the check: nothing in it needs privileges
	// (only the replicas' received timeline is hidden from it).
	plain := startCheckerAs(t, s, ModeFollow, "app")
	top = waitFor(t, plain, 30*time.Second, "writer and two readers for a non-superuser checker", func(t *Topology) bool {
		return t.Writer("h0") != nil && len(t.Readers("h0")) == 2
	})
	for _, n := range top.Shard("h0").Nodes {
		if n.Timeline != 1 || n.LastError != "" {
			t.Fatalf("non-superuser checker:\n%s", dump(top))
		}
	}
}

func TestIntegrationReplicaStopStart(t *testing.T) {
	t.Parallel()
	s := startCluster(t, "h1", 2)
	c := startChecker(t, s, ModeFollow)
	r := s.Replicas[0]
	waitFor(t, c, 30*time.Second, "both replicas readable", func(t *Topology) bool { return len(t.Readers("h1")) == 2 })

	ctx := itCtx(t, time.Minute)
	stopped := time.Now()
	if err := r.Stop(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, 30*time.Second, "stopped replica down", func(t *Topology) bool {
		n := t.Node(r.Addr())
		return n.State == StateDown && !readers(t, "h1")[r.Addr()] && readers(t, "h1")[s.Replicas[1].Addr()]
	})
	took := time.Since(stopped)
	t.Logf("stopped replica marked down %v after the stop began (failures_before_down × interval = %v)", took, 3*itInterval)
	if bound := 3*itInterval + 5*time.Second; took > bound {
		t.Fatalf("down after %v, more than %v", took, bound)
	}

	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	waitFor(t, c, 30*time.Second, "restarted replica readable", func(t *Topology) bool {
		return t.Node(r.Addr()).State == StateUp && readers(t, "h1")[r.Addr()]
	})
	t.Logf("restarted replica readable after %v", time.Since(started))
	if top := c.Topology(); top.Writer("h1") == nil || top.Writer("h1").Addr != s.Primary.Addr() || top.Shard("h1").Failovers != 0 {
		t.Fatalf("a replica's restart moved writes:\n%s", dump(top))
	}
}

// writeLoad inserts a row every few milliseconds on n until stopped.
func writeLoad(t *testing.T, n *pgcluster.Node) (stop func() int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := n.Connect(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS load (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	var rows atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer conn.Close(context.Background())
		for ctx.Err() == nil {
			if _, err := conn.Exec(ctx, "INSERT INTO load DEFAULT VALUES"); err == nil {
				rows.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() int64 {
		cancel()
		wg.Wait()
		return rows.Load()
	}
}

func TestIntegrationReplayPaused(t *testing.T) {
	t.Parallel()
	s := startCluster(t, "h2", 2)
	c := startChecker(t, s, ModeFollow)
	paused, other := s.Replicas[0], s.Replicas[1]
	waitFor(t, c, 30*time.Second, "both replicas readable", func(t *Topology) bool { return len(t.Readers("h2")) == 2 })
	ctx := itCtx(t, 2*time.Minute)
	stop := writeLoad(t, s.Primary)
	defer stop()

	at := time.Now()
	if err := paused.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	top := waitFor(t, c, 30*time.Second, "paused replica excluded", func(t *Topology) bool { return !readers(t, "h2")[paused.Addr()] })
	n := top.Node(paused.Addr())
	t.Logf("paused replica excluded after %v: lag %v, %d bytes (max_replica_lag 1s)", time.Since(at), n.Lag, n.LagBytes)
	if n.Lag <= time.Second || n.State != StateUp || n.LagBytes == 0 {
		t.Fatalf("excluded for the wrong reason:\n%s", dump(top))
	}
	if time.Since(at) < time.Second {
		t.Fatalf("excluded after %v, before max_replica_lag", time.Since(at))
	}
	// The other replica keeps up with the same writes (polling: a loaded
	// machine may delay its replay for a moment).
	waitFor(t, c, 30*time.Second, "the other replica readable", func(t *Topology) bool { return readers(t, "h2")[other.Addr()] })

	if err := paused.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	at = time.Now()
	waitFor(t, c, 30*time.Second, "resumed replica included", func(t *Topology) bool { return readers(t, "h2")[paused.Addr()] })
	t.Logf("resumed replica included after %v; %d rows written meanwhile", time.Since(at), stop())
}

func TestIntegrationFollow(t *testing.T) {
	t.Parallel()
	s := startCluster(t, "h3", 2)
	c := startChecker(t, s, ModeFollow)
	old, next := s.Primary, s.Replicas[1]
	waitFor(t, c, 30*time.Second, "writer", writerIs("h3", old.Addr()))
	ctx := itCtx(t, 2*time.Minute)

	if err := old.Stop(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, 30*time.Second, "no writer", func(t *Topology) bool { return t.Writer("h3") == nil })
	promoted := time.Now()
	if err := next.Promote(ctx); err != nil { // pg_promote, as pg_ctl promote
		t.Fatal(err)
	}
	top := waitFor(t, c, 30*time.Second, "writes on the promoted replica", writerIs("h3", next.Addr()))
	took := time.Since(promoted)
	t.Logf("writes followed the promotion %v after it began (bound interval × failures_before_down + interval = %v)", took, 4*itInterval)
	if w := top.Writer("h3"); w.Timeline != 2 || top.Shard("h3").Failovers != 1 {
		t.Fatalf("after follow:\n%s", dump(top))
	}
	if top.Node(old.Addr()).State != StateFenced {
		t.Fatalf("old primary not fenced:\n%s", dump(top))
	}
	if bound := 4*itInterval + 5*time.Second; took > bound {
		t.Fatalf("followed after %v, more than %v", took, bound)
	}
	// Restarted in place, the old primary is a primary on timeline 1: it
	// stays fenced and gets nothing.
	if err := old.Start(ctx); err != nil {
		t.Fatal(err)
	}
	top = waitFor(t, c, 30*time.Second, "old primary seen again", func(t *Topology) bool {
		n := t.Node(old.Addr())
		return n.Reachable && n.Role == RolePrimary
	})
	if n := top.Node(old.Addr()); n.State != StateFenced || n.Readable || top.Writer("h3").Addr != next.Addr() {
		t.Fatalf("old primary back:\n%s", dump(top))
	}
}

func TestIntegrationPromote(t *testing.T) {
	t.Parallel()
	s := startCluster(t, "h4", 2)
	ctx := itCtx(t, 3*time.Minute)
	old, behind, ahead := s.Primary, s.Replicas[0], s.Replicas[1]
	if err := old.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'before')"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	// Cut the first replica off (its WAL receiver points at a dead port),
	// so the second one, later in the configuration, is the most advanced
	// and must be the one promoted. Re-pointing must keep the replica's own
	// credentials: only the port is wrong.
	conninfo, err := behind.QueryValue(ctx, "SELECT current_setting('primary_conninfo')")
	if err != nil {
		t.Fatal(err)
	}
	dead := strings.Replace(conninfo, fmt.Sprintf("port=%d", old.Port), "port=1", 1)
	if dead == conninfo {
		t.Fatalf("no port in %q", conninfo)
	}
	if err := behind.Exec(ctx, "ALTER SYSTEM SET primary_conninfo = "+quoteLiteral(dead)); err != nil {
		t.Fatal(err)
	}
	if err := behind.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	if err := old.Exec(ctx, "INSERT INTO t SELECT g, 'only on the second replica' FROM generate_series(2, 100) g"); err != nil {
		t.Fatal(err)
	}
	if err := ahead.CatchUp(ctx, old); err != nil {
		t.Fatal(err)
	}

	c := startChecker(t, s, ModePromote)
	waitFor(t, c, 30*time.Second, "writer", writerIs("h4", old.Addr()))
	waitFor(t, c, 30*time.Second, "cut-off replica behind", func(t *Topology) bool {
		return t.Node(behind.Addr()).ReceiveLSN < t.Node(ahead.Addr()).ReceiveLSN
	})

	killed := time.Now()
	if err := old.Kill(ctx); err != nil { // kill -9 of the postmaster and its children
		t.Fatal(err)
	}
	waitFor(t, c, 60*time.Second, "writes on the promoted replica", writerIs("h4", ahead.Addr()))
	t.Logf("primary killed; writes on the promoted replica %v after the kill began", time.Since(killed))
	// The checks may see the promoted node as primary before the promotion
	// reports back; the count follows.
	top := waitFor(t, c, 60*time.Second, "promotion counted", func(t *Topology) bool { return t.Shard("h4").Promotions == 1 })
	sh := top.Shard("h4")
	if sh.Promotions != 1 || sh.Failovers != 1 || sh.Timeline != 2 || top.Node(old.Addr()).State != StateFenced {
		t.Fatalf("after promotion:\n%s", dump(top))
	}
	if in, err := ahead.InRecovery(ctx); err != nil || in {
		t.Fatalf("promoted node in recovery: %v, %v", in, err)
	}

	// The cut-off replica was re-pointed to the new primary and streams
	// from it: a row written now appears there.
	if err := ahead.Exec(ctx, "INSERT INTO t VALUES (1000, 'after failover')"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, err := behind.QueryValue(ctx, "SELECT count(*) FROM t WHERE id IN (1000, 50)")
		if err == nil && v == "2" {
			break
		}
		if time.Now().After(deadline) {
			ci, _ := behind.QueryValue(ctx, "SELECT current_setting('primary_conninfo')")
			t.Fatalf("re-pointed replica never got the new row (count %q, %v); primary_conninfo %q\n%s", v, err, ci, dump(c.Topology()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	ci, err := behind.QueryValue(ctx, "SELECT current_setting('primary_conninfo')")
	if err != nil || !strings.Contains(ci, fmt.Sprintf("port=%d", ahead.Port)) || !strings.Contains(ci, "user=postgres") {
		t.Fatalf("primary_conninfo after re-point: %q, %v", ci, err)
	}
	waitFor(t, c, 30*time.Second, "re-pointed replica readable", func(t *Topology) bool {
		n := t.Node(behind.Addr())
		return n.Readable && n.Timeline == 2 // received_tli: the checker is a superuser
	})

	// The old primary restarted in place (crash recovery, timeline 1) is
	// fenced: no writes, no reads, and no second promotion.
	if err := old.Start(ctx); err != nil {
		t.Fatal(err)
	}
	top = waitFor(t, c, 30*time.Second, "old primary seen again", func(t *Topology) bool {
		n := t.Node(old.Addr())
		return n.Reachable && n.Role == RolePrimary
	})
	if n := top.Node(old.Addr()); n.State != StateFenced || n.Readable || top.Writer("h4").Addr != ahead.Addr() {
		t.Fatalf("old primary back:\n%s", dump(top))
	}
	if top.Shard("h4").Promotions != 1 {
		t.Fatalf("promoted again:\n%s", dump(top))
	}
}

// A primary down for a moment shorter than failures_before_down checks
// plus failover.grace is not failed over: writes pause and come back.
func TestIntegrationPrimaryBlipNoFailover(t *testing.T) {
	t.Parallel()
	s := startCluster(t, "h5", 1)
	c := startChecker(t, s, ModePromote, func(cfg *config.Config) { cfg.Failover.Grace = 20 * time.Second })
	waitFor(t, c, 30*time.Second, "writer", writerIs("h5", s.Primary.Addr()))
	ctx := itCtx(t, 2*time.Minute)
	if err := s.Primary.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, 30*time.Second, "no writer", func(t *Topology) bool { return t.Writer("h5") == nil })
	time.Sleep(time.Second)
	if err := s.Primary.Start(ctx); err != nil {
		t.Fatal(err)
	}
	top := waitFor(t, c, 30*time.Second, "writer back", writerIs("h5", s.Primary.Addr()))
	if sh := top.Shard("h5"); sh.Promotions != 0 || sh.Failovers != 0 || sh.TimeWithoutWriter(time.Now()) < time.Second {
		t.Fatalf("after a blip:\n%s", dump(top))
	}
	if in, err := s.Replicas[0].InRecovery(ctx); err != nil || !in {
		t.Fatalf("replica promoted on a blip: %v, %v", in, err)
	}
}

// A session's report of a refused connection takes a replica out of reads
// long before the next check, and the breaker stops dials after repeated
// failures.
func TestIntegrationReportFailure(t *testing.T) {
	t.Parallel()
	s := startCluster(t, "h6", 1)
	c := startChecker(t, s, ModeFollow, func(cfg *config.Config) { cfg.Health.Interval = time.Hour })
	r := s.Replicas[0]
	waitFor(t, c, 30*time.Second, "replica readable", func(t *Topology) bool { return readers(t, "h6")[r.Addr()] })
	ctx := itCtx(t, time.Minute)
	if err := r.Stop(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	var dialErr error
	reported := time.Now()
	for i := 0; i < 3; i++ {
		if !c.AllowDial(r.Addr()) {
			t.Fatalf("breaker open after %d failures", i)
		}
		conn, err := pgconn.Connect(ctx, r.DSN("app", "app-pw", "app"))
		if err == nil {
			conn.Close(ctx)
			t.Fatal("connected to a stopped server")
		}
		dialErr = err
		c.DialResult(r.Addr(), err)
	}
	waitFor(t, c, 10*time.Second, "replica down", func(t *Topology) bool { return t.Node(r.Addr()).State == StateDown })
	t.Logf("replica down %v after the first report (interval 1h); error %v", time.Since(reported), dialErr)
	if c.AllowDial(r.Addr()) {
		t.Fatal("breaker still closed after 3 refused dials")
	}
	m := c.Metrics()
	for _, n := range m.Nodes {
		if n.Addr == r.Addr() && (n.BreakerOpens != 1 || !n.BreakerOpen || n.ReportedErrors != 3) {
			t.Fatalf("metrics %+v", n)
		}
	}
	// Back: the checker's own successful dial closes the breaker.
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.ReportFailure(r.Addr(), dialErr) // wakes a check now; stale by then, or counted
	deadline := time.Now().Add(30 * time.Second)
	for !c.AllowDial(r.Addr()) {
		if time.Now().After(deadline) {
			t.Fatal("breaker never closed")
		}
		c.ReportFailure(r.Addr(), dialErr) // each triggers a check, which reconnects
		time.Sleep(100 * time.Millisecond)
	}
}

// WriterLSNAfter is a sound read-your-writes bound on a real server with
// synchronous_commit off (commits acknowledged before their WAL is
// written): a replica that replayed it shows every row committed before.
func TestIntegrationWriterLSNAfter(t *testing.T) {
	t.Parallel()
	s := startCluster(t, "h7", 1)
	c := startChecker(t, s, ModeFollow)
	r := s.Replicas[0]
	waitFor(t, c, 30*time.Second, "writer", writerIs("h7", s.Primary.Addr()))
	ctx := itCtx(t, 2*time.Minute)
	pc, err := s.Primary.Connect(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	rc, err := r.Connect(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(context.Background())
	if _, err := pc.Exec(ctx, "SET synchronous_commit = off; CREATE TABLE ryw (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	var waits time.Duration
	const n = 20
	for i := 0; i < n; i++ {
		if _, err := pc.Exec(ctx, "INSERT INTO ryw VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
		committed := time.Now()
		var target LSN
		waitFor(t, c, 30*time.Second, "a writer check after the commit", func(t *Topology) bool {
			lsn, ok := t.WriterLSNAfter("h7", committed)
			target = lsn
			return ok
		})
		waits += time.Since(committed)
		waitFor(t, c, 30*time.Second, "the replica at the target", func(t *Topology) bool {
			lsn, ok := t.ReplayLSN(r.Addr())
			return ok && lsn >= target
		})
		var found int
		if err := rc.QueryRow(ctx, "SELECT count(*) FROM ryw WHERE id = $1", i).Scan(&found); err != nil {
			t.Fatal(err)
		}
		if found != 1 {
			t.Fatalf("row %d committed before the writer check is not on a replica that replayed %v", i, target)
		}
	}
	t.Logf("mean wait for a writer check after a commit: %v (interval %v)", waits/n, itInterval)
}
