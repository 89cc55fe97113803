package gather

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shardwire/shardwire/pgcluster"
)

// pgSetup fills table t with 3,000 rows of every type the merge handles
// (NULLs, ties, NaN, infinities, mixed numeric scales, dates BC, text in
// several cases) and splits them into t0, t1, t2 by id, t3 being empty: the
// shards.
const pgSetup = `
CREATE TABLE t (id int PRIMARY KEY, g text, k int, x int, b bool, n numeric, f float8, f2 float8,
	r real, d date, ts timestamptz, u uuid, c char(3), big int8);
INSERT INTO t SELECT i,
	CASE WHEN i % 11 = 0 THEN NULL ELSE (ARRAY['alpha','Beta','gamma','delta','é','',' x','Z'])[1 + (i*7) % 8] END,
	CASE WHEN i % 13 = 0 THEN NULL ELSE (i*31) % 17 - 8 END,
	CASE WHEN i % 7 = 0 THEN NULL ELSE (i*7919) % 2001 - 1000 END,
	CASE WHEN i % 5 = 0 THEN NULL ELSE i % 3 = 0 END,
	CASE WHEN i % 9 = 0 THEN NULL ELSE round(((i*37) % 1000)::numeric / 7, i % 4) END,
	CASE WHEN i % 10 = 0 THEN NULL ELSE ((i*13) % 801 - 400)::float8 / 8 END,
	(ARRAY['NaN','Infinity','-Infinity','-0','0','1.5','-2.25',NULL])[1 + i % 8]::float8,
	CASE WHEN i % 6 = 0 THEN NULL ELSE ((i*17) % 401 - 200)::real / 8 END,
	CASE WHEN i % 8 = 0 THEN NULL WHEN i % 97 = 0 THEN 'infinity'
		ELSE date '2000-01-01' + ((i*101) % 800000 - 750000) END,
	CASE WHEN i % 12 = 0 THEN NULL
		ELSE timestamptz '2020-01-01 00:00:00+00' + ((i*7777) % 100000) * interval '1 hour 1 microsecond' END,
	CASE WHEN i % 14 = 0 THEN NULL ELSE md5(((i*3) % 50)::text)::uuid END,
	CASE WHEN i % 15 = 0 THEN NULL ELSE (ARRAY['a','ab','b',' ','a b'])[1 + i % 5] END,
	CASE WHEN i % 16 = 0 THEN NULL ELSE (i::int8 * 3000000000000001) % 9000000000000000000 END
FROM generate_series(1, 3000) i;
CREATE TABLE t0 AS SELECT * FROM t WHERE id % 3 = 0;
CREATE TABLE t1 AS SELECT * FROM t WHERE id % 3 = 1;
CREATE TABLE t2 AS SELECT * FROM t WHERE id % 3 = 2;
CREATE TABLE t3 AS SELECT * FROM t WHERE false;
`

// pgCase is a query on one server and its rewrite for the shards, %s
// standing for the shard's table.
type pgCase struct {
	name    string
	oracle  string
	shard   string
	plan    Plan
	ordered bool // compare row order too
}

func pgCases() []pgCase {
	sk := func(col int, desc, nullsFirst bool) SortKey {
		return SortKey{Col: col, Desc: desc, NullsFirst: nullsFirst}
	}
	asc := func(col int) SortKey { return SortKey{Col: col} }
	return []pgCase{
		{"concatenation", "SELECT id, g FROM t WHERE x > 500", "SELECT id, g FROM %s WHERE x > 500", Plan{Limit: -1}, false},
		{"order by int with ties and NULLs", "SELECT id, k FROM t ORDER BY k, id", "SELECT id, k FROM %s ORDER BY k, id",
			Plan{Sort: []SortKey{asc(1), asc(0)}, Limit: -1}, true},
		{"order by desc", "SELECT id, k FROM t ORDER BY k DESC, id DESC", "SELECT id, k FROM %s ORDER BY k DESC, id DESC",
			Plan{Sort: []SortKey{sk(1, true, true), sk(0, true, true)}, Limit: -1}, true},
		{"numeric NULLS FIRST", "SELECT id, n FROM t ORDER BY n NULLS FIRST, id", "SELECT id, n FROM %s ORDER BY n NULLS FIRST, id",
			Plan{Sort: []SortKey{sk(1, false, true), asc(0)}, Limit: -1}, true},
		{"float NaN, infinities, -0, DESC NULLS LAST", "SELECT id, f2 FROM t ORDER BY f2 DESC NULLS LAST, id",
			"SELECT id, f2 FROM %s ORDER BY f2 DESC NULLS LAST, id", Plan{Sort: []SortKey{sk(1, true, false), asc(0)}, Limit: -1}, true},
		{"real", "SELECT id, r FROM t ORDER BY r DESC, id", "SELECT id, r FROM %s ORDER BY r DESC, id",
			Plan{Sort: []SortKey{sk(1, true, true), asc(0)}, Limit: -1}, true},
		{"text in C order", "SELECT g, id FROM t ORDER BY g, id", "SELECT g, id FROM %s ORDER BY g, id",
			Plan{Sort: []SortKey{asc(0), asc(1)}, Limit: -1}, true},
		{"timestamptz and dates", "SELECT ts, d, id FROM t ORDER BY ts DESC, d, id", "SELECT ts, d, id FROM %s ORDER BY ts DESC, d, id",
			Plan{Sort: []SortKey{sk(0, true, true), asc(1), asc(2)}, Limit: -1}, true},
		{"dates BC and infinity", "SELECT d, id FROM t ORDER BY d, id", "SELECT d, id FROM %s ORDER BY d, id",
			Plan{Sort: []SortKey{asc(0), asc(1)}, Limit: -1}, true},
		{"uuid and char(n)", "SELECT u, c, id FROM t ORDER BY u NULLS FIRST, c DESC, id",
			"SELECT u, c, id FROM %s ORDER BY u NULLS FIRST, c DESC, id", Plan{Sort: []SortKey{sk(0, false, true), sk(1, true, true), asc(2)}, Limit: -1}, true},
		{"int8", "SELECT big, id FROM t ORDER BY big, id", "SELECT big, id FROM %s ORDER BY big, id",
			Plan{Sort: []SortKey{asc(0), asc(1)}, Limit: -1}, true},
		{"limit and offset across shards", "SELECT id, k FROM t ORDER BY k, id LIMIT 7 OFFSET 995",
			"SELECT id, k FROM %s ORDER BY k, id LIMIT 1002", Plan{Sort: []SortKey{asc(1), asc(0)}, Limit: 7, Offset: 995}, true},
		{"hidden sort key", "SELECT id, g FROM t ORDER BY x DESC, id LIMIT 20", "SELECT id, g, x FROM %s ORDER BY x DESC, id LIMIT 20",
			Plan{Visible: 2, Sort: []SortKey{sk(2, true, true), asc(0)}, Limit: 20}, true},
		{"every aggregate, no GROUP BY",
			`SELECT count(*), sum(x), min(g), max(d), bool_and(b), bool_or(b), avg(x), sum(n), avg(n), avg(f), sum(f), min(ts), max(u::text),
				sum(big), avg(big), max(c), min(r), sum(r), avg(r), min(f2), max(f2), avg(k::int2), sum(k::int2) FROM t`,
			`SELECT count(*), sum(x), min(g), max(d), bool_and(b), bool_or(b), sum(x) AS avg, sum(n), sum(n) AS avg, sum(f) AS avg, sum(f),
				min(ts), max(u::text), sum(big), sum(big) AS avg, max(c), min(r), sum(r), sum(r::float8) AS avg, min(f2), max(f2),
				sum(k::int2) AS avg, sum(k::int2), count(x), count(n), count(f), count(big), count(r), count(k) FROM %s`,
			Plan{Visible: 23, Limit: -1, Aggs: []Agg{{0, AggCount, 0}, {1, AggSum, 0}, {2, AggMin, 0}, {3, AggMax, 0}, {4, AggBoolAnd, 0},
				{5, AggBoolOr, 0}, {6, AggAvg, 23}, {7, AggSum, 0}, {8, AggAvg, 24}, {9, AggAvg, 25}, {10, AggSum, 0}, {11, AggMin, 0},
				{12, AggMax, 0}, {13, AggSum, 0}, {14, AggAvg, 26}, {15, AggMax, 0}, {16, AggMin, 0}, {17, AggSum, 0}, {18, AggAvg, 27},
				{19, AggMin, 0}, {20, AggMax, 0}, {21, AggAvg, 28}, {22, AggSum, 0}}}, true},
		{"aggregates over no rows", "SELECT count(*), sum(x), avg(x), max(g), bool_or(b) FROM t WHERE id < 0",
			"SELECT count(*), sum(x), sum(x) AS avg, max(g), bool_or(b), count(x) FROM %s WHERE id < 0",
			Plan{Visible: 5, Limit: -1, Aggs: []Agg{{0, AggCount, 0}, {1, AggSum, 0}, {2, AggAvg, 5}, {3, AggMax, 0}, {4, AggBoolOr, 0}}}, true},
		{"group by text, having, order by",
			"SELECT g, count(*), sum(x), avg(x), min(x), max(ts), bool_or(b), avg(n), sum(big) FROM t GROUP BY g HAVING count(*) > 300 AND sum(x) > 0 ORDER BY g",
			"SELECT g, count(*), sum(x), sum(x) AS avg, min(x), max(ts), bool_or(b), sum(n) AS avg, sum(big), count(x), count(n) FROM %s GROUP BY g",
			Plan{Visible: 9, Limit: -1, Group: []int{0}, Aggs: []Agg{{1, AggCount, 0}, {2, AggSum, 0}, {3, AggAvg, 9}, {4, AggMin, 0},
				{5, AggMax, 0}, {6, AggBoolOr, 0}, {7, AggAvg, 10}, {8, AggSum, 0}},
				Having: []Cond{{Col: 1, Op: OpGt, Value: "300"}, {Col: 2, Op: OpGt, Value: "0"}}, Sort: []SortKey{asc(0)}}, true},
		{"group by int, order by count, limit",
			"SELECT k, count(*), avg(big) FROM t GROUP BY k ORDER BY count(*) DESC, k NULLS FIRST LIMIT 5 OFFSET 1",
			"SELECT k, count(*), sum(big) AS avg, count(big) FROM %s GROUP BY k",
			Plan{Visible: 3, Group: []int{0}, Aggs: []Agg{{1, AggCount, 0}, {2, AggAvg, 3}},
				Sort: []SortKey{sk(1, true, true), sk(0, false, true)}, Limit: 5, Offset: 1}, true},
		{"group by two columns with NULLs", "SELECT c, b, count(*), max(x) FROM t GROUP BY c, b ORDER BY c, b",
			"SELECT c, b, count(*), max(x) FROM %s GROUP BY c, b",
			Plan{Limit: -1, Group: []int{0, 1}, Aggs: []Agg{{2, AggCount, 0}, {3, AggMax, 0}}, Sort: []SortKey{asc(0), asc(1)}}, true},
		{"having and order on avg", "SELECT g, avg(x) FROM t GROUP BY g HAVING avg(x) > 0 ORDER BY avg(x) DESC",
			"SELECT g, sum(x) AS avg, count(x) FROM %s GROUP BY g",
			Plan{Visible: 2, Limit: -1, Group: []int{0}, Aggs: []Agg{{1, AggAvg, 2}}, Having: []Cond{{Col: 1, Op: OpGt, Value: "0"}},
				Sort: []SortKey{sk(1, true, true)}}, true},
		{"group by over no rows", "SELECT g, count(*) FROM t WHERE false GROUP BY g", "SELECT g, count(*) FROM %s WHERE false GROUP BY g",
			Plan{Limit: -1, Group: []int{0}, Aggs: []Agg{{1, AggCount, 0}}}, true},
		{"distinct", "SELECT DISTINCT g FROM t", "SELECT DISTINCT g FROM %s", Plan{Limit: -1, Distinct: true}, false},
		{"distinct sorted on every column", "SELECT DISTINCT k, b FROM t ORDER BY k, b", "SELECT DISTINCT k, b FROM %s ORDER BY k, b",
			Plan{Limit: -1, Distinct: true, Sort: []SortKey{asc(0), asc(1)}}, true},
		{"distinct sorted on some columns", "SELECT DISTINCT g, k FROM t ORDER BY k", "SELECT DISTINCT g, k FROM %s ORDER BY k",
			Plan{Limit: -1, Distinct: true, Sort: []SortKey{asc(1)}}, false},
		{"distinct with limit", "SELECT DISTINCT c, b FROM t ORDER BY c DESC, b LIMIT 4 OFFSET 2",
			"SELECT DISTINCT c, b FROM %s ORDER BY c DESC, b LIMIT 6",
			Plan{Distinct: true, Sort: []SortKey{sk(0, true, true), asc(1)}, Limit: 4, Offset: 2}, true},
	}
}

// pgResult runs sql and returns its columns and rows as DataRow bodies.
func pgResult(ctx context.Context, c *pgconn.PgConn, sql string, format int16) ([]pgconn.FieldDescription, [][]byte, error) {
	rr := c.ExecParams(ctx, sql, nil, nil, nil, []int16{format})
	var rows [][]byte
	for rr.NextRow() {
		rows = append(rows, row(slices.Clone(rr.Values())...))
	}
	fds := slices.Clone(rr.FieldDescriptions())
	_, err := rr.Close()
	return fds, rows, err
}

// TestMatchesPostgres runs each query on one PostgreSQL server holding every
// row, and its rewrite on four shard tables whose results the merge
// combines, and checks the results are the same bytes, in text and in
// binary.
func TestMatchesPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	if err := pgcluster.PostgresAvailable(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run the Postgres tests: %v", err)
		}
		t.Skipf("no PostgreSQL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sh, err := pgcluster.StartShard(ctx, "gather", 0, pgcluster.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sh.Close(); err != nil {
			t.Error(err)
		}
	})
	conn, err := sh.Primary.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	pc := conn.PgConn()
	// A zone with daylight saving time gives timestamptz text several
	// offsets.
	if err := pc.Exec(ctx, "SET TimeZone = 'America/New_York';"+pgSetup).Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range pgCases() {
		for _, format := range []int16{0, 1} {
			t.Run(fmt.Sprintf("%s/%s", tc.name, []string{"text", "binary"}[format]), func(t *testing.T) {
				wantFields, want, err := pgResult(ctx, pc, tc.oracle, format)
				if err != nil {
					t.Fatalf("%s: %v", tc.oracle, err)
				}
				var cols []Column
				var srcs []Source
				for i := 0; i < 4; i++ {
					fds, rows, err := pgResult(ctx, pc, fmt.Sprintf(tc.shard, fmt.Sprintf("t%d", i)), format)
					if err != nil {
						t.Fatalf("%s: %v", tc.shard, err)
					}
					if cols == nil {
						for _, fd := range fds {
							cols = append(cols, Column{Name: fd.Name, TypeOID: fd.DataTypeOID, TypeSize: fd.DataTypeSize,
								TypeModifier: fd.TypeModifier, Format: fd.Format, TableOID: fd.TableOID, TableAttributeNumber: fd.TableAttributeNumber})
						}
					}
					srcs = append(srcs, src(rows...))
				}
				m, err := NewMerger(tc.plan, cols)
				if err != nil {
					t.Fatal(err)
				}
				cc := m.ClientColumns()
				if len(cc) != len(wantFields) {
					t.Fatalf("%d client columns, want %d", len(cc), len(wantFields))
				}
				for i, fd := range wantFields {
					c := cc[i]
					if c.Name != fd.Name || c.TypeOID != fd.DataTypeOID || c.Format != fd.Format || c.TypeSize != fd.DataTypeSize || c.TypeModifier != fd.TypeModifier {
						t.Errorf("column %d: got %+v, want %+v", i, c, fd)
					}
				}
				got, err := runAll(t, m, srcs, tc.plan.Limit, tc.plan.Offset)
				if err != nil {
					t.Fatal(err)
				}
				if !tc.ordered {
					slices.SortFunc(got, bytes.Compare)
					slices.SortFunc(want, bytes.Compare)
				}
				if len(want) == 0 && !strings.Contains(tc.name, "no rows") {
					t.Fatalf("the query returns nothing: the case tests little")
				}
				if !slices.EqualFunc(got, want, bytes.Equal) {
					n := 0
					for n < min(len(got), len(want)) && bytes.Equal(got[n], want[n]) {
						n++
					}
					show := func(rows [][]byte) string {
						if n < len(rows) {
							return fmt.Sprintf("%q (%x)", textRow(t, rows[n]), rows[n])
						}
						return "nothing"
					}
					t.Fatalf("%d rows, want %d; first difference at row %d: got %s, want %s", len(got), len(want), n, show(got), show(want))
				}
			})
		}
	}
}
