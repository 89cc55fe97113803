package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardwire/shardwire/pgcluster"
)

const twoPhaseTables = `tables:
  customers: { key: id, type: bigint, strategy: hash }
routing:
  two_phase_commit: true
  two_phase_recovery_after: 1s
`

// twoPhaseShards starts two shards that allow prepared transactions, with
// the customers table, and returns them with keys each owns.
func twoPhaseShards(t *testing.T, prefix string) ([]*pgcluster.Shard, [2][]int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var shards []*pgcluster.Shard
	for _, name := range []string{"s0", "s1"} {
		sh, err := pgcluster.StartShard(ctx, prefix+name, 0, pgcluster.Options{
			Users:      []pgcluster.User{{Name: appUser, Password: appPassword}, {Name: opsUser, Password: opsPassword}},
			Database:   appDB,
			AuthMethod: "scram-sha-256",
			Settings:   map[string]string{"max_prepared_transactions": "10"},
			Logf:       t.Logf,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sh.Close() })
		sh.Name = name
		if err := sh.Primary.Exec(ctx, "CREATE TABLE customers (id bigint PRIMARY KEY, name text)"); err != nil {
			t.Fatal(err)
		}
		if err := sh.Primary.Exec(ctx, "GRANT ALL ON customers TO "+appUser); err != nil {
			t.Fatal(err)
		}
		shards = append(shards, sh)
	}
	// Keys of each shard, by shardwire locate.
	p := startProxy(t, proxyConfig{size: 2, shards: shards, extra: twoPhaseTables})
	var args []string
	for k := 1; k <= 60; k++ {
		args = append(args, fmt.Sprint(k))
	}
	loc := exec.Command(swBinary, append([]string{"locate", "-c", p.cfg, "customers"}, args...)...)
	loc.Env = append(p.pgEnv(), "E2E_APP_PASSWORD="+appPassword, "GORACE=atexit_sleep_ms=0")
	out, err := loc.Output()
	if err != nil {
		t.Fatalf("locate: %v", err)
	}
	// Its recovery loop must not race the tests' own instances.
	p.stop(t)
	var keys [2][]int64
	for i, shard := range strings.Fields(string(out)) {
		switch shard {
		case "s0":
			keys[0] = append(keys[0], int64(i+1))
		case "s1":
			keys[1] = append(keys[1], int64(i+1))
		}
	}
	if len(keys[0]) < 5 || len(keys[1]) < 5 {
		t.Fatalf("too few keys per shard: %v", keys)
	}
	return shards, keys
}

// rowsOn counts the customers with the given ids on a shard, and its
// prepared transactions.
func rowsOn(t *testing.T, sh *pgcluster.Shard, ids ...int64) (rows, prepared int) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, sh.Primary.DSN(appUser, appPassword, appDB))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// Prepared transactions first: once none is left, the rows read next
	// show how they ended (read the other way round, a COMMIT PREPARED
	// between the two reads would look like a rollback).
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_xacts").Scan(&prepared); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers WHERE id = ANY($1)", ids).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	return rows, prepared
}

// TestTwoPhaseCommit: a transaction that writes on two shards commits on
// both (or, rolled back, on neither); a failing statement aborts it
// everywhere; without two_phase_commit the crossing statement is refused.
func TestTwoPhaseCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shards, keys := twoPhaseShards(t, "tpc")
	p := startProxy(t, proxyConfig{size: 2, shards: shards, extra: twoPhaseTables})
	c := p.connect(t)
	write := func(a, b int64, name string) pgx.Tx {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []int64{a, b} {
			if _, err := tx.Exec(ctx, "INSERT INTO customers (id, name) VALUES ($1, $2)", k, name); err != nil {
				t.Fatalf("insert %d: %v", k, err)
			}
		}
		// Back to the first shard within the same transaction.
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM customers WHERE id = $1", a).Scan(&n); err != nil || n != 1 {
			t.Fatalf("read back in the transaction: %d %v", n, err)
		}
		return tx
	}
	if err := write(keys[0][0], keys[1][0], "committed").Commit(ctx); err != nil {
		t.Fatalf("commit across shards: %v", err)
	}
	for i, sh := range shards {
		if rows, prepared := rowsOn(t, sh, keys[i][0]); rows != 1 || prepared != 0 {
			t.Fatalf("shard %s after commit: %d rows, %d prepared", sh.Name, rows, prepared)
		}
	}
	if err := write(keys[0][1], keys[1][1], "rolled back").Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// A duplicate key on the second shard fails the transaction: nothing
	// of it stays anywhere, and the session is usable after ROLLBACK.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO customers (id, name) VALUES ($1, 'x')", keys[0][2]); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "INSERT INTO customers (id, name) VALUES ($1, 'dup')", keys[1][0])
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("duplicate on the second shard: %v", err)
	}
	if err := tx.Commit(ctx); err == nil || !strings.Contains(err.Error(), "rollback") {
		t.Fatalf("commit of a failed transaction: %v", err)
	}
	for i, sh := range shards {
		if rows, prepared := rowsOn(t, sh, keys[i][1], keys[i][2]); rows != 0 || prepared != 0 {
			t.Fatalf("shard %s kept %d rows of rolled-back transactions (%d prepared)", sh.Name, rows, prepared)
		}
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers WHERE id = $1", keys[1][0]).Scan(&n); err != nil || n != 1 {
		t.Fatalf("session after the failed transaction: %d %v", n, err)
	}
	// Without two_phase_commit, the statement that would cross is refused.
	q := startProxy(t, proxyConfig{size: 2, shards: shards, extra: "tables:\n  customers: { key: id, type: bigint, strategy: hash }\n"})
	c2 := q.connect(t)
	tx, err = c2.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO customers (id, name) VALUES ($1, 'one')", keys[0][3]); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "INSERT INTO customers (id, name) VALUES ($1, 'two')", keys[1][3])
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, "two_phase_commit") {
		t.Fatalf("crossing without 2PC: %v", err)
	}
	_ = tx.Rollback(ctx)
}

// TestTwoPhaseCrashRecovery kills shardwire -9 between PREPARE and COMMIT
// PREPARED, before and after it recorded the commit decision: a fresh
// instance leaves no prepared transaction on any shard, and the data is
// all (after the record) or nothing (before it).
func TestTwoPhaseCrashRecovery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shards, keys := twoPhaseShards(t, "tpk")
	for i, point := range []string{"2pc-before-decision", "2pc-after-decision"} {
		a, b := keys[0][i], keys[1][i]
		p := startProxy(t, proxyConfig{size: 2, shards: shards, extra: twoPhaseTables, env: []string{"SHARDWIRE_FAILPOINT=" + point}})
		c := p.connect(t)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []int64{a, b} {
			if _, err := tx.Exec(ctx, "INSERT INTO customers (id, name) VALUES ($1, $2)", k, point); err != nil {
				t.Fatal(err)
			}
		}
		go func() { _ = tx.Commit(ctx) }()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(p.log.String(), "failpoint reached") {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the failpoint was never reached", point)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.done
		for _, sh := range shards {
			if _, prepared := rowsOn(t, sh); prepared != 1 {
				t.Fatalf("%s: shard %s has %d prepared transactions after the kill, want 1", point, sh.Name, prepared)
			}
		}
		// A fresh instance resolves them by the decision record. (It is
		// stopped after the round: a live instance would otherwise finish
		// the next round's decided transaction before the test looks.)
		rec := startProxy(t, proxyConfig{size: 2, shards: shards, extra: twoPhaseTables})
		want := 0
		if point == "2pc-after-decision" {
			want = 1
		}
		deadline = time.Now().Add(30 * time.Second)
		for i, sh := range shards {
			for {
				rows, prepared := rowsOn(t, sh, []int64{a, b}[i])
				if prepared == 0 {
					if rows != want {
						t.Fatalf("%s: shard %s has %d rows of the transaction, want %d", point, sh.Name, rows, want)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: shard %s still has %d prepared transactions", point, sh.Name, prepared)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		rec.stop(t)
	}
}

// TestCheckPreparedTransactions: shardwire check says when a shard
// primary cannot take two-phase commit (max_prepared_transactions = 0).
func TestCheckPreparedTransactions(t *testing.T) {
	t.Parallel()
	sh := startShard(t, "chkp", 0, "scram-sha-256")
	p := startProxy(t, proxyConfig{size: 1, shards: []*pgcluster.Shard{sh}, extra: "routing:\n  two_phase_commit: true\n"})
	cmd := exec.Command(swBinary, "check", "-c", p.cfg)
	cmd.Env = append(p.pgEnv(), "E2E_APP_PASSWORD="+appPassword, "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "max_prepared_transactions = 0") {
		t.Fatalf("check with max_prepared_transactions = 0: %v\n%s", err, out)
	}
	shards, _ := twoPhaseShards(t, "chkq")
	q := startProxy(t, proxyConfig{size: 1, shards: shards, extra: twoPhaseTables})
	cmd = exec.Command(swBinary, "check", "-c", q.cfg)
	cmd.Env = append(q.pgEnv(), "E2E_APP_PASSWORD="+appPassword, "GORACE=atexit_sleep_ms=0")
	if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "max_prepared") {
		t.Fatalf("check with max_prepared_transactions = 10: %v\n%s", err, out)
	}
}
