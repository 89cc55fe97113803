package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardwire/shardwire/pgcluster"
)

// crossShardSetup starts three shards with the sharding schema, loads the
// same rows through shardwire and into an "oracle" database that holds
// them all on one server, and returns the proxy and the oracle.
func crossShardSetup(t *testing.T, extra string) (*proxyProc, *pgx.Conn, []*pgcluster.Shard) {
	t.Helper()
	ctx := context.Background()
	shards := startShards(t, "xs", []string{"s0", "s1", "s2"}, 0, shardSchema)
	if err := shards[0].Primary.Exec(ctx, "CREATE DATABASE oracle OWNER "+appUser); err != nil {
		t.Fatal(err)
	}
	oracle, err := pgx.Connect(ctx, shards[0].Primary.DSN(appUser, appPassword, "oracle"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { oracle.Close(context.Background()) })
	if _, err := oracle.Exec(ctx, shardSchema); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyConfig{size: 4, shards: shards, extra: shardTables + extra})
	c := p.connect(t)
	rng := rand.New(rand.NewSource(7))
	var load strings.Builder
	for i := 1; i <= 300; i++ {
		name := fmt.Sprintf("%c%c-%d", 'a'+rng.Intn(26), 'a'+rng.Intn(26), i)
		fmt.Fprintf(&load, "INSERT INTO customers (id, name) VALUES (%d, '%s');\n", i, name)
		for j := 0; j < rng.Intn(4); j++ {
			total := "NULL"
			if rng.Intn(10) > 0 {
				total = fmt.Sprintf("%d.%02d", rng.Intn(500), rng.Intn(100))
			}
			fmt.Fprintf(&load, "INSERT INTO orders (customer_id, total) VALUES (%d, %s);\n", i, total)
		}
	}
	for _, r := range [][2]string{{"eu", "Paris"}, {"uk", "Leeds"}, {"us", "Austin"}, {"ca", "Quebec"}, {"jp", "Osaka"}, {"eu", "Lyon"}} {
		fmt.Fprintf(&load, "INSERT INTO stores (region, name) VALUES ('%s', '%s');\n", r[0], r[1])
	}
	for _, stmt := range strings.Split(strings.TrimSpace(load.String()), "\n") {
		if _, err := c.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
		if _, err := oracle.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("oracle %s: %v", stmt, err)
		}
	}
	return p, oracle, shards
}

// rowsText runs a query and renders every row as text, in order.
func rowsText(ctx context.Context, c *pgx.Conn, sql string, args ...any) ([]string, error) {
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprint(vals...))
	}
	return out, rows.Err()
}

// TestCrossShardReads checks reads without a single shard against the same
// query on one server holding every row: in the extended protocol with
// binary results (pgx) and in the simple protocol (psql).
func TestCrossShardReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, oracle, _ := crossShardSetup(t, "")
	c := p.connect(t)
	queries := []struct {
		sql     string
		args    []any
		ordered bool // ORDER BY fixes the whole order
	}{
		{sql: "SELECT count(*) FROM customers", ordered: true},
		{sql: "SELECT id, name FROM customers"},
		{sql: "SELECT id, name FROM customers ORDER BY id LIMIT 10 OFFSET 5", ordered: true},
		{sql: "SELECT id FROM customers ORDER BY name DESC, id LIMIT 7", ordered: true},
		{sql: "SELECT name FROM customers ORDER BY id DESC LIMIT 3", ordered: true},
		{sql: "SELECT customer_id, count(*), sum(total), avg(total), min(total), max(total) FROM orders GROUP BY customer_id ORDER BY customer_id LIMIT 20", ordered: true},
		{sql: "SELECT avg(id), sum(id), count(id) FROM customers", ordered: true},
		{sql: "SELECT count(*), count(total), sum(total), avg(total) FROM orders", ordered: true},
		{sql: "SELECT DISTINCT region FROM stores ORDER BY region", ordered: true},
		{sql: "SELECT * FROM customers WHERE id IN (1, 2, 3, 200) ORDER BY id", ordered: true},
		{sql: "SELECT customer_id, sum(total) FROM orders GROUP BY customer_id HAVING sum(total) > 600 ORDER BY 2 DESC, 1 LIMIT 5", ordered: true},
		{sql: "SELECT c.name, o.total FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.total > 400 ORDER BY o.total DESC NULLS LAST, c.name LIMIT 10", ordered: true},
		{sql: "SELECT total FROM orders ORDER BY total NULLS FIRST, customer_id LIMIT 8", ordered: true},
		{sql: "SELECT count(*) FROM orders WHERE total IS NULL", ordered: true},
		{sql: "SELECT id, name FROM customers WHERE id > $1 ORDER BY id LIMIT $2", args: []any{int64(250), 4}, ordered: true},
		{sql: "SELECT bool_and(id > 0), bool_or(id > 299), min(name), max(name) FROM customers", ordered: true},
		{sql: "SELECT region, count(*) FROM stores GROUP BY region ORDER BY count(*) DESC, region", ordered: true},
		{sql: "SELECT * FROM customers ORDER BY name DESC, id LIMIT 5", ordered: true},
		{sql: "SELECT * FROM stores ORDER BY region, name", ordered: true},
		{sql: "SELECT name FROM customers ORDER BY id LIMIT $1 OFFSET $2", args: []any{3, int64(2)}, ordered: true},
		{sql: "SELECT customer_id, avg(total) FROM orders WHERE total > $1 GROUP BY customer_id HAVING count(*) > 1 ORDER BY 1 LIMIT 10", args: []any{10}, ordered: true},
		{sql: "SELECT o.customer_id, o.total FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id AND c.name LIKE 'a%') ORDER BY 1, 2 LIMIT 6", ordered: true},
	}
	for _, q := range queries {
		want, err := rowsText(ctx, oracle, q.sql, q.args...)
		if err != nil {
			t.Fatalf("oracle %q: %v", q.sql, err)
		}
		got, err := rowsText(ctx, c, q.sql, q.args...)
		if err != nil {
			t.Errorf("%q through shardwire: %v", q.sql, err)
			continue
		}
		if !q.ordered {
			slices.Sort(want)
			slices.Sort(got)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q (pgx):\n got %d rows %.400q\nwant %d rows %.400q", q.sql, len(got), got, len(want), want)
		}
		if len(q.args) > 0 {
			continue
		}
		// The simple protocol, text results, through psql.
		gotText := psqlOut(t, p.pgEnv(), q.sql)
		wantText := psqlOut(t, oracleEnv(p, oracle), q.sql)
		if !q.ordered {
			gotText, wantText = sortLines(gotText), sortLines(wantText)
		}
		if gotText != wantText {
			t.Errorf("%q (psql):\n got %.400q\nwant %.400q", q.sql, gotText, wantText)
		}
	}
	// What cannot be merged correctly is refused, naming the construct.
	for _, q := range []struct{ sql, what string }{
		{"SELECT id, rank() OVER (ORDER BY name) FROM customers", "window"},
		{"SELECT string_agg(name, ',') FROM customers", "string_agg"},
		{"SELECT count(DISTINCT name) FROM customers", "DISTINCT"},
	} {
		_, err := rowsText(ctx, c, q.sql)
		var pgErr *pgconn.PgError
		if !errorsAs(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(strings.ToLower(pgErr.Message), strings.ToLower(q.what)) {
			t.Errorf("%q: want 0A000 naming %q, got %v", q.sql, q.what, err)
		}
	}
	// A negative LIMIT is Postgres' error, not a silent "no limit".
	_, err := rowsText(ctx, c, "SELECT id FROM customers ORDER BY id LIMIT $1", -1)
	var limitErr *pgconn.PgError
	if !errorsAs(err, &limitErr) || limitErr.Code != "2201W" {
		t.Errorf("negative LIMIT parameter: %v", err)
	}
	// Inside a transaction block a cross-shard read is refused, and the
	// transaction goes on.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := tx.QueryRow(ctx, "SELECT 1 FROM customers WHERE id = 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "SELECT count(*) FROM customers")
	var pgErr *pgconn.PgError
	if !errorsAs(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, "transaction") {
		t.Fatalf("cross-shard read in a transaction: %v", err)
	}
	_ = tx.Rollback(ctx)
	// Refused as the first statement of a block (no server involved yet),
	// it fails the block as a server error would: later statements get
	// 25P02 and COMMIT answers ROLLBACK.
	tx, err = c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM customers"); !errorsAs(err, &pgErr) || pgErr.Code != "0A000" {
		t.Fatalf("cross-shard read first in a transaction: %v", err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); !errorsAs(err, &pgErr) || pgErr.Code != "25P02" {
		t.Fatalf("statement after a refused one in a transaction: %v", err)
	}
	if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Fatalf("COMMIT of a failed transaction: %v", err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != 300 {
		t.Fatalf("count after the refused transaction: %d %v", n, err)
	}
}

// TestCrossShardWrites: writes to a replicated table reach every shard;
// writes without a key are refused by default and, with
// routing.cross_shard_writes: allow, run on every shard with the counts
// added up.
func TestCrossShardWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, oracle, shards := crossShardSetup(t, "routing:\n  cross_shard_writes: allow\n")
	c := p.connect(t)
	tag, err := c.Exec(ctx, "INSERT INTO countries (code, name) VALUES ($1, $2)", "fr", "France")
	if err != nil || tag.String() != "INSERT 0 1" {
		t.Fatalf("replicated insert: %q %v", tag, err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO countries (code, name) VALUES ('de', 'Germany')", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		d, err := pgx.Connect(ctx, sh.Primary.DSN(appUser, appPassword, appDB))
		if err != nil {
			t.Fatal(err)
		}
		var names string
		err = d.QueryRow(ctx, "SELECT string_agg(name, ',' ORDER BY code) FROM countries").Scan(&names)
		d.Close(ctx)
		if err != nil || names != "Germany,France" {
			t.Fatalf("countries on %s: %q %v", sh.Name, names, err)
		}
	}
	// A replicated write that fails everywhere fails once, cleanly.
	if _, err := c.Exec(ctx, "INSERT INTO countries (code, name) VALUES ('fr', 'again')"); err == nil {
		t.Fatal("duplicate key in a replicated table accepted")
	}
	// Keyless writes, allowed here: counts add up to the one-server count.
	for _, sql := range []string{
		"UPDATE customers SET name = name || '!' WHERE name LIKE 'a%'",
		"DELETE FROM orders WHERE total < 50",
	} {
		want, err := oracle.Exec(ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Exec(ctx, sql)
		if err != nil || got.String() != want.String() {
			t.Fatalf("%q: got %q %v, want %q", sql, got, err, want)
		}
	}
	gotRows, err := rowsText(ctx, c, "SELECT id, name FROM customers ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	wantRows, err := rowsText(ctx, oracle, "SELECT id, name FROM customers ORDER BY id")
	if err != nil || !slices.Equal(gotRows, wantRows) {
		t.Fatalf("customers after the keyless update differ (%v)", err)
	}
	// A multi-row INSERT whose rows live on several shards is split; the
	// RETURNING rows come back in the client's order, in both protocols.
	var values []string
	for i := 1001; i <= 1012; i++ {
		values = append(values, fmt.Sprintf("(%d, 'n%d')", i, i))
	}
	insert := "INSERT INTO customers (id, name) VALUES " + strings.Join(values, ", ") + " RETURNING id, name"
	if got, want := psqlOut(t, p.pgEnv(), insert), psqlOut(t, oracleEnv(p, oracle), insert); got != want {
		t.Fatalf("split INSERT (psql):\n got %q\nwant %q", got, want)
	}
	values, args := values[:0], []any{}
	for i := 0; i < 9; i++ {
		values = append(values, fmt.Sprintf("($%d, $%d)", 2*i+1, 2*i+2))
		args = append(args, int64(2001+i*7), fmt.Sprint("p", i))
	}
	insert = "INSERT INTO customers (id, name) VALUES " + strings.Join(values, ", ") + " RETURNING id"
	want, err := rowsText(ctx, oracle, insert, args...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rowsText(ctx, c, insert, args...)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("split INSERT (pgx): got %v %v, want %v", got, err, want)
	}
	// COPY FROM STDIN is split row by row: CSV with a column list through
	// psql, text without one, and pgx's binary COPY.
	var script strings.Builder
	script.WriteString("COPY orders (customer_id, total) FROM STDIN WITH (FORMAT csv);\n")
	for i := 1; i <= 200; i++ {
		fmt.Fprintf(&script, "%d,%d.25\n", i, i%37)
	}
	script.WriteString("\\.\nCOPY stores FROM STDIN;\n")
	for i, r := range []string{"eu", "uk", "us", "ca", "jp", "us"} {
		fmt.Fprintf(&script, "%s\tcopied %d\n", r, i)
	}
	script.WriteString("\\.\n")
	for _, env := range [][]string{p.pgEnv(), oracleEnv(p, oracle)} {
		cmd := exec.Command(tool(t, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1")
		cmd.Env = env
		cmd.Stdin = strings.NewReader(script.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("psql COPY: %v\n%s", err, out)
		}
	}
	var copyRows [][]any
	for i := 3001; i <= 3100; i++ {
		copyRows = append(copyRows, []any{int64(i), fmt.Sprint("copied", i)})
	}
	// One binary COPY whose rows all live on one shard: the others get an
	// empty stream.
	oneShard := [][]any{{int64(3001 + 100), "lonely"}}
	for _, rows := range [][][]any{copyRows, oneShard} {
		for _, conn := range []*pgx.Conn{c, oracle} {
			n, err := conn.CopyFrom(ctx, pgx.Identifier{"customers"}, []string{"id", "name"}, pgx.CopyFromRows(rows))
			if err != nil || n != int64(len(rows)) {
				t.Fatalf("binary COPY of %d rows: %d %v", len(rows), n, err)
			}
		}
	}
	// A row whose key cannot be read fails the whole COPY on every shard.
	cmd := exec.Command(tool(t, "psql"), "-X", "-q")
	cmd.Env = p.pgEnv()
	cmd.Stdin = strings.NewReader("COPY customers (id, name) FROM STDIN;\n4001\tok\nnot-a-number\tbad\n4002\tok\n\\.\n")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "ERROR") {
		t.Fatalf("a COPY row with a bad key was accepted: %s", out)
	}
	var n4000 int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers WHERE id > 4000").Scan(&n4000); err != nil || n4000 != 0 {
		t.Fatalf("rows of a failed COPY were kept: %d %v", n4000, err)
	}
	for _, q := range []string{
		"SELECT id, name FROM customers ORDER BY id",
		"SELECT customer_id, total FROM orders ORDER BY customer_id, total",
		"SELECT region, name FROM stores ORDER BY region, name",
	} {
		got, err := rowsText(ctx, c, q)
		if err != nil {
			t.Fatal(err)
		}
		want, err := rowsText(ctx, oracle, q)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%s differs from one server after the split writes (%d vs %d rows, %v)", q, len(got), len(want), err)
		}
	}
	// COPY … TO STDOUT gathers every shard's rows, with one header.
	for _, q := range []string{
		"COPY customers TO STDOUT",
		"COPY customers TO STDOUT WITH (FORMAT csv, HEADER)",
		"COPY (SELECT id, name FROM customers WHERE id > 1000) TO STDOUT",
		"COPY orders (customer_id, total) TO STDOUT WITH (FORMAT csv)",
	} {
		got, want := psqlOut(t, p.pgEnv(), q), psqlOut(t, oracleEnv(p, oracle), q)
		if strings.Contains(q, "HEADER") {
			gh, _, _ := strings.Cut(got, "\n")
			wh, _, _ := strings.Cut(want, "\n")
			if gh != wh || strings.Count(got, gh+"\n") != 1 {
				t.Fatalf("%s: header %q (%d times), want %q once", q, gh, strings.Count(got, gh+"\n"), wh)
			}
		}
		if sortLines(got) != sortLines(want) || len(got) < 100 {
			t.Fatalf("%s: %d bytes, want %d", q, len(got), len(want))
		}
	}
	var gotBin, wantBin bytes.Buffer
	if _, err := c.PgConn().CopyTo(ctx, &gotBin, "COPY customers TO STDOUT WITH (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	if _, err := oracle.PgConn().CopyTo(ctx, &wantBin, "COPY customers TO STDOUT WITH (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	g, w := gotBin.Bytes(), wantBin.Bytes()
	if len(g) != len(w) || !bytes.Equal(g[:19], w[:19]) || !bytes.HasSuffix(g, []byte{0xff, 0xff}) {
		t.Fatalf("binary COPY TO: %d bytes, want %d (one header, one trailer)", len(g), len(w))
	}
	// Refused by default.
	q := startProxy(t, proxyConfig{size: 2, shards: shards, extra: shardTables})
	c2 := q.connect(t)
	_, err = c2.Exec(ctx, "DELETE FROM orders WHERE total > 1")
	var pgErr *pgconn.PgError
	if !errorsAs(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, "cross_shard_writes") {
		t.Fatalf("keyless delete with cross_shard_writes: refuse: %v", err)
	}
}

// psqlOut runs one statement through psql, unaligned, and returns its output.
func psqlOut(t *testing.T, env []string, sql string) string {
	t.Helper()
	cmd := exec.Command(tool(t, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("psql %q: %v\n%s", sql, err, out)
	}
	return string(out)
}

// oracleEnv is a psql environment for the oracle database.
func oracleEnv(p *proxyProc, oracle *pgx.Conn) []string {
	cfg := oracle.Config()
	env := []string{}
	for _, kv := range p.pgEnv() {
		if !strings.HasPrefix(kv, "PGHOST=") && !strings.HasPrefix(kv, "PGPORT=") && !strings.HasPrefix(kv, "PGDATABASE=") {
			env = append(env, kv)
		}
	}
	return append(env, "PGHOST="+cfg.Host, fmt.Sprintf("PGPORT=%d", cfg.Port), "PGDATABASE=oracle")
}

func sortLines(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
