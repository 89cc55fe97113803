package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardwire/shardwire/pgcluster"
)

// startFailoverShard starts a shard whose ops user may promote and
// re-point replicas (superuser), with extra postgresql.conf settings.
func startFailoverShard(t *testing.T, name string, replicas int, settings map[string]string) *pgcluster.Shard {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh, err := pgcluster.StartShard(ctx, name, replicas, pgcluster.Options{
		Users:    []pgcluster.User{{Name: appUser, Password: appPassword}, {Name: opsUser, Password: opsPassword, Superuser: true}},
		Database: appDB, Settings: settings, Logf: t.Logf,
	})
	if err != nil {
		t.Fatalf("start shard %s: %v", name, err)
	}
	t.Cleanup(func() { _ = sh.Close() })
	return sh
}

// The spec's health settings: 500ms interval, 1s timeout, 3 failures.
const specHealth = "health:\n  interval: 500ms\n  timeout: 1s\n  failures_before_down: 3\n"

type writeLoad struct {
	mu      sync.Mutex
	acked   []int64
	lastOK  time.Time
	gaps    []time.Duration
	errs    int
	stopped atomic.Bool
}

// run inserts one row per few ms per client, recording acknowledged ids and
// the longest time without a successful write.
func (w *writeLoad) run(t *testing.T, dsn string, client int, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx := context.Background()
	var c *pgx.Conn
	var id int64 = int64(client) * 1_000_000
	for !w.stopped.Load() {
		if c == nil {
			var err error
			if c, err = pgx.Connect(ctx, dsn); err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		id++
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.Exec(cctx, "INSERT INTO acked (id) VALUES ($1)", id)
		cancel()
		now := time.Now()
		w.mu.Lock()
		if err == nil {
			w.acked = append(w.acked, id)
			if !w.lastOK.IsZero() {
				w.gaps = append(w.gaps, now.Sub(w.lastOK))
			}
			w.lastOK = now
		} else {
			w.errs++
		}
		w.mu.Unlock()
		if err != nil && c.IsClosed() {
			c = nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c != nil {
		c.Close(ctx)
	}
}

func (w *writeLoad) maxGap() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var m time.Duration
	for _, g := range w.gaps {
		m = max(m, g)
	}
	return m
}

func TestFailoverPromote(t *testing.T) {
	t.Parallel()
	t.Run("synchronous", func(t *testing.T) { t.Parallel(); failoverPromote(t, true) })
	t.Run("asynchronous", func(t *testing.T) { t.Parallel(); failoverPromote(t, false) })
}

// failoverPromote kills the primary under load. With a synchronous standby
// no acknowledged write may be lost; without one, the loss is reported.
func failoverPromote(t *testing.T, synchronous bool) {
	name := "promo-sync"
	settings := map[string]string{"synchronous_commit": "on"}
	if !synchronous {
		name = "promo-async"
		settings = nil
	}
	sh := startFailoverShard(t, name, 2, settings)
	// Synchronous replication once the replicas stream (set up before
	// that, the setup's own writes would wait for a standby forever); on
	// every node, so the promoted one keeps it.
	for _, n := range append([]*pgcluster.Node{sh.Primary}, sh.Replicas...) {
		if !synchronous {
			break
		}
		if err := n.Exec(context.Background(), "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (*)'"); err != nil {
			t.Fatal(err)
		}
		if err := n.Exec(context.Background(), "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
	}
	p := startProxy(t, proxyConfig{size: 8, shards: []*pgcluster.Shard{sh},
		extra: specHealth + "failover:\n  mode: promote\nrouting:\n  reads: replicas\n  max_replica_lag: 5s\n"})
	ctx := context.Background()
	setup := p.connect(t)
	if _, err := setup.Exec(ctx, "CREATE TABLE acked (id bigint PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	w := &writeLoad{}
	var wg sync.WaitGroup
	// However the test ends, the load stops and is waited for.
	t.Cleanup(func() { w.stopped.Store(true); wg.Wait() })
	for i := 1; i <= 3; i++ {
		wg.Add(1)
		go w.run(t, p.dsn(appUser, appPassword), i, &wg)
	}
	// A read load: the longest gap between successful reads.
	var readGap atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := pgx.Connect(ctx, p.dsn(appUser, appPassword))
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(ctx)
		last := time.Now()
		for !w.stopped.Load() {
			var one int
			if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err == nil {
				if g := time.Since(last); g > time.Duration(readGap.Load()) {
					readGap.Store(int64(g))
				}
				last = time.Now()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	killedAt := time.Now()
	if err := sh.Primary.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait until writes succeed again.
	deadline := time.Now().Add(20 * time.Second)
	for {
		w.mu.Lock()
		resumed := w.lastOK.After(killedAt)
		last := w.lastOK
		w.mu.Unlock()
		if resumed {
			t.Logf("writes resumed %v after kill -9 of the primary", last.Sub(killedAt).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes did not resume within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	w.stopped.Store(true)
	wg.Wait()
	gap := w.maxGap()
	t.Logf("longest write gap %v, write errors %d, acknowledged %d, longest read gap %v",
		gap.Round(time.Millisecond), w.errs, len(w.acked), time.Duration(readGap.Load()).Round(time.Millisecond))
	if gap > 3*time.Second {
		t.Errorf("writes stopped for %v, want under 3s with the spec's health settings", gap)
	}
	if g := time.Duration(readGap.Load()); g > 500*time.Millisecond+250*time.Millisecond {
		t.Errorf("reads stopped for %v, want at most about one health interval", g)
	}

	// Which replica is the new primary?
	var newPrimary, other *pgcluster.Node
	for _, r := range sh.Replicas {
		rec, err := r.InRecovery(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !rec {
			newPrimary = r
		} else {
			other = r
		}
	}
	if newPrimary == nil || other == nil {
		t.Fatal("no single replica was promoted")
	}
	// Every acknowledged insert is on the new primary (synchronous standby).
	rows, err := newPrimary.Query(ctx, "SELECT id FROM acked")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range rows {
		have[r[0]] = true
	}
	var lost []int64
	for _, id := range w.acked {
		if !have[fmt.Sprint(id)] {
			lost = append(lost, id)
		}
	}
	sort.Slice(lost, func(i, j int) bool { return lost[i] < lost[j] })
	if synchronous && len(lost) > 0 {
		t.Errorf("%d acknowledged inserts missing on the new primary: %v", len(lost), lost[:min(len(lost), 10)])
	}
	t.Logf("synchronous standby %v: %d of %d acknowledged inserts lost", synchronous, len(lost), len(w.acked))
	// The other replica follows the new primary.
	if _, err := setup.Exec(ctx, "INSERT INTO acked VALUES (-1)"); err != nil {
		// The setup connection may have been on the old primary.
		setup = p.connect(t)
		if _, err := setup.Exec(ctx, "INSERT INTO acked VALUES (-1)"); err != nil {
			t.Fatal(err)
		}
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		v, err := other.QueryValue(ctx, "SELECT count(*) FROM acked WHERE id = -1")
		if err == nil && v == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other replica does not follow the new primary: %v %q", err, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The old primary, restarted in place, is fenced: no traffic.
	if err := sh.Primary.Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	c := p.connect(t)
	for i := 0; i < 30; i++ {
		var port int
		if err := c.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port); err != nil {
			t.Fatal(err)
		}
		if port == sh.Primary.Port {
			t.Fatal("a read went to the fenced old primary")
		}
		if _, err := c.Exec(ctx, "INSERT INTO acked VALUES ($1)", -100-i); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := sh.Primary.QueryValue(ctx, "SELECT count(*) FROM acked WHERE id <= -100"); err != nil || v != "0" {
		t.Fatalf("the old primary got writes after failover: %q %v", v, err)
	}
}

func TestFailoverFollow(t *testing.T) {
	t.Parallel()
	sh := startFailoverShard(t, "follow", 1, nil)
	p := startProxy(t, proxyConfig{size: 4, shards: []*pgcluster.Shard{sh}, extra: specHealth + "failover:\n  mode: follow\n"})
	ctx := context.Background()
	c := p.connect(t)
	if _, err := c.Exec(ctx, "CREATE TABLE f (x int)"); err != nil {
		t.Fatal(err)
	}
	if err := sh.Replicas[0].CatchUp(ctx, sh.Primary); err != nil {
		t.Fatal(err)
	}
	if err := sh.Primary.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := sh.Replicas[0].Promote(ctx); err != nil {
		t.Fatal(err)
	}
	// A write waits (up to acquire_timeout) for the new primary.
	c2 := p.connect(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := c2.Exec(ctx, "INSERT INTO f VALUES (1)")
		if err == nil {
			break
		}
		t.Logf("write during failover: %v", err)
		if time.Now().After(deadline) {
			t.Fatalf("writes did not move to the promoted replica: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("writes moved %v after the promotion started", time.Since(start).Round(time.Millisecond))
	if v, err := sh.Replicas[0].QueryValue(ctx, "SELECT count(*) FROM f"); err != nil || v != "1" {
		t.Fatalf("row not on the promoted replica: %q %v", v, err)
	}
}

func TestNoFailoverForBlips(t *testing.T) {
	t.Parallel()
	sh := startFailoverShard(t, "blip", 1, nil)
	p := startProxy(t, proxyConfig{size: 4, shards: []*pgcluster.Shard{sh},
		extra: specHealth + "failover:\n  mode: promote\n  grace: 2s\n"})
	ctx := context.Background()
	c := p.connect(t)
	if _, err := c.Exec(ctx, "CREATE TABLE b (x int)"); err != nil {
		t.Fatal(err)
	}
	// A replica killed and restarted.
	if err := sh.Replicas[0].Kill(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := sh.Replicas[0].Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The primary refusing connections for 2 s (stopped, then started).
	if err := sh.Primary.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := sh.Primary.Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if rec, err := sh.Replicas[0].InRecovery(ctx); err != nil || !rec {
		t.Fatalf("the replica was promoted after a 2s blip (in recovery: %v, %v)", rec, err)
	}
	c2 := p.connect(t)
	var port int
	if err := c2.QueryRow(ctx, "INSERT INTO b VALUES (1) RETURNING inet_server_port()").Scan(&port); err != nil {
		t.Fatal(err)
	}
	if port != sh.Primary.Port {
		t.Fatalf("writes went to port %d, not the primary %d", port, sh.Primary.Port)
	}
}
