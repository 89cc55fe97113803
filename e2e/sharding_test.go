package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const shardTables = `tables:
  customers: { key: id, type: bigint, strategy: hash }
  orders:    { key: customer_id, type: bigint, strategy: hash }
  stores:    { key: region, type: text, strategy: list, lists: { s0: [eu, uk], s1: [us, ca], s2: [jp] } }
  events:    { key: created_at, type: date, strategy: range,
               ranges: [ { shard: s0, to: 2025-01-01 }, { shard: s1, from: 2025-01-01, to: 2026-01-01 }, { shard: s2, from: 2026-01-01 } ] }
  countries: { strategy: replicated }
`

const shardSchema = `
CREATE TABLE customers (id bigint PRIMARY KEY, name text);
CREATE TABLE orders (id bigserial, customer_id bigint, total numeric, PRIMARY KEY (customer_id, id));
CREATE TABLE stores (region text, name text);
CREATE TABLE events (created_at date, what text);
CREATE TABLE countries (code text PRIMARY KEY, name text);
`

// TestShardedPlacement inserts through shardwire with pgx (binary binds)
// and psql (literals), then checks on every shard directly that each row is
// exactly where shardwire locate says, and reads everything back by key.
func TestShardedPlacement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shards := startShards(t, "shd", []string{"s0", "s1", "s2"}, 1, shardSchema)
	p := startProxy(t, proxyConfig{size: 4, shards: shards, extra: shardTables})
	c := p.connect(t)
	const n = 2000
	for i := 1; i <= n; i++ {
		if _, err := c.Exec(ctx, "INSERT INTO customers (id, name) VALUES ($1, $2)", int64(i), fmt.Sprint("c", i)); err != nil {
			t.Fatalf("insert customer %d: %v", i, err)
		}
	}
	// Orders through psql with literals, several per customer.
	var script strings.Builder
	for i := 1; i <= 300; i++ {
		fmt.Fprintf(&script, "INSERT INTO orders (customer_id, total) VALUES (%d, %d.50);\n", i, i)
	}
	cmd := exec.Command(tool(t, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1")
	cmd.Env = p.pgEnv()
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql inserts: %v\n%s", err, out)
	}
	for _, r := range []struct{ region, name string }{{"eu", "Paris"}, {"uk", "Leeds"}, {"us", "Austin"}, {"ca", "Quebec"}, {"jp", "Osaka"}} {
		if _, err := c.Exec(ctx, "INSERT INTO stores (region, name) VALUES ($1, $2)", r.region, r.name); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"2024-12-31", "2025-01-01", "2025-12-31", "2026-01-01", "2030-06-01"} {
		if _, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO events (created_at, what) VALUES ('%s', 'x')", d)); err != nil {
			t.Fatal(err)
		}
	}
	// Every customer row is on the shard locate names, and only there.
	byShard := map[string]map[string]bool{}
	for i, sh := range shards {
		rows, err := sh.Primary.Query(ctx, "SELECT id FROM customers")
		if err != nil {
			t.Fatal(err)
		}
		byShard[sh.Name] = map[string]bool{}
		for _, r := range rows {
			byShard[sh.Name][r[0]] = true
		}
		t.Logf("shard %s (%s) holds %d customers", sh.Name, shards[i].Primary.Addr(), len(rows))
	}
	keys := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		keys = append(keys, fmt.Sprint(i))
	}
	loc := exec.Command(swBinary, append([]string{"locate", "-c", p.cfg, "customers"}, keys...)...)
	loc.Env = append(p.pgEnv(), "E2E_APP_PASSWORD="+appPassword)
	out, err := loc.Output()
	if err != nil {
		t.Fatalf("locate: %v", err)
	}
	located := strings.Fields(string(out))
	if len(located) != n {
		t.Fatalf("locate printed %d lines for %d keys", len(located), n)
	}
	for i, want := range located {
		for _, sh := range shards {
			has := byShard[sh.Name][keys[i]]
			if has != (sh.Name == want) {
				t.Fatalf("customer %s: on %s = %v, but locate says %s", keys[i], sh.Name, has, want)
			}
		}
	}
	// Orders are co-located with their customers.
	for _, sh := range shards {
		v, err := sh.Primary.QueryValue(ctx, "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id)")
		if err != nil || v != "0" {
			t.Fatalf("shard %s has %s orders without their customer (%v)", sh.Name, v, err)
		}
	}
	// List and range placement, including range edges.
	wantStores := map[string]string{"s0": "2", "s1": "2", "s2": "1"}
	wantEvents := map[string]string{"s0": "1", "s1": "2", "s2": "2"}
	for _, sh := range shards {
		if v, _ := sh.Primary.QueryValue(ctx, "SELECT count(*) FROM stores"); v != wantStores[sh.Name] {
			t.Errorf("shard %s has %s stores, want %s", sh.Name, v, wantStores[sh.Name])
		}
		if v, _ := sh.Primary.QueryValue(ctx, "SELECT count(*) FROM events"); v != wantEvents[sh.Name] {
			t.Errorf("shard %s has %s events, want %s", sh.Name, v, wantEvents[sh.Name])
		}
	}
	// Read back by key through shardwire, text and binary parameters.
	for i := 1; i <= n; i += 7 {
		var name string
		if err := c.QueryRow(ctx, "SELECT name FROM customers WHERE id = $1", int64(i)).Scan(&name); err != nil || name != fmt.Sprint("c", i) {
			t.Fatalf("read customer %d: %q %v", i, name, err)
		}
	}
	var cnt int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE customer_id = 42").Scan(&cnt); err != nil || cnt != 1 {
		t.Fatalf("orders of customer 42 by literal: %d %v", cnt, err)
	}
	// A read with no key runs on every shard, its results merged
	// (e2e/crossshard_test.go has the rest); a transaction crossing shards
	// is refused clearly.
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&cnt); err != nil || cnt != n {
		t.Fatalf("keyless count: %d %v (want %d)", cnt, err, n)
	}
	var pgErr *pgconn.PgError
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var a, b string
	if err := tx.QueryRow(ctx, "SELECT name FROM customers WHERE id = 1").Scan(&a); err != nil {
		t.Fatal(err)
	}
	// Find a key on another shard than customer 1.
	other := ""
	for i, s := range located {
		if s != located[0] {
			other = keys[i]
			break
		}
	}
	err = tx.QueryRow(ctx, "SELECT name FROM customers WHERE id = "+other).Scan(&b)
	if !errorsAs(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, located[0]) {
		t.Fatalf("cross-shard transaction: %v", err)
	}
	_ = tx.Rollback(ctx)
	// Hints route a keyless statement to one shard.
	if err := c.QueryRow(ctx, "/* shardwire: shard=s2 */ SELECT count(*) FROM customers").Scan(&cnt); err != nil || cnt != len(byShard["s2"]) {
		t.Fatalf("hinted count on s2: %d %v (want %d)", cnt, err, len(byShard["s2"]))
	}
	// Replicated table reads work from any shard.
	for _, sh := range shards {
		c2, err := pgx.Connect(ctx, sh.Primary.DSN(appUser, appPassword, appDB))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c2.Exec(ctx, "INSERT INTO countries VALUES ('fr', 'France')"); err != nil {
			t.Fatal(err)
		}
		c2.Close(ctx)
		// Reads may go to the replica: let it catch up.
		if err := sh.Replicas[0].CatchUp(ctx, sh.Primary); err != nil {
			t.Fatal(err)
		}
	}
	var country string
	if err := c.QueryRow(ctx, "SELECT name FROM countries WHERE code = 'fr'").Scan(&country); err != nil || country != "France" {
		t.Fatalf("replicated read: %q %v", country, err)
	}
}

func errorsAs(err error, target **pgconn.PgError) bool { return errors.As(err, target) }
