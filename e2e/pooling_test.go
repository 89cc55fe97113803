package e2e

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardwire/shardwire/pgcluster"
)

// TestPgbenchThroughTransactionPooling runs pgbench's read-only and TPC-B-like
// scripts with 64 clients over 10 server connections in every query mode.
func TestPgbenchThroughTransactionPooling(t *testing.T) {
	t.Parallel()
	sh := startShard(t, "pgb", 0, "scram-sha-256")
	p := startProxy(t, proxyConfig{size: 10, shards: []*pgcluster.Shard{sh}})
	pgbench := tool(t, "pgbench")
	if out, err := p.run(t, 2*time.Minute, pgbench, "-i", "-s", "2", "-q"); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	failed := regexp.MustCompile(`number of failed transactions: (\d+)`)
	processed := regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	for _, script := range []string{"-S", "-b tpcb-like"} {
		for _, mode := range []string{"simple", "extended", "prepared"} {
			// A fixed number of transactions, not a duration: on a busy
			// machine 64 SCRAM logins can outlast a short -T.
			args := append(strings.Fields(script), "-c", "64", "-j", "2", "-t", "20", "-M", mode, "--max-tries=1")
			out, err := p.run(t, 2*time.Minute, pgbench, args...)
			if err != nil {
				t.Fatalf("pgbench %s -M %s: %v\n%s", script, mode, err, out)
			}
			f := failed.FindStringSubmatch(out)
			n := processed.FindStringSubmatch(out)
			if f == nil || n == nil {
				t.Fatalf("pgbench %s -M %s: no summary:\n%s", script, mode, out)
			}
			if f[1] != "0" || n[1] == "0" || strings.Contains(out, "error") {
				t.Errorf("pgbench %s -M %s: %s failed of %s:\n%s", script, mode, f[1], n[1], out)
			}
			t.Logf("pgbench %s -M %s: %s transactions, 0 failed", script, mode, n[1])
		}
	}
}

// TestPgxStatementCacheManyClients uses pgx's default mode (named prepared
// statements cached per connection) from many clients over few servers.
func TestPgxStatementCacheManyClients(t *testing.T) {
	t.Parallel()
	sh := startShard(t, "pgx", 0, "scram-sha-256")
	p := startProxy(t, proxyConfig{size: 4, shards: []*pgcluster.Shard{sh}})
	setup := p.connect(t)
	ctx := context.Background()
	if _, err := setup.Exec(ctx, "CREATE TABLE kv (k int PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	const clients, rounds = 24, 60
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := pgx.Connect(ctx, p.dsn(appUser, appPassword))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(ctx)
			for r := 0; r < rounds; r++ {
				k := i*1000 + r
				if _, err := c.Exec(ctx, "INSERT INTO kv (k, v) VALUES ($1, $2)", k, fmt.Sprint("v", k)); err != nil {
					errs <- fmt.Errorf("client %d insert: %w", i, err)
					return
				}
				var v string
				if err := c.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", k).Scan(&v); err != nil || v != fmt.Sprint("v", k) {
					errs <- fmt.Errorf("client %d select %d: %q %v", i, k, v, err)
					return
				}
				// A batch: several statements pipelined in one round trip.
				b := &pgx.Batch{}
				b.Queue("SELECT count(*) FROM kv WHERE k >= $1 AND k < $1 + 1000", i*1000)
				b.Queue("UPDATE kv SET v = v || '!' WHERE k = $1", k)
				b.Queue("SELECT v FROM kv WHERE k = $1", k)
				br := c.SendBatch(ctx, b)
				var n int64
				if err := br.QueryRow().Scan(&n); err != nil || n != int64(r+1) {
					errs <- fmt.Errorf("client %d batch count: %d %v", i, n, err)
					br.Close()
					return
				}
				if _, err := br.Exec(); err != nil {
					errs <- fmt.Errorf("client %d batch update: %w", i, err)
					br.Close()
					return
				}
				if err := br.QueryRow().Scan(&v); err != nil || v != fmt.Sprint("v", k)+"!" {
					errs <- fmt.Errorf("client %d batch select: %q %v", i, v, err)
					br.Close()
					return
				}
				if err := br.Close(); err != nil {
					errs <- err
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var total int
	if err := setup.QueryRow(ctx, "SELECT count(*) FROM kv").Scan(&total); err != nil || total != clients*rounds {
		t.Fatalf("rows = %d (%v), want %d", total, err, clients*rounds)
	}
}

// TestSetDoesNotLeak checks that one client's SET never shows in another's
// session while both share two server connections.
func TestSetDoesNotLeak(t *testing.T) {
	t.Parallel()
	sh := startShard(t, "set", 0, "scram-sha-256")
	p := startProxy(t, proxyConfig{size: 2, shards: []*pgcluster.Shard{sh}})
	ctx := context.Background()
	const clients = 8
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cfg, err := pgx.ParseConfig(p.dsn(appUser, appPassword))
			if err != nil {
				errs <- err
				return
			}
			cfg.RuntimeParams["application_name"] = fmt.Sprintf("client-%d", i)
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(ctx)
			// Simple-protocol SET, as most drivers send it.
			if _, err := c.Exec(ctx, fmt.Sprintf("SET statement_timeout = '%ds'", 100+i), pgx.QueryExecModeSimpleProtocol); err != nil {
				errs <- err
				return
			}
			if i%2 == 0 {
				if _, err := c.Exec(ctx, "SET search_path TO pg_catalog, public", pgx.QueryExecModeSimpleProtocol); err != nil {
					errs <- err
					return
				}
			}
			for r := 0; r < 40; r++ {
				var app, timeout, path string
				err := c.QueryRow(ctx, "SELECT current_setting('application_name'), current_setting('statement_timeout'), current_setting('search_path')").Scan(&app, &timeout, &path)
				if err != nil {
					errs <- err
					return
				}
				wantPath := `"$user", public`
				if i%2 == 0 {
					wantPath = "pg_catalog, public"
				}
				if app != fmt.Sprintf("client-%d", i) || timeout != fmt.Sprintf("%ds", 100+i) || path != wantPath {
					errs <- fmt.Errorf("client %d round %d sees application_name=%q statement_timeout=%q search_path=%q", i, r, app, timeout, path)
					return
				}
			}
			// RESET goes back to the startup value, as in Postgres.
			if _, err := c.Exec(ctx, "RESET application_name", pgx.QueryExecModeSimpleProtocol); err != nil {
				errs <- err
				return
			}
			var app string
			if err := c.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil || app != fmt.Sprintf("client-%d", i) {
				errs <- fmt.Errorf("client %d after RESET: application_name=%q %v", i, app, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A fresh client sees the server defaults.
	c := p.connect(t)
	var timeout string
	if err := c.QueryRow(ctx, "SHOW statement_timeout").Scan(&timeout); err != nil || timeout != "0" {
		t.Fatalf("fresh client sees statement_timeout=%q (%v)", timeout, err)
	}
}

// TestCancelReachesOnlyItsQuery cancels one client's pg_sleep while another
// client's query on the same pool keeps running to completion.
func TestCancelReachesOnlyItsQuery(t *testing.T) {
	t.Parallel()
	sh := startShard(t, "cancel", 0, "scram-sha-256")
	p := startProxy(t, proxyConfig{size: 4, shards: []*pgcluster.Shard{sh}})
	victim := p.connect(t)
	bystander := p.connect(t)
	ctx := context.Background()

	byErr := make(chan error, 1)
	go func() {
		_, err := bystander.Exec(ctx, "SELECT pg_sleep(1.5)")
		byErr <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	go func() {
		time.Sleep(300 * time.Millisecond)
		// A CancelRequest with the BackendKeyData shardwire gave the client.
		if err := victim.PgConn().CancelRequest(ctx); err != nil {
			t.Errorf("cancel request: %v", err)
		}
	}()
	_, err := victim.Exec(ctx, "SELECT pg_sleep(10)")
	elapsed := time.Since(start)
	var pgErr *pgconn.PgError
	if err == nil {
		t.Fatal("pg_sleep(10) was not cancelled")
	}
	if elapsed > time.Second+300*time.Millisecond {
		t.Fatalf("cancel took %v", elapsed)
	}
	if errors.As(err, &pgErr) && pgErr.Code != "57014" {
		t.Fatalf("cancel error code %s, want 57014", pgErr.Code)
	}
	if err := <-byErr; err != nil {
		t.Fatalf("the other client's query was hit: %v", err)
	}
	t.Logf("pg_sleep(10) cancelled after %v", elapsed.Round(time.Millisecond))

	// A raw CancelRequest from psql's libpq: pg_sleep cancelled via pg_cancel
	// semantics is covered above; here check the proxy's BackendKeyData is
	// its own (not a Postgres PID).
	pid := victim.PgConn().PID()
	var serverPIDs []uint32
	rows, err := bystander.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var sp uint32
		if err := rows.Scan(&sp); err != nil {
			t.Fatal(err)
		}
		serverPIDs = append(serverPIDs, sp)
	}
	for _, sp := range serverPIDs {
		if sp == pid {
			t.Fatalf("client got a server PID %d as its BackendKeyData", pid)
		}
	}
	// The victim's session is still usable.
	var one int
	if err := victim.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("session unusable after cancel: %v", err)
	}
}

// TestCopyRoundTrip copies 100k rows in and out through the proxy.
func TestCopyRoundTrip(t *testing.T) {
	t.Parallel()
	sh := startShard(t, "copy", 0, "scram-sha-256")
	p := startProxy(t, proxyConfig{size: 2, shards: []*pgcluster.Shard{sh}})
	c := p.connect(t)
	ctx := context.Background()
	if _, err := c.Exec(ctx, "CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric)"); err != nil {
		t.Fatal(err)
	}
	const n = 100000
	var in strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "%d\titem \\\\%d\t%d.%02d\n", i, i, i/100, i%100)
	}
	tag, err := c.PgConn().CopyFrom(ctx, strings.NewReader(in.String()), "COPY items FROM STDIN")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != n {
		t.Fatalf("COPY FROM: %d rows", tag.RowsAffected())
	}
	var out strings.Builder
	tag, err = c.PgConn().CopyTo(ctx, &out, "COPY (SELECT * FROM items ORDER BY id) TO STDOUT")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != n || out.String() != in.String() {
		t.Fatalf("COPY TO: %d rows, output equal: %v", tag.RowsAffected(), out.String() == in.String())
	}
	// pgx's binary CopyFrom (extended protocol, COPY ... FROM STDIN BINARY).
	rows := make([][]any, 1000)
	for i := range rows {
		rows[i] = []any{int64(n + i), "bin", "1.5"}
	}
	cnt, err := c.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id", "name", "price"}, pgx.CopyFromRows(rows))
	if err != nil || cnt != 1000 {
		t.Fatalf("binary CopyFrom: %d %v", cnt, err)
	}
	// A failing COPY leaves the session usable.
	_, err = c.PgConn().CopyFrom(ctx, strings.NewReader("x\ty\tz\n"), "COPY items FROM STDIN")
	if err == nil {
		t.Fatal("bad COPY succeeded")
	}
	var total int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&total); err != nil || total != n+1000 {
		t.Fatalf("count = %d %v", total, err)
	}
}

// TestAuthentication checks SCRAM and md5 logins and wrong passwords.
func TestAuthentication(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"scram-sha-256", "md5"} {
		method := method
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			// The server side uses the other method, to show shardwire
			// answers whatever Postgres asks.
			serverAuth := "md5"
			if method == "md5" {
				serverAuth = "scram-sha-256"
			}
			sh := startShard(t, "auth-"+method[:3], 0, serverAuth)
			p := startProxy(t, proxyConfig{auth: method, shards: []*pgcluster.Shard{sh}})
			ctx := context.Background()
			c := p.connect(t)
			var user string
			if err := c.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != appUser {
				t.Fatalf("current_user = %q %v", user, err)
			}
			for _, bad := range []struct{ user, pass string }{{appUser, "wrong"}, {"nobody", "x"}} {
				_, err := pgx.Connect(ctx, p.dsn(bad.user, bad.pass))
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
					t.Fatalf("login %s/%s: err %v, want 28P01", bad.user, bad.pass, err)
				}
			}
			// psql (libpq) logs in too.
			out, err := p.run(t, 30*time.Second, tool(t, "psql"), "-XAtc", "SELECT 40 + 2")
			if err != nil || strings.TrimSpace(out) != "42" {
				t.Fatalf("psql: %v %q", err, out)
			}
		})
	}
}

// TestDeallocateAllRolledBack: DEALLOCATE ALL is not transactional, so the
// server forgets its prepared statements even when the block rolls back;
// shardwire must prepare the client's statements again rather than bind a
// name the server no longer has.
func TestDeallocateAllRolledBack(t *testing.T) {
	t.Parallel()
	sh := startShard(t, "dealloc", 0, "scram-sha-256")
	p := startProxy(t, proxyConfig{size: 1, shards: []*pgcluster.Shard{sh}})
	ctx := context.Background()
	c := p.connect(t) // pgx's default: named prepared statements, cached
	var n int
	for i, sql := range []string{"BEGIN", "DEALLOCATE ALL", "ROLLBACK", ""} {
		if err := c.QueryRow(ctx, "SELECT $1::int + 1", i).Scan(&n); err != nil {
			t.Fatalf("prepared statement after %q: %v", sql, err)
		}
		if n != i+1 {
			t.Fatalf("after %q: got %d, want %d", sql, n, i+1)
		}
		if sql == "" {
			break
		}
		if _, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// TestSetInTransactionBlock checks that a SET made inside a transaction
// block reaches the client's next server connection exactly when Postgres
// keeps it: COMMIT keeps it, ROLLBACK and ROLLBACK TO a savepoint taken
// before it undo it, RELEASE keeps it, an error does not lose SETs that a
// ROLLBACK TO rescues, an error in an implicit transaction (a pipeline up to
// its Sync, or a Query string's statements after its last COMMIT) undoes
// the SETs before it, and so does a COMMIT that fails; a COMMIT or ROLLBACK
// inside one Query string decides for the statements before it. Each script
// also runs on a direct connection to Postgres, which must agree with want.
func TestSetInTransactionBlock(t *testing.T) {
	t.Parallel()
	sh := startShard(t, "setblock", 0, "scram-sha-256")
	p := startProxy(t, proxyConfig{size: 2, shards: []*pgcluster.Shard{sh}})
	ctx := context.Background()
	// A COMMIT that fails: a deferred foreign key checked at commit.
	createSchema(t, sh, "CREATE TABLE setblock_deferred (id int PRIMARY KEY, ref int REFERENCES setblock_deferred DEFERRABLE INITIALLY DEFERRED)")
	const st = "SET statement_timeout = "
	cases := []struct {
		name   string
		script []string // run one by one; a leading ! marks a statement that fails
		batch  bool     // run the script as one pgx batch (one pipeline, one Sync)
		want   string
	}{
		{"commit", []string{"BEGIN", st + "'11s'", "COMMIT"}, false, "11s"},
		{"rollback", []string{"BEGIN", st + "'12s'", "ROLLBACK"}, false, "0"},
		{"rollback to savepoint before the set", []string{"BEGIN", "SAVEPOINT a", st + "'13s'", "ROLLBACK TO a", "COMMIT"}, false, "0"},
		{"rollback to savepoint after a set", []string{"BEGIN", st + "'14s'", "SAVEPOINT a", st + "'15s'", "ROLLBACK TO SAVEPOINT a", "COMMIT"}, false, "14s"},
		{"error rescued by rollback to", []string{"BEGIN", st + "'16s'", "SAVEPOINT a", "!SELECT 1/0", "ROLLBACK TO a", "COMMIT"}, false, "16s"},
		{"error then commit", []string{"BEGIN", st + "'17s'", "!SELECT 1/0", "COMMIT"}, false, "0"},
		{"release keeps", []string{"BEGIN", "SAVEPOINT a", st + "'18s'", "RELEASE a", "COMMIT"}, false, "18s"},
		{"release inner, rollback to outer", []string{"BEGIN", "SAVEPOINT a", "SAVEPOINT b", st + "'19s'", "RELEASE SAVEPOINT b", "ROLLBACK TO a", "COMMIT"}, false, "0"},
		{"reused name means the newest", []string{"BEGIN", "SAVEPOINT a", st + "'20s'", "SAVEPOINT a", st + "'21s'", "ROLLBACK TO a", "COMMIT"}, false, "20s"},
		{"released newest uncovers the older", []string{"BEGIN", "SAVEPOINT a", st + "'22s'", "SAVEPOINT a", "RELEASE a", "ROLLBACK TO a", "COMMIT"}, false, "0"},
		{"one query string", []string{"BEGIN; " + st + "'23s'; SAVEPOINT a; " + st + "'24s'; ROLLBACK TO a; COMMIT"}, false, "23s"},
		{"commit and chain, then rollback", []string{"BEGIN", st + "'27s'", "COMMIT AND CHAIN", st + "'28s'", "ROLLBACK"}, false, "27s"},
		{"rollback and chain, then commit", []string{"BEGIN", st + "'29s'", "ROLLBACK AND CHAIN", "COMMIT"}, false, "0"},
		{"rollback and chain, set, commit", []string{"BEGIN", st + "'30s'", "ROLLBACK AND CHAIN", st + "'31s'", "COMMIT"}, false, "31s"},
		{"one query string commits, then rolls back", []string{"BEGIN; " + st + "'32s'; COMMIT; BEGIN; " + st + "'33s'; ROLLBACK"}, false, "32s"},
		{"failed query string rescued by rollback to", []string{"BEGIN", "SAVEPOINT a", "!" + st + "'34s'; SAVEPOINT b; " + st + "'35s'; SELECT 1/0", "ROLLBACK TO b", "COMMIT"}, false, "34s"},
		{"query string commits, then fails", []string{"!" + st + "'36s'; COMMIT; " + st + "'37s'; SELECT 1/0"}, false, "36s"},
		{"query string sets, then rolls back", []string{st + "'38s'; ROLLBACK"}, false, "0"},
		{"commit that fails", []string{"BEGIN", st + "'39s'", "INSERT INTO setblock_deferred VALUES (1, 2)", "!COMMIT"}, false, "0"},
		{"commit that fails in a pipeline", []string{"BEGIN", st + "'40s'", "INSERT INTO setblock_deferred VALUES (1, 2)", "!COMMIT"}, true, "0"},
		{"commit, then a failing implicit transaction, in a pipeline", []string{"BEGIN", st + "'41s'", "COMMIT", st + "'42s'", "!SELECT 1/0"}, true, "41s"},
		{"pipeline that fails", []string{st + "'25s'", "!SELECT 1/0"}, true, "0"},
		{"pipeline that succeeds", []string{st + "'26s'", "SELECT 1"}, true, "26s"},
	}
	run := func(c *pgx.Conn, script []string, batch bool) error {
		if batch {
			b := &pgx.Batch{}
			for _, sql := range script {
				b.Queue(strings.TrimPrefix(sql, "!"))
			}
			err := c.SendBatch(ctx, b).Close()
			if fails := strings.HasPrefix(script[len(script)-1], "!"); fails != (err != nil) {
				return fmt.Errorf("batch: error %v, expected one: %v", err, fails)
			}
			return nil
		}
		for _, sql := range script {
			_, err := c.Exec(ctx, strings.TrimPrefix(sql, "!"), pgx.QueryExecModeSimpleProtocol)
			if fails := strings.HasPrefix(sql, "!"); fails != (err != nil) {
				return fmt.Errorf("%s: error %v, expected one: %v", sql, err, fails)
			}
		}
		return nil
	}
	timeout := func(c *pgx.Conn) string {
		var v string
		if err := c.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			direct, err := pgx.Connect(ctx, sh.Primary.DSN(appUser, appPassword, appDB))
			if err != nil {
				t.Fatal(err)
			}
			defer direct.Close(ctx)
			if err := run(direct, tc.script, tc.batch); err != nil {
				t.Fatalf("direct: %v", err)
			}
			if got := timeout(direct); got != tc.want {
				t.Fatalf("Postgres itself ends with statement_timeout %q, the case expects %q", got, tc.want)
			}

			// Two server connections in the pool, both opened (shardwire
			// holds a BEGIN back until the block's first statement).
			c, other := p.connect(t), p.connect(t)
			for _, x := range []*pgx.Conn{c, other} {
				if _, err := x.Exec(ctx, "BEGIN; SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
					t.Fatal(err)
				}
			}
			for _, x := range []*pgx.Conn{c, other} {
				if _, err := x.Exec(ctx, "COMMIT"); err != nil {
					t.Fatal(err)
				}
			}
			if err := run(c, tc.script, tc.batch); err != nil {
				t.Fatalf("through shardwire: %v", err)
			}
			// The other client takes the connection c just used (the pool
			// hands out the most recently returned), so c's next statement
			// runs on the other one, with the state shardwire tracked.
			if _, err := other.Exec(ctx, "BEGIN; SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatal(err)
			}
			defer other.Exec(ctx, "COMMIT")
			var pid int
			if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			var otherPid int
			if err := other.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&otherPid); err != nil {
				t.Fatal(err)
			}
			if pid == otherPid {
				t.Fatalf("both clients on backend %d", pid)
			}
			if got := timeout(c); got != tc.want {
				t.Errorf("through shardwire, the next connection has statement_timeout %q, Postgres keeps %q", got, tc.want)
			}
		})
	}
}
