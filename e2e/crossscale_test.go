package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shardwire/shardwire/pgcluster"
)

// scaleSchema is shardSchema with more columns, so that every aggregate
// has an int, a numeric and a boolean to work on, and orders get explicit
// ids (a bigserial would number rows differently on each shard than on
// the oracle).
const scaleSchema = `
CREATE TABLE customers (id bigint PRIMARY KEY, name text, country text);
CREATE TABLE orders (id bigint, customer_id bigint, total numeric, qty int, paid boolean, PRIMARY KEY (customer_id, id));
CREATE TABLE stores (region text, name text);
CREATE TABLE events (created_at date, what text);
CREATE TABLE countries (code text PRIMARY KEY, name text);
`

// scaleSetup starts three shards s0, s1 and s2 in parallel, creates
// schema on each and, when withOracle is set, in an "oracle" database on
// s0's primary (one server holding every row), then starts shardwire with
// tables as the tables section. Unlike crossShardSetup it loads nothing.
func scaleSetup(t *testing.T, prefix, schema, tables string, withOracle bool) (*proxyProc, *pgx.Conn, []*pgcluster.Shard) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := pgcluster.StartShards(ctx, []string{prefix + "s0", prefix + "s1", prefix + "s2"}, 0, pgcluster.Options{
		Users:      []pgcluster.User{{Name: appUser, Password: appPassword}, {Name: opsUser, Password: opsPassword}},
		Database:   appDB,
		AuthMethod: "scram-sha-256",
		Logf:       t.Logf,
	})
	if err != nil {
		t.Fatalf("start shards: %v", err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	shards := cl.Shards
	for i, sh := range shards {
		sh.Name = fmt.Sprintf("s%d", i)
		c, err := pgx.Connect(ctx, sh.Primary.DSN(appUser, appPassword, appDB))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Exec(ctx, schema)
		c.Close(ctx)
		if err != nil {
			t.Fatalf("schema on %s: %v", sh.Name, err)
		}
	}
	var oracle *pgx.Conn
	if withOracle {
		if err := shards[0].Primary.Exec(ctx, "CREATE DATABASE oracle OWNER "+appUser); err != nil {
			t.Fatal(err)
		}
		oracle, err = pgx.Connect(ctx, shards[0].Primary.DSN(appUser, appPassword, "oracle"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { oracle.Close(context.Background()) })
		if _, err := oracle.Exec(ctx, schema); err != nil {
			t.Fatal(err)
		}
	}
	p := startProxy(t, proxyConfig{size: 4, shards: shards, extra: tables})
	return p, oracle, shards
}

// scalePsqlScript feeds script to psql on stdin and fails the test on error.
func scalePsqlScript(t *testing.T, env []string, script string) {
	t.Helper()
	cmd := exec.Command(tool(t, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1")
	cmd.Env = env
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql script: %v\n%.2000s", err, out)
	}
}

// scaleRowsCols runs a query and renders each value of each row as text: NULL
// as "NULL", numeric in Postgres' text form (keeping its scale), the rest
// with fmt.
func scaleRowsCols(ctx context.Context, c *pgx.Conn, sql string, args ...any) ([][]string, error) {
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			switch v := v.(type) {
			case nil:
				row[i] = "NULL"
			case pgtype.Numeric:
				s, err := v.Value()
				if err != nil {
					return nil, err
				}
				row[i] = fmt.Sprint(s)
			case time.Time:
				row[i] = v.Format(time.DateOnly)
			default:
				row[i] = fmt.Sprint(v)
			}
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// scalePsqlRows splits psql's unaligned output into rows of columns.
func scalePsqlRows(out string) [][]string {
	out = strings.TrimRight(out, "\n")
	if out == "" {
		return nil
	}
	var rows [][]string
	for _, line := range strings.Split(out, "\n") {
		rows = append(rows, strings.Split(line, "|"))
	}
	return rows
}

// scaleQuery is one query compared with the oracle.
type scaleQuery struct {
	sql  string
	args []any
	// ordered: ORDER BY fixes the order of whole rows. keyCols > 0: ORDER
	// BY fixes the order of the first keyCols columns only (ties differ
	// in the others), so those are compared in order and whole rows as a
	// multiset, unless cut (LIMIT may cut through a tie, so which tied
	// rows come back is not fixed). Otherwise rows are a multiset.
	ordered bool
	keyCols int
	cut     bool
}

// diffRows compares got with want as q says and describes the first
// difference, or returns "".
func (q scaleQuery) diffRows(got, want [][]string) string {
	join := func(rows [][]string, n int) []string {
		out := make([]string, len(rows))
		for i, r := range rows {
			if n > 0 && n < len(r) {
				r = r[:n]
			}
			out[i] = strings.Join(r, "|")
		}
		return out
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d rows, want %d; got %.300q, want %.300q", len(got), len(want), join(got, 0), join(want, 0))
	}
	check := func(what string, g, w []string) string {
		for i := range g {
			if g[i] != w[i] {
				return fmt.Sprintf("%s: row %d of %d is %q, want %q", what, i, len(g), g[i], w[i])
			}
		}
		return ""
	}
	g, w := join(got, 0), join(want, 0)
	if q.ordered {
		return check("in order", g, w)
	}
	if q.keyCols > 0 {
		if d := check(fmt.Sprintf("first %d columns in order", q.keyCols), join(got, q.keyCols), join(want, q.keyCols)); d != "" || q.cut {
			return d
		}
	}
	slices.Sort(g)
	slices.Sort(w)
	return check("as a multiset", g, w)
}

// scaleOrder is one generated order; empty strings are NULLs.
type scaleOrder struct {
	id, customer     int64
	total, qty, paid string
}

// copyRow is the order as pgx's binary COPY wants it.
func (o scaleOrder) copyRow(t *testing.T) []any {
	row := []any{o.id, o.customer, nil, nil, nil}
	if o.total != "" {
		var n pgtype.Numeric
		if err := n.Scan(o.total); err != nil {
			t.Fatalf("numeric %q: %v", o.total, err)
		}
		row[2] = n
	}
	if o.qty != "" {
		q, _ := strconv.Atoi(o.qty)
		row[3] = int32(q)
	}
	if o.paid != "" {
		row[4] = o.paid == "t"
	}
	return row
}

// textLine is the order in COPY's text format.
func (o scaleOrder) textLine() string {
	n := func(s string) string {
		if s == "" {
			return `\N`
		}
		return s
	}
	return fmt.Sprintf("%d\t%d\t%s\t%s\t%s\n", o.id, o.customer, n(o.total), n(o.qty), n(o.paid))
}

// TestCrossShardQueries10k loads 3,000 customers and 10,000 orders with
// COPY (CSV and text through psql, binary through pgx; split by
// shardwire), with NULL totals, quantities and flags, many equal totals,
// customers without orders and tables whose rows are all on one shard,
// and checks that every cross-shard query returns what one server holding
// every row returns, row by row: through pgx (extended protocol, binds,
// binary results) and psql (simple protocol, text). Constructs that
// cannot be merged exactly are refused with 0A000 naming them.
func TestCrossShardQueries10k(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	p, oracle, shards := scaleSetup(t, "x10k", scaleSchema, shardTables, true)
	c := p.connect(t)
	targets := []struct {
		name string
		conn *pgx.Conn
		env  []string
	}{{"shardwire", c, p.pgEnv()}, {"oracle", oracle, oracleEnv(p, oracle)}}

	rng := rand.New(rand.NewSource(10_000))
	// Customers 1..3000: 36 two-letter names (many ties), some NULL,
	// every 50th one of a few testing byte order; countries of which one
	// (xx) is not in the replicated table, some NULL. Customers
	// 2501..3000 get no orders.
	var custCSV strings.Builder
	custCSV.WriteString("COPY customers (name, id, country) FROM STDIN WITH (FORMAT csv);\n")
	countries := []string{"fr", "de", "us", "jp", "xx", ""}
	for id := 1; id <= 3000; id++ {
		name := "" // NULL
		switch {
		case id%50 == 0:
			// Byte order (the C collation) beyond lowercase ASCII; "" is
			// the empty string, not NULL.
			name = []string{`""`, "Zz", "é", "a b", "abé", "~", "ab", "A"}[id/50%8]
		case rng.Intn(20) > 0:
			name = fmt.Sprintf("%c%c", 'a'+rng.Intn(6), 'a'+rng.Intn(6))
		}
		fmt.Fprintf(&custCSV, "%s,%d,%s\n", name, id, countries[rng.Intn(len(countries))])
	}
	custCSV.WriteString("\\.\n")
	// Orders 1..10000 of customers 1..2500: totals 0.00..19.99 (about
	// five orders per value), a few with three decimals (sums and
	// averages must keep the largest scale of any shard), 10% NULL; the
	// last three, of customer 77, are the only ones above 1000.
	var orders []scaleOrder
	for id := int64(1); id <= 10_000; id++ {
		o := scaleOrder{id: id, customer: 1 + rng.Int63n(2500)}
		switch {
		case id > 9997:
			o.customer, o.total = 77, fmt.Sprintf("%d.50", 5000+id%10)
		case id%997 == 0:
			o.total = fmt.Sprintf("%d.%03d", rng.Intn(20), 10*rng.Intn(100)+5)
		case rng.Intn(10) > 0:
			o.total = fmt.Sprintf("%d.%02d", rng.Intn(20), rng.Intn(100))
		}
		if rng.Intn(12) > 0 {
			o.qty = strconv.Itoa(1 + rng.Intn(5))
		}
		if rng.Intn(10) > 0 {
			o.paid = map[bool]string{true: "t", false: "f"}[rng.Intn(3) > 0]
		}
		orders = append(orders, o)
	}
	var binRows [][]any
	var ordText strings.Builder
	ordText.WriteString("COPY orders (id, customer_id, total, qty, paid) FROM STDIN;\n")
	for _, o := range orders {
		if o.id <= 5000 {
			binRows = append(binRows, o.copyRow(t))
		} else {
			ordText.WriteString(o.textLine())
		}
	}
	ordText.WriteString("\\.\n")
	var small strings.Builder
	// Stores only in eu and uk (all on s0), events only in 2025 (all on s1).
	for i, r := range []string{"eu", "uk", "eu", "uk", "eu"} {
		fmt.Fprintf(&small, "INSERT INTO stores (region, name) VALUES ('%s', 'store %d');\n", r, i%3)
	}
	for i := 0; i < 40; i++ {
		day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, (i*37)%365)
		fmt.Fprintf(&small, "INSERT INTO events (created_at, what) VALUES ('%s', 'e%d');\n", day.Format(time.DateOnly), i%6)
	}
	small.WriteString("INSERT INTO countries (code, name) VALUES ('fr', 'France'), ('de', 'Germany'), ('us', 'United States'), ('jp', 'Japan');\n")
	for _, tg := range targets {
		scalePsqlScript(t, tg.env, custCSV.String())
		n, err := tg.conn.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"id", "customer_id", "total", "qty", "paid"}, pgx.CopyFromRows(binRows))
		if err != nil || n != int64(len(binRows)) {
			t.Fatalf("binary COPY into %s: %d rows, %v", tg.name, n, err)
		}
		scalePsqlScript(t, tg.env, ordText.String())
		scalePsqlScript(t, tg.env, small.String())
	}
	// The data is where the test means it to be: all orders loaded,
	// stores only on s0, events only on s1, countries everywhere.
	perShard := map[string]string{}
	for _, sh := range shards {
		v, err := sh.Primary.QueryValue(ctx, "SELECT format('%s/%s/%s/%s/%s', (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), (SELECT count(*) FROM stores), (SELECT count(*) FROM events), (SELECT count(*) FROM countries))")
		if err != nil {
			t.Fatal(err)
		}
		perShard[sh.Name] = v
	}
	t.Logf("rows per shard (customers/orders/stores/events/countries): %v; loaded after %v", perShard, time.Since(start).Round(time.Millisecond))
	var nOrders, nCust int
	for _, sh := range shards {
		f := strings.Split(perShard[sh.Name], "/")
		o, _ := strconv.Atoi(f[1])
		cu, _ := strconv.Atoi(f[0])
		nOrders += o
		nCust += cu
		if o < 2000 {
			t.Errorf("shard %s holds only %d orders: the data is not spread", sh.Name, o)
		}
		wantStores, wantEvents := "0", "0"
		if sh.Name == "s0" {
			wantStores = "5"
		}
		if sh.Name == "s1" {
			wantEvents = "40"
		}
		if f[2] != wantStores || f[3] != wantEvents || f[4] != "4" {
			t.Errorf("shard %s: stores/events/countries %s/%s/%s, want %s/%s/4", sh.Name, f[2], f[3], f[4], wantStores, wantEvents)
		}
	}
	if nOrders != 10_000 || nCust != 3000 {
		t.Fatalf("shards hold %d orders and %d customers, want 10000 and 3000", nOrders, nCust)
	}

	queries := []scaleQuery{
		// Every aggregate, without and with GROUP BY, on int, numeric and bool.
		{sql: "SELECT count(*), count(total), count(qty), sum(total), sum(qty), avg(total), avg(qty), min(total), max(total), min(qty), max(qty), bool_and(paid), bool_or(paid) FROM orders", ordered: true},
		{sql: "SELECT customer_id, count(*), count(total), sum(total), avg(total), min(total), max(total), sum(qty), avg(qty), min(qty), max(qty), bool_and(paid), bool_or(paid) FROM orders GROUP BY customer_id ORDER BY customer_id", ordered: true},
		{sql: "SELECT customer_id, count(*), sum(total), avg(qty) FROM orders GROUP BY customer_id"},
		{sql: "SELECT paid, count(*), count(paid), sum(qty), avg(total), min(total), max(total) FROM orders GROUP BY paid ORDER BY paid NULLS FIRST", ordered: true},
		{sql: "SELECT qty, avg(total), avg(qty), sum(total), bool_and(paid), bool_or(paid) FROM orders GROUP BY qty ORDER BY qty DESC", ordered: true},
		{sql: "SELECT qty, paid, count(*) FROM orders GROUP BY qty, paid ORDER BY 3 DESC, 1 NULLS FIRST, 2 NULLS LAST", ordered: true},
		{sql: "SELECT count(*) FILTER (WHERE paid), sum(total) FILTER (WHERE qty > 2), max(total) FILTER (WHERE NOT paid) FROM orders", ordered: true},
		// HAVING, applied after the merge.
		{sql: "SELECT qty, count(*) FROM orders GROUP BY qty HAVING count(*) > 100 ORDER BY qty DESC NULLS LAST", ordered: true},
		{sql: "SELECT customer_id, sum(total) FROM orders GROUP BY customer_id HAVING sum(total) > 50 AND count(*) >= 5 ORDER BY 2 DESC, 1", ordered: true},
		{sql: "SELECT customer_id, min(total), max(total) FROM orders GROUP BY customer_id HAVING bool_and(paid) = true AND max(total) < 10 ORDER BY customer_id", ordered: true},
		// ORDER BY over all 10,000 rows: ties broken by id, NULLs both ends.
		{sql: "SELECT id, customer_id, total FROM orders ORDER BY total, id", ordered: true},
		{sql: "SELECT id, total, qty FROM orders ORDER BY total DESC, qty NULLS FIRST, id DESC", ordered: true},
		{sql: "SELECT id, total FROM orders ORDER BY total NULLS FIRST, id DESC LIMIT 50", ordered: true},
		{sql: "SELECT id, total FROM orders ORDER BY total DESC NULLS LAST, id LIMIT 25", ordered: true},
		// Ties not broken: the sort key in order, the rows as a multiset.
		{sql: "SELECT total, paid, id FROM orders ORDER BY total DESC", keyCols: 1},
		{sql: "SELECT qty, id FROM orders ORDER BY qty NULLS FIRST LIMIT 777", keyCols: 1, cut: true},
		{sql: "SELECT total FROM orders ORDER BY total LIMIT 40", ordered: true},
		// LIMIT/OFFSET across shard boundaries.
		{sql: "SELECT id, customer_id FROM orders ORDER BY id OFFSET 3333 LIMIT 7", ordered: true},
		{sql: "SELECT id FROM orders ORDER BY id LIMIT 10 OFFSET 9995", ordered: true},
		{sql: "SELECT id FROM orders ORDER BY id OFFSET 20000", ordered: true},
		{sql: "SELECT * FROM orders ORDER BY customer_id, id LIMIT 100 OFFSET 5000", ordered: true},
		{sql: "SELECT id, total * 2 AS dbl FROM orders WHERE qty IS NULL ORDER BY dbl NULLS FIRST, id", ordered: true},
		// DISTINCT.
		{sql: "SELECT DISTINCT customer_id FROM orders ORDER BY customer_id", ordered: true},
		{sql: "SELECT DISTINCT total FROM orders"},
		{sql: "SELECT DISTINCT paid, qty FROM orders ORDER BY qty NULLS FIRST, paid DESC", ordered: true},
		{sql: "SELECT DISTINCT name FROM customers ORDER BY name DESC NULLS LAST", ordered: true},
		// Text order (C collation) with ties and NULLs; hidden sort columns.
		{sql: "SELECT name FROM customers ORDER BY name NULLS FIRST, id DESC LIMIT 15", ordered: true},
		{sql: "SELECT id, name FROM customers ORDER BY name DESC NULLS LAST, id OFFSET 1000 LIMIT 30", ordered: true},
		{sql: "SELECT name, count(*) FROM customers GROUP BY name ORDER BY count(*) DESC, name NULLS FIRST LIMIT 20", ordered: true},
		{sql: "SELECT avg(id), sum(id), min(name), max(name), count(name), count(*) FROM customers", ordered: true},
		{sql: "SELECT * FROM customers"},
		// Joins of co-located tables on the key, and with the replicated table.
		{sql: "SELECT c.id, c.name, o.id, o.total FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.total > 18 ORDER BY o.total DESC, o.id", ordered: true},
		{sql: "SELECT c.country, count(*), sum(o.total), avg(o.qty) FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.country ORDER BY c.country NULLS FIRST", ordered: true},
		{sql: "SELECT c.id, count(o.id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id HAVING count(o.id) = 0 ORDER BY c.id", ordered: true},
		{sql: "SELECT c.id, c.name FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id) ORDER BY c.id LIMIT 40 OFFSET 480", ordered: true},
		{sql: "SELECT k.name, count(*) FROM customers c JOIN countries k ON k.code = c.country GROUP BY k.name ORDER BY 2 DESC, 1", ordered: true},
		{sql: "SELECT o.id, k.name, o.total FROM orders o JOIN customers c ON c.id = o.customer_id JOIN countries k ON k.code = c.country WHERE o.qty = 3"},
		// Empty shards: tables with rows on one shard only, and a WHERE
		// only one shard's rows (or none) match.
		{sql: "SELECT created_at, what FROM events ORDER BY created_at DESC, what", ordered: true},
		{sql: "SELECT what, count(*), min(created_at), max(created_at) FROM events GROUP BY what ORDER BY what", ordered: true},
		{sql: "SELECT region, name, count(*) FROM stores GROUP BY region, name ORDER BY region DESC, name", ordered: true},
		{sql: "SELECT id, customer_id, total FROM orders WHERE total > 1000 ORDER BY total DESC", ordered: true},
		{sql: "SELECT count(*), sum(total), avg(total), avg(qty), min(total), max(qty), bool_and(paid), bool_or(paid) FROM orders WHERE total < 0", ordered: true},
		{sql: "SELECT customer_id, count(*) FROM orders WHERE total < 0 GROUP BY customer_id", ordered: true},
		{sql: "SELECT id FROM orders WHERE total < 0 ORDER BY id LIMIT 5", ordered: true},
		// A key set spanning some shards.
		{sql: "SELECT customer_id, sum(total), count(*) FROM orders WHERE customer_id IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10) GROUP BY customer_id ORDER BY 1", ordered: true},
		// More shapes: hidden sort and group columns, subqueries, CTEs,
		// FETCH FIRST, constants.
		{sql: "SELECT sum(qty) FROM orders GROUP BY customer_id ORDER BY customer_id LIMIT 30 OFFSET 700", ordered: true},
		{sql: "SELECT qty FROM orders GROUP BY qty ORDER BY count(*) DESC, qty", ordered: true},
		{sql: "SELECT avg(total) FROM orders GROUP BY qty ORDER BY avg(total)", ordered: true},
		{sql: "SELECT customer_id % 10 AS bucket, count(*), every(paid) FROM orders GROUP BY bucket ORDER BY bucket", ordered: true},
		{sql: "SELECT customer_id, count(total) FROM orders GROUP BY customer_id HAVING count(total) = 0 ORDER BY 1", ordered: true},
		{sql: "SELECT id FROM orders ORDER BY total + 0 DESC NULLS LAST, id LIMIT 5", ordered: true},
		{sql: "SELECT count(*), sum(total) FROM (SELECT * FROM orders WHERE qty > 2) s", ordered: true},
		{sql: "SELECT id, total FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE name = 'ab') ORDER BY id", ordered: true},
		{sql: "WITH x AS (SELECT customer_id, total FROM orders) SELECT customer_id, sum(total) FROM x GROUP BY 1 ORDER BY 1 LIMIT 5", ordered: true},
		{sql: "SELECT id FROM orders ORDER BY id DESC OFFSET 5 ROWS FETCH FIRST 3 ROWS ONLY", ordered: true},
		{sql: "SELECT NULL::int AS x, 'k' AS k, id FROM orders ORDER BY x, id LIMIT 3", ordered: true},
		{sql: "SELECT count(*), count(1), count(NULL::int), sum(1) FROM orders WHERE false", ordered: true},
		{sql: "SELECT count(*) FROM orders LIMIT 0", ordered: true},
		{sql: "SELECT id FROM orders ORDER BY id LIMIT ALL OFFSET 9990", ordered: true},
		{sql: "SELECT country, min(name), max(name), count(name) FROM customers GROUP BY country ORDER BY 1", ordered: true},
		{sql: "SELECT DISTINCT country FROM customers"},
		{sql: "SELECT c.name, o.total FROM orders o, customers c WHERE o.customer_id = c.id AND c.name = 'ab' ORDER BY 2 DESC NULLS FIRST, 1", ordered: true},
		{sql: "SELECT id FROM customers ORDER BY name COLLATE \"C\" DESC, id LIMIT 3", ordered: true},
		{sql: "SELECT min(created_at), max(created_at), count(*) FROM events WHERE created_at > '2025-06-01'", ordered: true},
		// Extended protocol with $n parameters.
		{sql: "SELECT id, total FROM orders WHERE total >= $1 AND qty = $2 ORDER BY total DESC, id LIMIT $3 OFFSET $4", args: []any{"10.5", int32(2), int64(11), int64(333)}, ordered: true},
		{sql: "SELECT customer_id, sum(total), avg(qty) FROM orders WHERE paid = $1 GROUP BY customer_id HAVING count(*) > 4 ORDER BY customer_id", args: []any{true}, ordered: true},
		{sql: "SELECT count(*), count(name) FROM customers WHERE name LIKE $1 OR id > $2", args: []any{"a%", int64(2990)}, ordered: true},
		{sql: "SELECT customer_id, id, total FROM orders WHERE customer_id = ANY($1) ORDER BY 1, 2", args: []any{[]int64{77, 78, 79, 2600, 1234}}, ordered: true},
		{sql: "SELECT id FROM orders ORDER BY id LIMIT $1 OFFSET $2", args: []any{7, 3333}, ordered: true},
		{sql: "SELECT id FROM orders ORDER BY id LIMIT $1 OFFSET $2", args: []any{5, 9998}, ordered: true},
		{sql: "SELECT id, name FROM customers WHERE id % $1 = 0 ORDER BY name NULLS FIRST, id", args: []any{int64(50)}, ordered: true},
		// Result formats chosen per column, text and binary mixed.
		{sql: "SELECT customer_id, sum(total), avg(qty), bool_or(paid) FROM orders GROUP BY customer_id ORDER BY 2 DESC NULLS LAST, 1 LIMIT 30",
			args: []any{pgx.QueryResultFormats{pgx.TextFormatCode, pgx.BinaryFormatCode, pgx.TextFormatCode, pgx.BinaryFormatCode}}, ordered: true},
		{sql: "SELECT id, total, qty, paid FROM orders ORDER BY total DESC NULLS LAST, id LIMIT 20 OFFSET 4990",
			args: []any{pgx.QueryResultFormats{pgx.TextFormatCode}}, ordered: true},
		{sql: "SELECT created_at, count(*) FROM events GROUP BY created_at ORDER BY created_at DESC LIMIT $1",
			args: []any{pgx.QueryResultFormats{pgx.BinaryFormatCode}, 5}, ordered: true},
	}
	for _, q := range queries {
		want, err := scaleRowsCols(ctx, oracle, q.sql, q.args...)
		if err != nil {
			t.Fatalf("oracle %q: %v", q.sql, err)
		}
		got, err := scaleRowsCols(ctx, c, q.sql, q.args...)
		if err != nil {
			t.Errorf("%q through shardwire (pgx): %v", q.sql, err)
		} else if d := q.diffRows(got, want); d != "" {
			t.Errorf("%q (pgx): %s", q.sql, d)
		}
		if len(q.args) > 0 {
			continue
		}
		gotText := scalePsqlRows(psqlOut(t, p.pgEnv(), q.sql))
		wantText := scalePsqlRows(psqlOut(t, oracleEnv(p, oracle), q.sql))
		if d := q.diffRows(gotText, wantText); d != "" {
			t.Errorf("%q (psql): %s", q.sql, d)
		}
	}
	t.Logf("%d queries compared after %v", len(queries), time.Since(start).Round(time.Millisecond))

	// Numeric edge values, on customers that had no orders: NaN and
	// ±Infinity (ordered and aggregated as Postgres does), and ids whose
	// sum does not fit in 64 bits (sum(bigint) is numeric).
	var special strings.Builder
	special.WriteString("INSERT INTO orders (id, customer_id, total, qty, paid) VALUES ")
	for i, v := range []string{"'NaN'", "'Infinity'", "'-Infinity'", "0.000", "-0.5", "1e-20", "123456789012345678901234567890.123", "NULL"} {
		if i > 0 {
			special.WriteString(", ")
		}
		fmt.Fprintf(&special, "(%d, %d, %s, %d, %v)", 9_000_000_000_000_000_001+int64(i), 2501+i, v, 2_000_000_000-i, i%2 == 0)
	}
	for _, tg := range targets {
		if _, err := tg.conn.Exec(ctx, special.String()); err != nil {
			t.Fatalf("special orders into %s: %v", tg.name, err)
		}
	}
	for _, q := range []scaleQuery{
		{sql: "SELECT id, total FROM orders WHERE customer_id > 2500 ORDER BY total, id", ordered: true},
		{sql: "SELECT id, total FROM orders WHERE customer_id > 2500 ORDER BY total DESC NULLS LAST, id", ordered: true},
		{sql: "SELECT sum(id), avg(id), min(id), max(id), sum(qty), avg(qty), count(*) FROM orders WHERE customer_id > 2500", ordered: true},
		{sql: "SELECT sum(total), avg(total), min(total), max(total) FROM orders WHERE customer_id > 2500 AND total <> 'NaN'", ordered: true},
		{sql: "SELECT sum(total), avg(total), min(total), max(total) FROM orders WHERE customer_id > 2500", ordered: true},
		{sql: "SELECT sum(total), avg(total) FROM orders WHERE customer_id > 2503", ordered: true},
		{sql: "SELECT paid, sum(total), avg(total), sum(id) FROM orders WHERE customer_id > 2500 GROUP BY paid ORDER BY paid", ordered: true},
		{sql: "SELECT sum(total), avg(total), max(total), min(id), sum(qty) FROM orders", ordered: true},
		{sql: "SELECT DISTINCT total FROM orders WHERE customer_id > 2500 ORDER BY total", ordered: true},
	} {
		want, err := scaleRowsCols(ctx, oracle, q.sql)
		if err != nil {
			t.Fatalf("oracle %q: %v", q.sql, err)
		}
		got, err := scaleRowsCols(ctx, c, q.sql)
		if err != nil {
			t.Errorf("%q through shardwire (pgx): %v", q.sql, err)
		} else if d := q.diffRows(got, want); d != "" {
			t.Errorf("%q (pgx): %s", q.sql, d)
		}
		gotText := scalePsqlRows(psqlOut(t, p.pgEnv(), q.sql))
		wantText := scalePsqlRows(psqlOut(t, oracleEnv(p, oracle), q.sql))
		if d := q.diffRows(gotText, wantText); d != "" {
			t.Errorf("%q (psql): %s", q.sql, d)
		}
	}

	// What cannot be merged exactly is refused with 0A000 naming the
	// construct, in both protocols, and the session goes on.
	for _, q := range []struct{ sql, what string }{
		{"SELECT id, row_number() OVER (ORDER BY id) FROM orders", "window"},
		{"SELECT customer_id, sum(total) OVER (PARTITION BY customer_id) FROM orders", "window"},
		{"SELECT string_agg(name, ',') FROM customers", "string_agg"},
		{"SELECT count(DISTINCT customer_id) FROM orders", "DISTINCT"},
		{"SELECT c.id, o.total FROM customers c JOIN orders o ON o.id = c.id", "join"},
		{"SELECT c.name, o.total FROM customers c, orders o WHERE o.qty = c.id", "join"},
		{"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total) FROM orders", "percentile_cont"},
		{"SELECT customer_id FROM orders UNION SELECT id FROM customers", "UNION"},
	} {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
			_, err := scaleRowsCols(ctx, c, q.sql, mode)
			var pgErr *pgconn.PgError
			if !errorsAs(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(strings.ToLower(pgErr.Message), strings.ToLower(q.what)) {
				t.Errorf("%q (mode %v): want 0A000 naming %q, got %v", q.sql, mode, q.what, err)
			}
		}
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE total IS NULL").Scan(&n); err != nil || n < 500 {
		t.Fatalf("after the refusals: %d NULL totals, %v", n, err)
	}
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

// scaleLocate asks `shardwire locate` for the shard of each key of table,
// in batches, and returns key → shard.
func scaleLocate(t *testing.T, p *proxyProc, table string, keys []string) map[string]string {
	t.Helper()
	out := make(map[string]string, len(keys))
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 10_000)]
		keys = keys[len(batch):]
		cmd := exec.Command(swBinary, append([]string{"locate", "-c", p.cfg, table}, batch...)...)
		// GORACE: a -race binary otherwise sleeps a second at exit.
		cmd.Env = append(os.Environ(), "E2E_APP_PASSWORD="+appPassword, "GORACE=atexit_sleep_ms=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		res, err := cmd.Output()
		if err != nil {
			t.Fatalf("locate %s: %v\n%s", table, err, stderr.String())
		}
		located := strings.Fields(string(res))
		if len(located) != len(batch) {
			t.Fatalf("locate %s printed %d shards for %d keys", table, len(located), len(batch))
		}
		for i, k := range batch {
			out[k] = located[i]
		}
	}
	return out
}

// scaleCSVField quotes s for COPY's CSV format; nil is NULL (an empty,
// unquoted field).
func scaleCSVField(s *string) string {
	if s == nil {
		return ""
	}
	return `"` + strings.ReplaceAll(*s, `"`, `""`) + `"`
}

// scaleBinaryTuples splits COPY's binary format into its tuples, sorted,
// after checking the one signature and the one trailer.
func scaleBinaryTuples(t *testing.T, b []byte) []string {
	t.Helper()
	sig := []byte("PGCOPY\n\xff\r\n\x00")
	if !bytes.HasPrefix(b, sig) || len(b) < 19 {
		t.Fatalf("binary COPY: no signature in %.40q", b)
	}
	ext := binary.BigEndian.Uint32(b[15:19])
	b = b[19+ext:]
	var tuples []string
	for {
		if len(b) < 2 {
			t.Fatalf("binary COPY: truncated after %d tuples", len(tuples))
		}
		nf := int16(binary.BigEndian.Uint16(b))
		if nf == -1 {
			if len(b) != 2 {
				t.Fatalf("binary COPY: %d bytes after the trailer (a second stream?)", len(b)-2)
			}
			break
		}
		off := 2
		for i := 0; i < int(nf); i++ {
			if len(b) < off+4 {
				t.Fatalf("binary COPY: truncated tuple %d", len(tuples))
			}
			l := int32(binary.BigEndian.Uint32(b[off:]))
			off += 4
			if l > 0 {
				off += int(l)
			}
		}
		if off > len(b) {
			t.Fatalf("binary COPY: truncated tuple %d", len(tuples))
		}
		tuples = append(tuples, string(b[:off]))
		b = b[off:]
	}
	slices.Sort(tuples)
	return tuples
}

// TestCopy100k copies 100,000 customers through shardwire in CSV (psql;
// the key not the first column; names with commas, quotes, newlines,
// tabs, backslashes, non-ASCII, NULL and empty strings) and 100,000
// orders in binary (pgx CopyFrom), then checks on every shard's primary
// that each row is on the shard `shardwire locate` names, only there, and
// intact; then that COPY … TO STDOUT through shardwire (text, CSV with a
// header, a query, binary) returns every row, as one server holding them
// all does.
func TestCopy100k(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	p, oracle, shards := scaleSetup(t, "c100k", scaleSchema, shardTables, true)
	c := p.connect(t)
	const n = 100_000
	rng := rand.New(rand.NewSource(100_000))
	names := make([]*string, n+1)
	var script strings.Builder
	script.WriteString("COPY customers (name, country, id) FROM STDIN WITH (FORMAT csv);\n")
	for _, id := range rng.Perm(n) {
		id++
		var name *string
		s := fmt.Sprintf("c%d", id)
		switch {
		case id%29 == 0:
		case id%31 == 0:
			s = ""
			name = &s
		case id%7 == 0:
			s += ", with a comma"
		case id%11 == 0:
			s = `say "hi" ` + s
		case id%13 == 0:
			s += "\nsecond line\r\n"
		case id%17 == 0:
			s += "\ttab"
		case id%19 == 0:
			s = `back\slash\N ` + s
		case id%23 == 0:
			s += " é ü 東京"
		}
		if id%29 != 0 {
			name = &s
		}
		names[id] = name
		country := []string{"fr", "de", ""}[id%3]
		fmt.Fprintf(&script, "%s,%s,%d\n", scaleCSVField(name), country, id)
	}
	script.WriteString("\\.\n")
	orders := make([]scaleOrder, 0, n)
	var binRows [][]any
	for id := int64(1); id <= n; id++ {
		o := scaleOrder{id: id, customer: 1 + rng.Int63n(n)}
		if rng.Intn(10) > 0 {
			o.total = fmt.Sprintf("%d.%02d", rng.Intn(1000), rng.Intn(100))
		}
		if rng.Intn(10) > 0 {
			o.qty = strconv.Itoa(rng.Intn(9))
		}
		if rng.Intn(10) > 0 {
			o.paid = map[bool]string{true: "t", false: "f"}[rng.Intn(2) > 0]
		}
		orders = append(orders, o)
		binRows = append(binRows, o.copyRow(t))
	}
	loadStart := time.Now()
	scalePsqlScript(t, p.pgEnv(), script.String())
	csvTime := time.Since(loadStart)
	loadStart = time.Now()
	got, err := c.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"id", "customer_id", "total", "qty", "paid"}, pgx.CopyFromRows(binRows))
	if err != nil || got != n {
		t.Fatalf("binary COPY of %d orders through shardwire: %d, %v", n, got, err)
	}
	binTime := time.Since(loadStart)
	t.Logf("COPY through shardwire: %d customers (CSV, psql) in %v, %d orders (binary, pgx) in %v", n, csvTime.Round(time.Millisecond), n, binTime.Round(time.Millisecond))
	scalePsqlScript(t, oracleEnv(p, oracle), script.String())
	if got, err := oracle.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"id", "customer_id", "total", "qty", "paid"}, pgx.CopyFromRows(binRows)); err != nil || got != n {
		t.Fatalf("binary COPY into the oracle: %d, %v", got, err)
	}

	// Every row on its located shard, only there, and intact.
	keys := make([]string, n)
	for i := range keys {
		keys[i] = strconv.Itoa(i + 1)
	}
	custShard := scaleLocate(t, p, "customers", keys)
	ordKeys := map[string]bool{}
	for _, o := range orders {
		ordKeys[strconv.FormatInt(o.customer, 10)] = true
	}
	ordShard := scaleLocate(t, p, "orders", slices.Sorted(maps.Keys(ordKeys)))
	custSeen := make([]string, n+1)
	ordSeen := make([]string, n+1)
	perShard := map[string][2]int{}
	for _, sh := range shards {
		d, err := pgx.Connect(ctx, sh.Primary.DSN(appUser, appPassword, appDB))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := d.Query(ctx, "SELECT id, name FROM customers")
		if err != nil {
			t.Fatal(err)
		}
		var nc, no int
		for rows.Next() {
			var id int64
			var name *string
			if err := rows.Scan(&id, &name); err != nil {
				t.Fatal(err)
			}
			nc++
			switch {
			case id < 1 || id > n:
				t.Fatalf("shard %s: customer %d was never copied", sh.Name, id)
			case custSeen[id] != "":
				t.Fatalf("customer %d is on %s and %s", id, custSeen[id], sh.Name)
			case custShard[strconv.FormatInt(id, 10)] != sh.Name:
				t.Fatalf("customer %d is on %s, locate says %s", id, sh.Name, custShard[strconv.FormatInt(id, 10)])
			case (name == nil) != (names[id] == nil) || name != nil && *name != *names[id]:
				t.Fatalf("customer %d on %s: name %s, copied %s", id, sh.Name, scaleStrPtr(name), scaleStrPtr(names[id]))
			}
			custSeen[id] = sh.Name
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows, err = d.Query(ctx, "SELECT id, customer_id FROM orders")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id, cust int64
			if err := rows.Scan(&id, &cust); err != nil {
				t.Fatal(err)
			}
			no++
			switch {
			case id < 1 || id > n:
				t.Fatalf("shard %s: order %d was never copied", sh.Name, id)
			case ordSeen[id] != "":
				t.Fatalf("order %d is on %s and %s", id, ordSeen[id], sh.Name)
			case cust != orders[id-1].customer:
				t.Fatalf("order %d on %s has customer %d, copied %d", id, sh.Name, cust, orders[id-1].customer)
			case ordShard[strconv.FormatInt(cust, 10)] != sh.Name:
				t.Fatalf("order %d (customer %d) is on %s, locate says %s", id, cust, sh.Name, ordShard[strconv.FormatInt(cust, 10)])
			}
			ordSeen[id] = sh.Name
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		d.Close(ctx)
		perShard[sh.Name] = [2]int{nc, no}
	}
	var tc, to int
	for _, v := range perShard {
		tc += v[0]
		to += v[1]
	}
	if tc != n || to != n {
		t.Fatalf("the shards hold %d customers and %d orders, want %d of each (%v)", tc, to, n, perShard)
	}
	t.Logf("customers/orders per shard: %v (checked at %v)", perShard, time.Since(start).Round(time.Millisecond))

	// COPY … TO STDOUT through shardwire returns every row, as the oracle.
	for _, q := range []struct {
		sql    string
		header bool
		lines  int // data lines (a name with a newline spans two)
	}{
		{sql: "COPY orders TO STDOUT", lines: n},
		{sql: "COPY orders TO STDOUT WITH (FORMAT csv, HEADER)", header: true, lines: n},
		{sql: "COPY (SELECT customer_id, total FROM orders) TO STDOUT", lines: n},
		{sql: "COPY customers (id, name) TO STDOUT", lines: n},
		{sql: "COPY customers TO STDOUT WITH (FORMAT csv, HEADER true, FORCE_QUOTE (name))", header: true},
	} {
		copyStart := time.Now()
		got, want := psqlOut(t, p.pgEnv(), q.sql), psqlOut(t, oracleEnv(p, oracle), q.sql)
		copyTime := time.Since(copyStart)
		if q.header {
			gh, _, _ := strings.Cut(got, "\n")
			wh, _, _ := strings.Cut(want, "\n")
			if gh != wh || strings.Count("\n"+got, "\n"+gh+"\n") != 1 {
				t.Errorf("%s: header %q (%d times), want %q once", q.sql, gh, strings.Count("\n"+got, "\n"+gh+"\n"), wh)
			}
		}
		if q.lines > 0 && strings.Count(got, "\n") != q.lines+map[bool]int{true: 1}[q.header] {
			t.Errorf("%s: %d lines through shardwire, want %d rows", q.sql, strings.Count(got, "\n"), q.lines)
		}
		if sortLines(got) != sortLines(want) {
			t.Errorf("%s: %d bytes through shardwire differ from the oracle's %d: %.300q", q.sql, len(got), len(want), got)
		} else {
			t.Logf("%s: %d bytes, same as one server (psql %v)", q.sql, len(got), copyTime.Round(time.Millisecond))
		}
	}
	for _, q := range []string{
		"COPY customers TO STDOUT WITH (FORMAT binary)",
		"COPY (SELECT id, customer_id, total, qty, paid FROM orders) TO STDOUT WITH (FORMAT binary)",
	} {
		var gotBin, wantBin bytes.Buffer
		tag, err := c.PgConn().CopyTo(ctx, &gotBin, q)
		if err != nil {
			t.Errorf("%s through shardwire: %v", q, err)
			continue
		}
		if tag.RowsAffected() != n {
			t.Errorf("%s: CommandComplete %q, want COPY %d", q, tag, n)
		}
		if _, err := oracle.PgConn().CopyTo(ctx, &wantBin, q); err != nil {
			t.Fatal(err)
		}
		g, w := scaleBinaryTuples(t, gotBin.Bytes()), scaleBinaryTuples(t, wantBin.Bytes())
		if len(g) != n || !slices.Equal(g, w) {
			t.Errorf("%s: %d tuples through shardwire, %d from the oracle, equal: %v", q, len(g), len(w), slices.Equal(g, w))
		}
	}
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

func scaleStrPtr(s *string) string {
	if s == nil {
		return "NULL"
	}
	return strconv.Quote(*s)
}

// scaleProcKB reads a field (VmRSS, VmHWM) of /proc/PID/status, in kB.
func scaleProcKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// TestScatterMemory reads 1,000,000 rows ordered by id (about 80 MB on
// the wire, so a proxy that buffered the result could not pass) from a
// table spread over three shards (each holds every third id, so the heap
// merge takes turns on every row) through shardwire with a client that
// keeps none of them and pauses for 3 s after 100,000 of them, as a slow
// client would. Shardwire's RSS must grow by less than 64 MB while the
// client gets every row, in order, intact. Then a cancel request and
// clients leaving mid-stream must stop the shards' queries.
func TestScatterMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	const n = 1_000_000
	p, _, shards := scaleSetup(t, "mem", "CREATE UNLOGGED TABLE big (id bigint, pad text);",
		"tables:\n  big: { key: id, type: bigint, strategy: hash }\n", false)
	var wg sync.WaitGroup
	errs := make([]error, len(shards))
	for i, sh := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sh.Primary.Exec(ctx, fmt.Sprintf("INSERT INTO big SELECT g, md5(g::text) || md5((-g)::text) FROM generate_series(1, %d) g WHERE g %% 3 = %d; ALTER TABLE big ADD PRIMARY KEY (id); ANALYZE big", n, i))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("loaded %d rows directly into the shards in %v", n, time.Since(start).Round(time.Millisecond))
	c := p.connect(t)
	pid := p.cmd.Process.Pid
	// Warm up the pools and the statement cache with the same query.
	rows, err := c.Query(ctx, "SELECT id, pad FROM big ORDER BY id LIMIT 20000")
	if err != nil {
		t.Fatal(err)
	}
	warm := 0
	for rows.Next() {
		warm++
	}
	if rows.Err() != nil || warm != 20000 {
		t.Fatalf("warm-up: %d rows, %v", warm, rows.Err())
	}
	time.Sleep(200 * time.Millisecond)
	before, err := scaleProcKB(pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	hwmBefore, _ := scaleProcKB(pid, "VmHWM")

	stop := make(chan struct{})
	var maxRSS, samples int64
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := scaleProcKB(pid, "VmRSS"); err == nil {
				maxRSS = max(maxRSS, v)
				samples++
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	queryStart := time.Now()
	rows, err = c.Query(ctx, "SELECT id, pad FROM big ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var count, bad int64
	var firstBad string
	for rows.Next() {
		raw := rows.RawValues()
		count++
		if count == n/10 {
			// A slow client: shardwire must stop reading the shards
			// rather than buffer what the client has not taken yet.
			time.Sleep(3 * time.Second)
		}
		if len(raw) != 2 || len(raw[0]) != 8 {
			t.Fatalf("row %d: %d columns, id of %d bytes (want binary int8)", count, len(raw), len(raw[0]))
		}
		id := int64(binary.BigEndian.Uint64(raw[0]))
		sum := md5.Sum([]byte(strconv.FormatInt(id, 10)))
		neg := md5.Sum([]byte(strconv.FormatInt(-id, 10)))
		if id != count || string(raw[1]) != hex.EncodeToString(sum[:])+hex.EncodeToString(neg[:]) {
			if bad == 0 {
				firstBad = fmt.Sprintf("row %d: id %d pad %q", count, id, raw[1])
			}
			bad++
		}
	}
	err = rows.Err()
	tag := rows.CommandTag()
	queryTime := time.Since(queryStart)
	close(stop)
	sampler.Wait()
	if err != nil {
		t.Fatalf("after %d rows: %v", count, err)
	}
	hwmAfter, _ := scaleProcKB(pid, "VmHWM")
	peak := maxRSS
	if hwmAfter > hwmBefore {
		// The high-water mark rose during the query: it is the peak,
		// including spikes between samples.
		peak = max(peak, hwmAfter)
	}
	growthMB := float64(peak-before) / 1024
	t.Logf("%d rows in %v (%s); shardwire RSS before %.1f MB, peak %.1f MB (%d samples, VmHWM %d→%d kB): growth %.1f MB",
		count, queryTime.Round(time.Millisecond), tag, float64(before)/1024, float64(peak)/1024, samples, hwmBefore, hwmAfter, growthMB)
	if count != n || bad != 0 || tag.String() != fmt.Sprintf("SELECT %d", n) {
		t.Errorf("got %d rows (%q), %d out of order or wrong (first: %s), want %d in order", count, tag, bad, firstBad, n)
	}
	if growthMB >= 64 {
		t.Errorf("shardwire's RSS grew by %.1f MB during a %d-row scatter-gather, want < 64 MB", growthMB, n)
	}

	t.Logf("checked after %v", time.Since(start).Round(time.Millisecond))

	// A CancelRequest in the middle of the stream stops it (57014) and the
	// session goes on; no shard keeps running the query.
	rows, err = c.Query(ctx, "SELECT id, pad FROM big ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	cancelErr := make(chan error, 1)
	count = 0
	for rows.Next() {
		count++
		if count == 1000 {
			go func() { cancelErr <- c.PgConn().CancelRequest(ctx) }()
		}
	}
	var pgErr *pgconn.PgError
	if err := <-cancelErr; err != nil {
		t.Fatalf("cancel request: %v", err)
	}
	if !errorsAs(rows.Err(), &pgErr) || pgErr.Code != "57014" || count >= n {
		t.Errorf("cancelled scatter: %d rows, %v (want 57014 before the end)", count, rows.Err())
	}
	var total int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM big").Scan(&total); err != nil || total != n {
		t.Fatalf("after the cancel: %d %v", total, err)
	}
	// Clients that go away mid-stream (more than the pool's 4 server
	// connections per shard) leave nothing running or held.
	for i := 0; i < 6; i++ {
		cc, err := pgx.Connect(ctx, p.dsn(appUser, appPassword))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := cc.Query(ctx, "SELECT id, pad FROM big ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 100 && rows.Next(); j++ {
		}
		_ = cc.PgConn().Conn().Close()
	}
	qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
	defer qcancel()
	if err := p.connect(t).QueryRow(qctx, "SELECT count(*) FROM big").Scan(&total); err != nil || total != n {
		t.Fatalf("after clients left mid-stream: %d %v", total, err)
	}
	for _, sh := range shards {
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := sh.Primary.QueryValue(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%FROM big ORDER BY id%' AND pid <> pg_backend_pid()")
			if err != nil {
				t.Fatal(err)
			}
			if v == "0" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("shard %s still runs %s abandoned scatter queries", sh.Name, v)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

// TestCrossShardPipeline sends cross-shard and single-shard reads in one
// pipeline (a pgx batch: every Execute before one Sync, so an implicit
// transaction) and compares each result with one server's; then point
// reads by keys on different shards in one pipeline, and checks that a
// pipeline shardwire fails leaves none of its writes committed.
func TestCrossShardPipeline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, oracle, _ := crossShardSetup(t, "")
	c := p.connect(t)
	type item struct {
		sql  string
		args []any
	}
	for _, batch := range [][]item{
		{
			{sql: "SELECT count(*), sum(total), avg(total) FROM orders"},
			{sql: "SELECT id FROM customers ORDER BY name DESC, id LIMIT 5"},
			{sql: "SELECT customer_id, total FROM orders WHERE customer_id = $1 ORDER BY total", args: []any{int64(12)}},
		},
		{
			// A single-shard read first: the server connection it used is
			// still in the pipeline's implicit transaction when the
			// cross-shard reads come.
			{sql: "SELECT id, name FROM customers WHERE id = $1", args: []any{int64(7)}},
			{sql: "SELECT count(*), sum(total), avg(total) FROM orders"},
			{sql: "SELECT customer_id, count(*) FROM orders GROUP BY customer_id ORDER BY 2 DESC, 1 LIMIT 5"},
		},
	} {
		results := map[*pgx.Conn][]string{}
		for _, conn := range []*pgx.Conn{c, oracle} {
			b := &pgx.Batch{}
			for _, it := range batch {
				b.Queue(it.sql, it.args...)
			}
			br := conn.SendBatch(ctx, b)
			for _, it := range batch {
				rows, err := br.Query()
				if err != nil {
					t.Errorf("%q in a pipeline: %v", it.sql, err)
					continue
				}
				got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
					v, err := r.Values()
					return fmt.Sprint(v...), err
				})
				if err != nil {
					t.Errorf("%q in a pipeline: %v", it.sql, err)
				}
				results[conn] = append(results[conn], fmt.Sprintf("%s => %q", it.sql, got))
			}
			if err := br.Close(); err != nil {
				t.Errorf("pipeline: %v", err)
			}
		}
		if !slices.Equal(results[c], results[oracle]) {
			t.Errorf("pipeline through shardwire:\n%s\none server:\n%s", strings.Join(results[c], "\n"), strings.Join(results[oracle], "\n"))
		}
	}
	// Point reads by keys on different shards in one pipeline: each is a
	// single-shard read; nothing needs more than one shard at a time.
	t.Run("point reads on several shards", func(t *testing.T) {
		var got, want []string
		for _, conn := range []*pgx.Conn{p.connect(t), oracle} {
			b := &pgx.Batch{}
			for id := int64(1); id <= 6; id++ {
				b.Queue("SELECT id, name FROM customers WHERE id = $1", id)
			}
			br := conn.SendBatch(ctx, b)
			var out []string
			for id := 1; id <= 6; id++ {
				var k int64
				var name string
				err := br.QueryRow().Scan(&k, &name)
				out = append(out, fmt.Sprint(k, name, err))
			}
			if err := br.Close(); err != nil {
				out = append(out, err.Error())
			}
			if conn == oracle {
				want = out
			} else {
				got = out
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("point reads in a pipeline:\n got %q\nwant %q", got, want)
		}
	})
	// A pipeline is one implicit transaction: when shardwire answers one
	// of its statements with an error, the earlier writes must not be
	// committed at Sync (Postgres rolls the implicit transaction back).
	t.Run("refused statement rolls the pipeline back", func(t *testing.T) {
		c := p.connect(t)
		b := &pgx.Batch{}
		b.Queue("INSERT INTO customers (id, name) VALUES (6001, 'pipelined')")
		b.Queue("UPDATE customers SET name = name || '?' WHERE name LIKE 'b%'")
		err := c.SendBatch(ctx, b).Close()
		var n int
		if qerr := c.QueryRow(ctx, "SELECT count(*) FROM customers WHERE id = 6001").Scan(&n); qerr != nil {
			t.Fatal(qerr)
		}
		if err != nil && n != 0 {
			t.Errorf("the pipeline failed (%v) but its INSERT was committed", err)
		}
		if err == nil && n != 1 {
			t.Errorf("the pipeline succeeded but its INSERT is missing")
		}
	})
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers WHERE id <= 300").Scan(&n); err != nil || n != 300 {
		t.Fatalf("after the pipelines: %d %v", n, err)
	}
}

// TestCrossShardDescribe compares, message by message, what shardwire and
// one server answer to the extended protocol as drivers other than pgx's
// default mode speak it (Parse, Bind, Describe portal, Execute, Sync; and
// Parse, Describe statement, Sync) for statements that run on several
// shards: a Describe of a portal that returns no rows gets NoData.
func TestCrossShardDescribe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, oracle, _ := crossShardSetup(t, "routing:\n  cross_shard_writes: allow\n")
	type result struct{ portal, statement string }
	run := func(conn *pgx.Conn, sql string) result {
		fe := conn.PgConn().Frontend()
		recv := func() string {
			var msgs []string
			rows := 0
			for {
				m, err := fe.Receive()
				if err != nil {
					t.Fatalf("%q: %v", sql, err)
				}
				switch m := m.(type) {
				case *pgproto3.DataRow:
					rows++
					continue
				case *pgproto3.ErrorResponse:
					msgs = append(msgs, "Error "+m.Code)
				case *pgproto3.CommandComplete:
					msgs = append(msgs, fmt.Sprintf("%d DataRow, CommandComplete %q", rows, m.CommandTag))
				case *pgproto3.ReadyForQuery:
					return strings.Join(append(msgs, "ReadyForQuery "+string(m.TxStatus)), ", ")
				default:
					msgs = append(msgs, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
				}
			}
		}
		var r result
		fe.Send(&pgproto3.Parse{Query: sql})
		fe.Send(&pgproto3.Bind{})
		fe.Send(&pgproto3.Describe{ObjectType: 'P'})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		r.portal = recv()
		fe.Send(&pgproto3.Parse{Query: sql})
		fe.Send(&pgproto3.Describe{ObjectType: 'S'})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		r.statement = recv()
		return r
	}
	c := p.connect(t)
	for _, sql := range []string{
		"INSERT INTO customers (id, name) VALUES (7001, 'x'), (7002, 'y'), (7003, 'z')",
		"INSERT INTO customers (id, name) VALUES (7011, 'x'), (7012, 'y'), (7013, 'z') RETURNING id",
		"UPDATE customers SET name = name WHERE id > 7000",
		"UPDATE customers SET name = name WHERE id > 7000 RETURNING id",
		"DELETE FROM orders WHERE total > 1000",
		"INSERT INTO countries (code, name) VALUES ('zz', 'Zedland')",
		"UPDATE countries SET name = 'Zed' WHERE code = 'zz'",
		"SELECT count(*) FROM customers",
		"SELECT id FROM customers ORDER BY id LIMIT 2",
	} {
		got, want := run(c, sql), run(oracle, sql)
		if got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", sql, got, want)
		}
	}
	// The same through pgx's pipeline (a batch), which checks the
	// messages it gets: a split INSERT followed by a read.
	for _, conn := range []*pgx.Conn{c, oracle} {
		b := &pgx.Batch{}
		b.Queue("INSERT INTO customers (id, name) VALUES (7101, 'x'), (7102, 'y'), (7103, 'z')")
		b.Queue("SELECT name FROM customers WHERE id = 1")
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			t.Errorf("split INSERT and a read in one pipeline (oracle: %v): %v", conn == oracle, err)
		}
	}
	got, err := scaleRowsCols(ctx, p.connect(t), "SELECT id, name FROM customers WHERE id > 7000 ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	want, err := scaleRowsCols(ctx, oracle, "SELECT id, name FROM customers WHERE id > 7000 ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	if d := (scaleQuery{ordered: true}).diffRows(got, want); d != "" {
		t.Errorf("customers above 7000 after the statements: %s", d)
	}
}
