package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardwire/shardwire/pgcluster"
)

// loadTables is the shard map of TestShardLoad10k: the spec's tables over
// three shards. The list and range placements are also spelled out in
// storeShard and eventShard, so the test does not only trust locate.
const loadTables = `tables:
  customers: { key: id, type: bigint, strategy: hash }
  orders:    { key: customer_id, type: bigint, strategy: hash }
  stores:    { key: region, type: text, strategy: list, lists: { s0: [eu, uk], s1: [us, ca], s2: [jp] } }
  events:    { key: created_at, type: date, strategy: range,
               ranges: [ { shard: s0, to: 2025-01-01 }, { shard: s1, from: 2025-01-01, to: 2026-01-01 }, { shard: s2, from: 2026-01-01 } ] }
`

const loadSchema = `
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, src text NOT NULL);
CREATE TABLE orders (id bigint NOT NULL, customer_id bigint NOT NULL, total numeric NOT NULL, src text NOT NULL, PRIMARY KEY (customer_id, id));
CREATE TABLE stores (region text NOT NULL, name text NOT NULL, src text NOT NULL);
CREATE TABLE events (created_at date NOT NULL, what text NOT NULL, src text NOT NULL);
`

var storeShard = map[string]string{"eu": "s0", "uk": "s0", "us": "s1", "ca": "s1", "jp": "s2"}

func eventShard(d time.Time) string {
	switch {
	case d.Before(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)):
		return "s0"
	case d.Before(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)):
		return "s1"
	}
	return "s2"
}

// swOutput runs the shardwire binary (locate, check) with the environment
// the test configs need and returns its stdout.
func swOutput(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, swBinary, args...)
	// A -race binary sleeps a second at exit unless told not to.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), "E2E_APP_PASSWORD="+appPassword, "GORACE="+gorace)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("shardwire %s: %w\n%s", strings.Join(args[:min(len(args), 4)], " "), err, stderr.String())
	}
	return string(out), nil
}

// locateAll runs `shardwire locate -c cfg table KEY...` over keys in
// batches that fit a command line and returns the shard of each key, in
// order.
func locateAll(t testing.TB, cfg, table string, keys []string) []string {
	t.Helper()
	const argBytes = 1 << 20 // of Linux's 2 MiB for arguments and environment
	shards := make([]string, 0, len(keys))
	for i := 0; i < len(keys); {
		j, size := i, 0
		for j < len(keys) && size < argBytes {
			size += len(keys[j]) + 9 // the string, its NUL and its pointer
			j++
		}
		part := keys[i:j]
		i = j
		out, err := swOutput(t, append([]string{"locate", "-c", cfg, table}, part...)...)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Fields(out)
		if len(got) != len(part) {
			t.Fatalf("locate %s printed %d shards for %d keys", table, len(got), len(part))
		}
		shards = append(shards, got...)
	}
	return shards
}

// opTimeout bounds one statement or batch of the load tests, so a hang
// fails the test with the servers' state rather than at the test timeout.
const opTimeout = 30 * time.Second

// logActivity logs what every primary's sessions are doing, to tell a
// stuck proxy from a stuck server.
func logActivity(t testing.TB, shards []*pgcluster.Shard) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, sh := range shards {
		rows, err := sh.Primary.Query(ctx, `SELECT pid, state, coalesce(wait_event_type || ':' || wait_event, ''),
			coalesce(now() - xact_start, '0'), left(regexp_replace(query, '\s+', ' ', 'g'), 100)
			FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
		if err != nil {
			t.Logf("%s: pg_stat_activity: %v", sh.Name, err)
			continue
		}
		for _, r := range rows {
			t.Logf("%s: %s", sh.Name, strings.Join(r, " | "))
		}
	}
}

// dumpGoroutines makes the proxy print its goroutines and exit (SIGQUIT),
// so that the log the harness prints shows where a hung client waits.
func (p *proxyProc) dumpGoroutines(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
	t.Logf("sent SIGQUIT to shardwire: its goroutines are in the log below")
}

// inParallel runs f(0..n-1) in n goroutines and returns the first error.
func inParallel(n int, f func(w int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = f(w)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// psqlScript feeds script to psql through the proxy, stopping at the first error.
func psqlScript(ctx context.Context, p *proxyProc, psql, script string, extra ...string) (string, error) {
	cmd := exec.CommandContext(ctx, psql, append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=1"}, extra...)...)
	cmd.Env = p.pgEnv()
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestShardLoad10k loads 10,000 customers and their orders, stores (list
// sharded) and events (range sharded) through shardwire over three shards
// of a primary and a replica each, at once from pgx (extended protocol,
// binary binds, pipelined batches), psql (simple protocol, literals) and
// pgbench -M prepared (text binds, 8 clients). It then reads every shard's
// primary directly: each row is on the shard shardwire locate names, on no
// other, and the counts add up to what each client inserted. Finally every
// row is read back through shardwire by its key.
func TestShardLoad10k(t *testing.T) {
	t.Parallel()
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	shards := startShards(t, "ld", []string{"s0", "s1", "s2"}, 1, loadSchema)
	p := startProxy(t, proxyConfig{size: 8, shards: shards, extra: loadTables})
	psql, pgbench := tool(t, "psql"), tool(t, "pgbench")

	const (
		nCustomers = 10000
		nPgx       = 5000 // customers 1..nPgx through pgx, the rest through psql
		pgbClients = 8
		pgbTx      = 250 // per client
		pgbBase    = 100_000_000
	)
	days := []time.Time{}
	for d := time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC); d.Before(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)); d = d.AddDate(0, 0, 1) {
		days = append(days, d)
	}
	regions := []string{"eu", "uk", "us", "ca", "jp"}
	const storesPerRegion = 10 // per client kind

	// (c) pgbench: each transaction inserts one order for a random customer
	// (id from the client number and a per-client counter, so every id is
	// known) and reads that customer's orders.
	script := filepath.Join(t.TempDir(), "orders.sql")
	if err := os.WriteFile(script, []byte(`\set cid random(1, 10000)
\set seq :seq + 1
INSERT INTO orders (id, customer_id, total, src) VALUES (`+strconv.Itoa(pgbBase)+` + :client_id * 1000000 + :seq, :cid, 9.99, 'pgbench');
SELECT count(*) FROM orders WHERE customer_id = :cid;
`), 0o600); err != nil {
		t.Fatal(err)
	}
	type pgbResult struct {
		out string
		err error
	}
	pgbDone := make(chan pgbResult, 1)
	go func() {
		out, err := p.run(t, 2*time.Minute, pgbench, "-n", "-M", "prepared", "-f", script, "-c", strconv.Itoa(pgbClients),
			"-j", "2", "-t", strconv.Itoa(pgbTx), "-D", "seq=0", "--max-tries=1")
		pgbDone <- pgbResult{out, err}
	}()

	// (b) psql: customers nPgx+1..n with an order each, odd days' events,
	// half the stores; two sessions. Some keys are quoted literals.
	psqlDone := make(chan error, 2)
	for part := range 2 {
		var b strings.Builder
		for id := nPgx + 1 + part; id <= nCustomers; id += 2 {
			key := strconv.Itoa(id)
			if id%3 == 0 {
				key = "'" + key + "'"
			}
			fmt.Fprintf(&b, "INSERT INTO customers (id, name, src) VALUES (%s, 'c%d', 'psql');\n", key, id)
			fmt.Fprintf(&b, "INSERT INTO orders (id, customer_id, total, src) VALUES (%d, %s, %d.75, 'psql');\n", id*10+2, key, id)
		}
		for i, d := range days {
			if i%2 == 1 && i/2%2 == part {
				fmt.Fprintf(&b, "INSERT INTO events (created_at, what, src) VALUES ('%s', 'e%d', 'psql');\n", d.Format(time.DateOnly), i)
			}
		}
		if part == 0 {
			for _, r := range regions {
				for i := range storesPerRegion {
					fmt.Fprintf(&b, "INSERT INTO stores (region, name, src) VALUES ('%s', 'psql-%s-%d', 'psql');\n", r, r, i)
				}
			}
		}
		go func() {
			out, err := psqlScript(ctx, p, psql, b.String())
			if err != nil {
				err = fmt.Errorf("psql part %d: %w\n%s", part, err, out)
			}
			psqlDone <- err
		}()
	}

	// (a) pgx: customers 1..nPgx, each with an order in the same pipelined
	// batch (one shard), even days' events as binary dates, half the stores.
	const pgxWorkers = 8
	conns := make([]*pgx.Conn, pgxWorkers)
	for w := range conns {
		conns[w] = p.connect(t)
	}
	err := inParallel(pgxWorkers, func(w int) error {
		c := conns[w]
		for id := int64(w + 1); id <= nPgx; id += pgxWorkers {
			b := &pgx.Batch{}
			b.Queue("INSERT INTO customers (id, name, src) VALUES ($1, $2, 'pgx')", id, fmt.Sprint("c", id))
			b.Queue("INSERT INTO orders (id, customer_id, total, src) VALUES ($1, $2, $3, 'pgx')", id*10+1, id, float64(id)+0.25)
			octx, ocancel := context.WithTimeout(ctx, opTimeout)
			err := c.SendBatch(octx, b).Close()
			ocancel()
			if err != nil {
				return fmt.Errorf("pgx customer %d: %w", id, err)
			}
		}
		for i := w * 2; i < len(days); i += 2 * pgxWorkers {
			if _, err := c.Exec(ctx, "INSERT INTO events (created_at, what, src) VALUES ($1, $2, 'pgx')", days[i], fmt.Sprint("e", i)); err != nil {
				return fmt.Errorf("pgx event %s: %w", days[i].Format(time.DateOnly), err)
			}
		}
		if w < len(regions) {
			r := regions[w]
			for i := range storesPerRegion {
				if _, err := c.Exec(ctx, "INSERT INTO stores (region, name, src) VALUES ($1, $2, 'pgx')", r, fmt.Sprintf("pgx-%s-%d", r, i)); err != nil {
					return fmt.Errorf("pgx store %s: %w", r, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			logActivity(t, shards)
			p.dumpGoroutines(t)
		}
		t.Fatal(err)
	}
	for range 2 {
		if err := <-psqlDone; err != nil {
			t.Fatal(err)
		}
	}
	res := <-pgbDone
	if res.err != nil {
		t.Fatalf("pgbench: %v\n%s", res.err, res.out)
	}
	processed := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(res.out)
	failed := regexp.MustCompile(`number of failed transactions: (\d+)`).FindStringSubmatch(res.out)
	if processed == nil || failed == nil {
		t.Fatalf("pgbench printed no summary:\n%s", res.out)
	}
	pgbCount, _ := strconv.Atoi(processed[1])
	if failed[1] != "0" || pgbCount != pgbClients*pgbTx {
		t.Fatalf("pgbench: %d processed, %s failed, want %d and 0:\n%s", pgbCount, failed[1], pgbClients*pgbTx, res.out)
	}
	// A region in no list (and no default) is refused, and written nowhere.
	_, err = conns[0].Exec(ctx, "INSERT INTO stores (region, name, src) VALUES ($1, 'nowhere', 'pgx')", "br")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "stores") || !strings.Contains(pgErr.Message, `"br"`) {
		t.Errorf("a store in region br (in no list, no default): %v, want an error naming the table and the value", err)
	} else {
		t.Logf("region br refused: %v", err)
	}
	loaded := time.Since(began)

	// Everything, read on every primary directly.
	type orderRow struct {
		cust int64
		src  string
	}
	custAt := map[int64][]string{}     // id -> shards holding it
	custSrc := map[int64]string{}      // id -> src
	orderAt := map[int64][]string{}    // order id -> shards
	orders := map[int64]orderRow{}     // order id -> row
	ordersOf := map[int64]int{}        // customer -> number of orders
	eventAt := map[string][]string{}   // date -> shards
	storeAt := map[string][]string{}   // store name -> shards
	storeRegion := map[string]string{} // store name -> region
	for _, sh := range shards {
		q := func(sql string) [][]string {
			rows, err := sh.Primary.Query(ctx, sql)
			if err != nil {
				t.Fatalf("%s on %s: %v", sql, sh.Name, err)
			}
			return rows
		}
		for _, r := range q("SELECT id, src FROM customers") {
			id, _ := strconv.ParseInt(r[0], 10, 64)
			custAt[id] = append(custAt[id], sh.Name)
			custSrc[id] = r[1]
		}
		for _, r := range q("SELECT id, customer_id, src FROM orders") {
			id, _ := strconv.ParseInt(r[0], 10, 64)
			cust, _ := strconv.ParseInt(r[1], 10, 64)
			orderAt[id] = append(orderAt[id], sh.Name)
			orders[id] = orderRow{cust, r[2]}
			ordersOf[cust]++
		}
		for _, r := range q("SELECT created_at::text FROM events") {
			eventAt[r[0]] = append(eventAt[r[0]], sh.Name)
		}
		for _, r := range q("SELECT name, region FROM stores") {
			storeAt[r[0]] = append(storeAt[r[0]], sh.Name)
			storeRegion[r[0]] = r[1]
		}
		n, _ := sh.Primary.QueryValue(ctx, "SELECT count(*) FROM customers")
		m, _ := sh.Primary.QueryValue(ctx, "SELECT count(*) FROM orders")
		t.Logf("shard %s: %s customers, %s orders", sh.Name, n, m)
	}

	// Customers: 1..n each exactly once, on locate's shard.
	keys := make([]string, nCustomers)
	for i := range keys {
		keys[i] = strconv.Itoa(i + 1)
	}
	custShard := locateAll(t, p.cfg, "customers", keys)
	orderShard := locateAll(t, p.cfg, "orders", keys)
	if len(custAt) != nCustomers {
		t.Errorf("the shards hold %d distinct customers, want %d", len(custAt), nCustomers)
	}
	perShard := map[string]int{}
	for i, k := range keys {
		id := int64(i + 1)
		at := custAt[id]
		if len(at) != 1 || at[0] != custShard[i] {
			t.Fatalf("customer %s is on %v, locate says %s", k, at, custShard[i])
		}
		perShard[at[0]]++
		wantSrc := "pgx"
		if id > nPgx {
			wantSrc = "psql"
		}
		if custSrc[id] != wantSrc {
			t.Errorf("customer %d came from %s, want %s", id, custSrc[id], wantSrc)
		}
		if orderShard[i] != custShard[i] {
			t.Errorf("orders of customer %d belong on %s, the customer on %s: not co-located", id, orderShard[i], custShard[i])
		}
	}
	for _, sh := range shards {
		// 10,000 keys over three equal rings: each shard's share is far from 0.
		if perShard[sh.Name] < nCustomers/6 {
			t.Errorf("shard %s holds only %d of %d customers", sh.Name, perShard[sh.Name], nCustomers)
		}
	}
	// Orders: exactly the ids each client inserted, each once, with its customer.
	bySrc := map[string]int{}
	for id, r := range orders {
		at := orderAt[id]
		if len(at) != 1 {
			t.Fatalf("order %d is on %v: duplicated", id, at)
		}
		if r.cust < 1 || r.cust > nCustomers || at[0] != orderShard[r.cust-1] {
			t.Fatalf("order %d of customer %d is on %s, locate says %v", id, r.cust, at[0], orderShard[max(0, min(r.cust-1, nCustomers-1))])
		}
		bySrc[r.src]++
		switch r.src {
		case "pgx":
			if id != r.cust*10+1 || r.cust > nPgx {
				t.Errorf("pgx order %d has customer %d", id, r.cust)
			}
		case "psql":
			if id != r.cust*10+2 || r.cust <= nPgx {
				t.Errorf("psql order %d has customer %d", id, r.cust)
			}
		case "pgbench":
			client, seq := (id-pgbBase)/1000000, (id-pgbBase)%1000000
			if client < 0 || client >= pgbClients || seq < 1 || seq > pgbTx {
				t.Errorf("pgbench order id %d is not one pgbench made (client %d, seq %d)", id, client, seq)
			}
		default:
			t.Errorf("order %d has src %q", id, r.src)
		}
	}
	if bySrc["pgx"] != nPgx || bySrc["psql"] != nCustomers-nPgx || bySrc["pgbench"] != pgbCount {
		t.Errorf("orders by client: %v, want pgx %d, psql %d, pgbench %d", bySrc, nPgx, nCustomers-nPgx, pgbCount)
	}
	// Events: every day once, on its range's shard, which locate also names.
	dayKeys := make([]string, len(days))
	for i, d := range days {
		dayKeys[i] = d.Format(time.DateOnly)
	}
	dayShard := locateAll(t, p.cfg, "events", dayKeys)
	if len(eventAt) != len(days) {
		t.Errorf("the shards hold events of %d distinct days, want %d", len(eventAt), len(days))
	}
	for i, d := range days {
		at := eventAt[dayKeys[i]]
		if want := eventShard(d); dayShard[i] != want || len(at) != 1 || at[0] != want {
			t.Errorf("event of %s is on %v; locate says %s; the ranges say %s", dayKeys[i], at, dayShard[i], want)
		}
	}
	// Stores: every name once, on its region's list.
	regionShard := locateAll(t, p.cfg, "stores", regions)
	if len(storeAt) != 2*storesPerRegion*len(regions) {
		t.Errorf("the shards hold %d distinct stores, want %d", len(storeAt), 2*storesPerRegion*len(regions))
	}
	for i, r := range regions {
		if regionShard[i] != storeShard[r] {
			t.Errorf("locate puts region %s on %s, the lists on %s", r, regionShard[i], storeShard[r])
		}
	}
	for name, at := range storeAt {
		if r := storeRegion[name]; len(at) != 1 || at[0] != storeShard[r] {
			t.Errorf("store %s (%s) is on %v, want %s", name, r, at, storeShard[r])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Read everything back through shardwire by key. Reads may go to the
	// replicas: let them catch up first.
	for _, sh := range shards {
		for _, r := range sh.Replicas {
			if err := r.CatchUp(ctx, sh.Primary); err != nil {
				t.Fatal(err)
			}
		}
	}
	readsBegan := time.Now()
	err = inParallel(4, func(w int) error {
		c := conns[w]
		for id := int64(w + 1); id <= nCustomers; id += 4 {
			b := &pgx.Batch{}
			var name string
			var n int
			b.Queue("SELECT name FROM customers WHERE id = $1", id).QueryRow(func(row pgx.Row) error { return row.Scan(&name) })
			b.Queue("SELECT count(*) FROM orders WHERE customer_id = $1", id).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
			octx, ocancel := context.WithTimeout(ctx, opTimeout)
			err := c.SendBatch(octx, b).Close()
			ocancel()
			if err != nil {
				return fmt.Errorf("read customer %d: %w", id, err)
			}
			if name != fmt.Sprint("c", id) || n != ordersOf[id] {
				return fmt.Errorf("customer %d through shardwire: name %q, %d orders; want c%d, %d", id, name, n, id, ordersOf[id])
			}
		}
		for i := w; i < len(days); i += 4 {
			var what string
			if err := c.QueryRow(ctx, "SELECT what FROM events WHERE created_at = $1", days[i]).Scan(&what); err != nil || what != fmt.Sprint("e", i) {
				return fmt.Errorf("event of %s through shardwire: %q, %v", dayKeys[i], what, err)
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			logActivity(t, shards)
			p.dumpGoroutines(t)
		}
		t.Fatal(err)
	}
	for _, r := range regions {
		var n int
		if err := conns[0].QueryRow(ctx, "SELECT count(*) FROM stores WHERE region = $1", r).Scan(&n); err != nil || n != 2*storesPerRegion {
			t.Errorf("stores of %s through shardwire: %d, %v; want %d", r, n, err, 2*storesPerRegion)
		}
	}
	// And with literals through psql, a sample of customers of both kinds.
	var sel strings.Builder
	var want []string
	for id := 7; id <= nCustomers; id += 37 {
		fmt.Fprintf(&sel, "SELECT id, name, (SELECT count(*) FROM orders WHERE customer_id = %d) FROM customers WHERE id = %d;\n", id, id)
		want = append(want, fmt.Sprintf("%d|c%d|%d", id, id, ordersOf[int64(id)]))
	}
	out, err := psqlScript(ctx, p, psql, sel.String(), "-A", "-t")
	if err != nil {
		t.Fatalf("psql reads: %v\n%s", err, out)
	}
	if got := strings.Fields(out); strings.Join(got, "\n") != strings.Join(want, "\n") {
		sort.Strings(got)
		t.Fatalf("psql reads through shardwire returned %d rows, want %d; first: %v", len(got), len(want), got[:min(5, len(got))])
	}
	t.Logf("loaded %d customers, %d orders (pgx %d, psql %d, pgbench %d), %d events, %d stores in %v; read back in %v",
		len(custAt), len(orders), bySrc["pgx"], bySrc["psql"], bySrc["pgbench"], len(eventAt), len(storeAt),
		loaded.Round(time.Millisecond), time.Since(readsBegan).Round(time.Millisecond))
}
