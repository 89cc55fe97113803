package router

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardwire/shardwire/shardmap"
)

// splitMapYAML is a three-shard map with a table of every key type and
// strategy, for the split tests.
const splitMapYAML = `database: app
users: [{name: app, password: x}]
shards:
  - {name: s0, primary: 127.0.0.1:20000}
  - {name: s1, primary: 127.0.0.1:20001}
  - {name: s2, primary: 127.0.0.1:20002}
default_shard: s0
tables:
  orders:    { key: customer_id, type: bigint, strategy: hash }
  items:     { key: code, type: text, strategy: hash }
  stores:    { key: region, type: text, strategy: list, lists: { s0: [eu, uk], s1: [us, ca], s2: [jp] } }
  events:    { key: created_at, type: date, strategy: range,
               ranges: [ { shard: s0, to: 2026-01-01 }, { shard: s1, from: 2026-01-01, to: 2027-01-01 }, { shard: s2, from: 2027-01-01 } ] }
  sessions:  { key: sid, type: uuid, strategy: hash }
  accounts:  { key: id, type: integer, strategy: hash }
  ticks:     { key: at, type: timestamptz, strategy: hash }
  stamps:    { key: at, type: timestamp, strategy: hash }
  countries: { strategy: replicated }
  '"Mixed"': { key: '"Key"', type: bigint, strategy: hash }
`

var (
	splitMapOnce sync.Once
	splitM       *shardmap.Map
	errSplitMap  error
)

func splitMap(t testing.TB) *shardmap.Map {
	t.Helper()
	splitMapOnce.Do(func() { splitM, errSplitMap = loadMap(splitMapYAML) })
	if errSplitMap != nil {
		t.Fatalf("loading the split map: %v", errSplitMap)
	}
	return splitM
}

// textParams are text-format parameters with unspecified types.
func textParams(vals ...string) *BindParams {
	b := &BindParams{}
	for _, v := range vals {
		b.Values = append(b.Values, []byte(v))
	}
	return b
}

func TestSplitInsert(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	const stores = "INSERT INTO stores (region, name) VALUES "
	cases := []struct {
		name   string
		sql    string
		params *BindParams
		opt    RouteOptions
		want   []InsertPart
		code   string // expected error code
		msg    string // in the error message
	}{
		{name: "two shards, RETURNING",
			sql: stores + "('eu', 'a'), ('us', 'b'), ('uk', 'c') RETURNING id",
			want: []InsertPart{
				{Shard: "s0", SQL: stores + "('eu', 'a'), ('uk', 'c') RETURNING id", Rows: []int{0, 2}},
				{Shard: "s1", SQL: stores + "('us', 'b') RETURNING id", Rows: []int{1}},
			}},
		{name: "one shard keeps the text",
			sql:  stores + "('eu', 'a'),('uk', 'b')",
			want: []InsertPart{{Shard: "s0", SQL: stores + "('eu', 'a'),('uk', 'b')", Rows: []int{0, 1}}}},
		{name: "comments, quoting, alias, parentheses in literals",
			sql: "/* c */ INSERT INTO public.stores AS s (\"region\", name) VALUES ('jp', '(x'), -- r2\n ('ca', E'\\')'),\n('eu', $$)$$) ON CONFLICT (region) DO UPDATE SET name = EXCLUDED.name RETURNING s.id;",
			want: []InsertPart{
				{Shard: "s2", SQL: "/* c */ INSERT INTO public.stores AS s (\"region\", name) VALUES ('jp', '(x') ON CONFLICT (region) DO UPDATE SET name = EXCLUDED.name RETURNING s.id;", Rows: []int{0}},
				{Shard: "s1", SQL: "/* c */ INSERT INTO public.stores AS s (\"region\", name) VALUES ('ca', E'\\')') ON CONFLICT (region) DO UPDATE SET name = EXCLUDED.name RETURNING s.id;", Rows: []int{1}},
				{Shard: "s0", SQL: "/* c */ INSERT INTO public.stores AS s (\"region\", name) VALUES ('eu', $$)$$) ON CONFLICT (region) DO UPDATE SET name = EXCLUDED.name RETURNING s.id;", Rows: []int{2}},
			}},
		{name: "parameters renumbered",
			sql:    stores + "($1, $2), ($3, $4) ON CONFLICT (region) DO UPDATE SET name = $5",
			params: textParams("eu", "x", "us", "y", "z"),
			want: []InsertPart{
				{Shard: "s0", SQL: stores + "($1, $2) ON CONFLICT (region) DO UPDATE SET name = $3", Rows: []int{0}, Params: []int{1, 2, 5}},
				{Shard: "s1", SQL: stores + "($1, $2) ON CONFLICT (region) DO UPDATE SET name = $3", Rows: []int{1}, Params: []int{3, 4, 5}},
			}},
		{name: "a parameter in several rows",
			sql:    stores + "($2, $1), ($3, $1), ($2, 'x')",
			params: textParams("n", "eu", "us"),
			want: []InsertPart{
				{Shard: "s0", SQL: stores + "($2, $1), ($2, 'x')", Rows: []int{0, 2}, Params: []int{1, 2}},
				{Shard: "s1", SQL: stores + "($2, $1)", Rows: []int{1}, Params: []int{1, 3}},
			}},
		{name: "one shard with parameters",
			sql:    stores + "($1, $2), ($1, $3)",
			params: textParams("eu", "a", "b"),
			want:   []InsertPart{{Shard: "s0", SQL: stores + "($1, $2), ($1, $3)", Rows: []int{0, 1}, Params: []int{1, 2, 3}}}},
		{name: "OVERRIDING SYSTEM VALUE",
			sql: "INSERT INTO stores (region) OVERRIDING SYSTEM VALUE VALUES ('eu'), ('us')",
			want: []InsertPart{
				{Shard: "s0", SQL: "INSERT INTO stores (region) OVERRIDING SYSTEM VALUE VALUES ('eu')", Rows: []int{0}},
				{Shard: "s1", SQL: "INSERT INTO stores (region) OVERRIDING SYSTEM VALUE VALUES ('us')", Rows: []int{1}},
			}},
		{name: "casts and nested expressions",
			sql: "INSERT INTO events (created_at, n) VALUES ('2025-05-01'::date, (1+(2))), (DATE '2026-02-01', 3), (CAST('2027-03-01' AS date), 4)",
			want: []InsertPart{
				{Shard: "s0", SQL: "INSERT INTO events (created_at, n) VALUES ('2025-05-01'::date, (1+(2)))", Rows: []int{0}},
				{Shard: "s1", SQL: "INSERT INTO events (created_at, n) VALUES (DATE '2026-02-01', 3)", Rows: []int{1}},
				{Shard: "s2", SQL: "INSERT INTO events (created_at, n) VALUES (CAST('2027-03-01' AS date), 4)", Rows: []int{2}},
			}},
		{name: "a replicated table read in a row",
			sql: stores + "('eu', (SELECT name FROM countries WHERE code = 'x')), ('us', 'y')",
			want: []InsertPart{
				{Shard: "s0", SQL: stores + "('eu', (SELECT name FROM countries WHERE code = 'x'))", Rows: []int{0}},
				{Shard: "s1", SQL: stores + "('us', 'y')", Rows: []int{1}},
			}},
		{name: "unsharded table",
			sql:  "INSERT INTO logs (a) VALUES (1), (2)",
			want: []InsertPart{{Shard: "s0", SQL: "INSERT INTO logs (a) VALUES (1), (2)", Rows: []int{0, 1}}}},
		{name: "session shard",
			sql: stores + "('eu', 'a'), ('us', 'b')", opt: RouteOptions{Shard: "s2"},
			want: []InsertPart{{Shard: "s2", SQL: stores + "('eu', 'a'), ('us', 'b')", Rows: []int{0, 1}}}},
		{name: "key hint",
			sql: stores + "('eu', 'a'), ('us', 'b')", opt: RouteOptions{Hints: Hints{Key: "jp", HasKey: true}},
			want: []InsertPart{{Shard: "s2", SQL: stores + "('eu', 'a'), ('us', 'b')", Rows: []int{0, 1}}}},

		{name: "WITH", sql: "WITH x AS (SELECT 1) " + stores + "('eu', 'a'), ('us', 'b')", code: "0A000", msg: "WITH clause"},
		{name: "INSERT SELECT", sql: "INSERT INTO stores (region, name) SELECT region, name FROM staging", code: "0A000", msg: "no usable value"},
		{name: "DEFAULT key", sql: stores + "('eu', 'a'), (DEFAULT, 'b')", code: "0A000", msg: "no usable value"},
		{name: "expression key", sql: stores + "('eu', 'a'), (lower('US'), 'b')", code: "0A000", msg: "no usable value"},
		{name: "NULL key", sql: stores + "('eu', 'a'), (NULL, 'b')", code: "0A000", msg: "no usable value"},
		{name: "key update on conflict", sql: stores + "('eu', 'a'), ('us', 'b') ON CONFLICT (name) DO UPDATE SET region = 'eu'", code: "0A000", msg: "region"},
		{name: "LIMIT after VALUES", sql: stores + "('eu', 'a'), ('us', 'b') LIMIT 1", code: "0A000", msg: `"LIMIT" after the VALUES list`},
		{name: "ORDER BY after VALUES", sql: stores + "('eu', 'a'), ('us', 'b') ORDER BY 1", code: "0A000", msg: `"ORDER" after the VALUES list`},
		{name: "replicated", sql: "INSERT INTO countries (code) VALUES ('x'), ('y')", code: "0A000", msg: "replicated table"},
		{name: "two statements", sql: stores + "('eu', 'a'); " + stores + "('us', 'b')", code: "0A000", msg: "single INSERT"},
		{name: "reads the sharded table", sql: stores + "('eu', (SELECT max(name) FROM stores WHERE region IN ('eu', 'us'))), ('us', 'b')",
			code: "0A000", msg: `cannot also read table "stores"`},
		{name: "no shard holds the key", sql: stores + "('eu', 'a'), ('zz', 'b')", code: "23514"},
		{name: "bad bigint", sql: "INSERT INTO orders (customer_id) VALUES (1), ('abc')", code: "22P02"},
		{name: "missing parameter", sql: stores + "($1, 'a'), ($2, 'b')", params: textParams("eu"), code: "0A000"},
		{name: "missing parameter outside the key", sql: stores + "($1, $3), ($2, 'b')", params: textParams("eu", "us"), code: "08P01", msg: "$3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var params Params
			if c.params != nil {
				params = c.params
			}
			got, err := a.SplitInsert(c.sql, params, m, c.opt)
			if c.code != "" {
				var re *RouteError
				if !errors.As(err, &re) || re.Code != c.code || !strings.Contains(re.Msg, c.msg) {
					t.Fatalf("SplitInsert(%q) = %+v, %v; want a %s error containing %q", c.sql, got, err, c.code, c.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("SplitInsert(%q): %v", c.sql, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("SplitInsert(%q) =\n%s\nwant\n%s", c.sql, fmtParts(got), fmtParts(c.want))
			}
			checkParts(t, a, m, c.sql, c.params, c.opt, got)
		})
	}
}

func fmtParts(ps []InsertPart) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %s rows %v params %v: %s\n", p.Shard, p.Rows, p.Params, p.SQL)
	}
	return b.String()
}

// checkParts checks what holds for every split: the parts' rows partition
// the statement's rows, and each part, split again with its own Bind, is
// one part on the same shard with all its rows.
func checkParts(t testing.TB, a *Analyzer, m *shardmap.Map, sql string, bp *BindParams, opt RouteOptions, parts []InsertPart) {
	t.Helper()
	if len(parts) == 0 {
		t.Fatalf("SplitInsert(%q): no parts", sql)
	}
	if len(parts) == 1 {
		if parts[0].SQL != sql {
			t.Fatalf("one part of %q changed the text: %q", sql, parts[0].SQL)
		}
		return
	}
	var all []int
	seen := map[string]bool{}
	for _, p := range parts {
		if seen[p.Shard] || !m.HasShard(p.Shard) {
			t.Fatalf("%q: part on %q twice or unknown", sql, p.Shard)
		}
		seen[p.Shard] = true
		if !slices.IsSorted(p.Rows) || len(p.Rows) == 0 {
			t.Fatalf("%q: part rows %v not sorted", sql, p.Rows)
		}
		all = append(all, p.Rows...)
		var params Params
		if bp != nil {
			b := p.Bind(bp)
			params = &b
		} else if p.Params != nil {
			t.Fatalf("%q: Params %v for a simple query", sql, p.Params)
		}
		again, err := a.SplitInsert(p.SQL, params, m, opt)
		if err != nil || len(again) != 1 || again[0].Shard != p.Shard || len(again[0].Rows) != len(p.Rows) {
			t.Fatalf("part %q of %q splits again into %s, %v; want one part on %s with %d rows",
				p.SQL, sql, fmtParts(again), err, p.Shard, len(p.Rows))
		}
	}
	slices.Sort(all)
	if !slices.Equal(all, seq(0, len(all))) {
		t.Fatalf("%q: part rows %v do not partition the rows", sql, all)
	}
}

// keyForms are key values of each table in forms a statement may write
// them.
var keyForms = []struct {
	table, key string
	vals       []string
}{
	{"orders", "customer_id", []string{"1", "-5", "- 7", "'42'", "'  43  '", "'44'::bigint", "0x1F", "1_000",
		"9223372036854775807", `E'4\x35'`, "$$46$$", "CAST('47' AS int8)", "'+48'", "-9223372036854775808", "49", "50", "51"}},
	{"items", "code", []string{"'a'", "'it''s'", `E'tab\tx'`, "$q$dollar$q$", `U&'d\0061t\+000061'`,
		"'con'\n'tinued'", "''", "' a '", "'Ünï'", "'b'", "'c'", "'d'", "'e'::text", "CAST('f' AS varchar)"}},
	{"events", "created_at", []string{"'2025-12-31'", "DATE '2026-01-01'", "'2027-06-01'::date", "'infinity'", "'-infinity'"}},
	{"sessions", "sid", []string{"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'{A0EEBC999C0B4EF8BB6D6BB9BD380A12}'",
		"'a0eebc999c0b4ef8bb6d6bb9bd380a13'", "'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a14'", "uuid 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a15'"}},
	{"accounts", "id", []string{"7", "'-2147483648'", "2147483647", "8", "9", "10", "11"}},
	{"ticks", "at", []string{"'2026-01-01 00:00:00+00'", "'2026-01-01 10:00:00+05'", "'2026-01-01 10:00:00'", "'2026-01-01T10:00:00.123456Z'",
		"'2026-03-04 05:06:07-08:30'", "timestamptz '2026-03-04 05:06:07'"}},
	{"stamps", "at", []string{"'2026-01-01 10:00:00'", "'2026-01-01T10:00:00.5'", "'2026-01-01 10:00:00+07'", "timestamp '2026-05-05 05:05:05'", "'2027-01-01'"}},
	{`"Mixed"`, `"Key"`, []string{"1", "2", "3", "4", "5", "6"}},
}

// TestSplitInsertMatchesRoute: every row of a split lands where Route
// sends a single-row INSERT with that row's key, for every key type and
// way of writing a value.
func TestSplitInsertMatchesRoute(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	loc := time.FixedZone("x", 3*3600)
	opt := RouteOptions{Loc: loc}
	for _, kf := range keyForms {
		var rows []string
		for i, v := range kf.vals {
			rows = append(rows, fmt.Sprintf("(%s, %d)", v, i))
		}
		sql := fmt.Sprintf("INSERT INTO %s (%s, n) VALUES %s RETURNING *", kf.table, kf.key, strings.Join(rows, ", "))
		parts, err := a.SplitInsert(sql, nil, m, opt)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if len(parts) < 2 {
			t.Errorf("%s: the values all land on %s; the test wants several shards", kf.table, parts[0].Shard)
		}
		checkParts(t, a, m, sql, nil, opt, parts)
		for _, p := range parts {
			for _, r := range p.Rows {
				one := fmt.Sprintf("INSERT INTO %s (%s, n) VALUES %s", kf.table, kf.key, rows[r])
				var s Scratch
				route, err := a.Route(a.ClassifyWith(&s, one), one, s.Literals(), nil, m, opt)
				if err != nil {
					t.Fatalf("Route(%q): %v", one, err)
				}
				if sh, ok := route.Single(); !ok || sh != p.Shard {
					t.Errorf("row %s of %s: split to %s, Route says %v", rows[r], kf.table, p.Shard, route)
				}
			}
		}
	}
}

// TestSplitInsertParamsMatchRoute: rows keyed by $n, in text and binary,
// land where Route sends a one-row INSERT with the same parameter, and
// each part's Bind carries the right values.
func TestSplitInsertParamsMatchRoute(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	type param struct {
		v   []byte
		bin bool
		oid uint32
	}
	var ps []param
	for i := int64(0); i < 12; i++ {
		switch i % 4 {
		case 0:
			ps = append(ps, param{[]byte(fmt.Sprint(i * 7919)), false, 0})
		case 1:
			ps = append(ps, param{be64(i * 7919), true, shardmap.OIDInt8})
		case 2:
			ps = append(ps, param{be32(int32(i * 7919)), true, 0})
		case 3:
			ps = append(ps, param{[]byte(fmt.Sprint(i * 7919)), false, shardmap.OIDInt8})
		}
	}
	bp := &BindParams{}
	var rows []string
	for i, p := range ps {
		bp.Values = append(bp.Values, p.v, []byte(fmt.Sprint("note", i)))
		f := int16(0)
		if p.bin {
			f = 1
		}
		bp.Formats = append(bp.Formats, f, 0)
		bp.Types = append(bp.Types, p.oid, 0)
		rows = append(rows, fmt.Sprintf("($%d, $%d)", 2*i+1, 2*i+2))
	}
	sql := "INSERT INTO orders (customer_id, note) VALUES " + strings.Join(rows, ", ") + " RETURNING id"
	parts, err := a.SplitInsert(sql, bp, m, RouteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 2 {
		t.Fatalf("all rows on one shard: %s", fmtParts(parts))
	}
	checkParts(t, a, m, sql, bp, RouteOptions{}, parts)
	one := "INSERT INTO orders (customer_id, note) VALUES ($1, 'x')"
	an, lits := a.Prepare(one)
	for _, p := range parts {
		b := p.Bind(bp)
		if len(b.Values) != 2*len(p.Rows) {
			t.Fatalf("part %s: %d values for %d rows", p.Shard, len(b.Values), len(p.Rows))
		}
		for j, r := range p.Rows {
			// The part's $2j+1 is the original key of row r.
			if !slices.Equal(b.Values[2*j], ps[r].v) || (b.Formats[2*j] == 1) != ps[r].bin || b.Types[2*j] != ps[r].oid ||
				string(b.Values[2*j+1]) != fmt.Sprint("note", r) {
				t.Fatalf("part %s row %d: Bind value %x/%d/%d, want %x", p.Shard, r, b.Values[2*j], b.Formats[2*j], b.Types[2*j], ps[r].v)
			}
			single := &BindParams{Values: [][]byte{ps[r].v}, Types: []uint32{ps[r].oid}}
			if ps[r].bin {
				single.Formats = []int16{1}
			}
			route, err := a.Route(an, one, lits, single, m, RouteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sh, _ := route.Single(); sh != p.Shard {
				t.Errorf("row %d: split to %s, Route says %v", r, p.Shard, route)
			}
		}
	}
}

func TestInsertPartBind(t *testing.T) {
	t.Parallel()
	orig := &BindParams{Values: [][]byte{[]byte("a"), nil, []byte("c")}, Formats: []int16{1}, Types: []uint32{25, 23}}
	p := InsertPart{Params: []int{3, 2}}
	got := p.Bind(orig)
	want := BindParams{Values: [][]byte{[]byte("c"), nil}, Formats: []int16{1}, Types: []uint32{0, 23}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Bind = %+v, want %+v", got, want)
	}
	orig.Formats = []int16{0, 1, 0}
	if got := p.Bind(orig); !slices.Equal(got.Formats, []int16{0, 1}) {
		t.Fatalf("per-value formats: %v", got.Formats)
	}
	if got := p.Bind(nil); got.Values != nil {
		t.Fatalf("Bind(nil) = %+v", got)
	}
}

func BenchmarkSplitInsert(b *testing.B) {
	m := splitMap(b)
	a := NewAnalyzer(Config{})
	var rows []string
	for i := 0; i < 100; i++ {
		rows = append(rows, fmt.Sprintf("(%d, 'note %d', %d.50)", i*31, i, i))
	}
	sql := "INSERT INTO orders (customer_id, note, total) VALUES " + strings.Join(rows, ", ") + " RETURNING id"
	b.SetBytes(int64(len(sql)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		parts, err := a.SplitInsert(sql, nil, m, RouteOptions{})
		if err != nil || len(parts) != 3 {
			b.Fatal(len(parts), err)
		}
	}
}

// splitSeeds are statements for FuzzSplitInsert.
var splitSeeds = []string{
	"INSERT INTO stores (region, name) VALUES ('eu', 'a'), ('us', 'b'), ('uk', 'c') RETURNING id",
	"/* c */ INSERT INTO public.stores AS s (\"region\", name) VALUES ('jp', '(x'), -- r2\n ('ca', E'\\')'),\n('eu', $$)$$) ON CONFLICT (region) DO UPDATE SET name = EXCLUDED.name RETURNING s.id;",
	"INSERT INTO stores (region, name) VALUES ($1, $2), ($3, $4) ON CONFLICT (region) DO UPDATE SET name = $5",
	"INSERT INTO stores (region, name) VALUES ($2, $1), ($3, $1), ($2, 'x')",
	"INSERT INTO stores (region) OVERRIDING SYSTEM VALUE VALUES ('eu'), ('us')",
	"INSERT INTO events (created_at, n) VALUES ('2025-05-01'::date, (1+(2))), (DATE '2026-02-01', 3), (CAST('2027-03-01' AS date), 4)",
	"INSERT INTO orders (customer_id, note) VALUES (1, 'a'), (-2, 'b'), ($4, $5), ('7', $1)",
	"INSERT INTO stores (region, name) VALUES ('eu', 'a'), ('us', 'b') LIMIT 1",
	"WITH x AS (SELECT 1) INSERT INTO stores (region) VALUES ('eu'), ('us')",
	"INSERT INTO stores (region, name) VALUES ('eu', (SELECT name FROM countries WHERE code = 'x')), ('us', 'y')",
}

// FuzzSplitInsert: SplitInsert never panics, refuses only with a
// *RouteError, and what it splits passes checkParts: the parts partition
// the rows and each part, split again with its Bind, stays whole on its
// shard.
func FuzzSplitInsert(f *testing.F) {
	m := splitMap(f)
	a := NewAnalyzer(Config{})
	for _, s := range splitSeeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, sql string, withParams bool) {
		var bp *BindParams
		var params Params
		if withParams {
			bp = textParams("eu", "us", "jp", "1", "2", "x", "uk", "ca", "7")
			params = bp
		}
		parts, err := a.SplitInsert(sql, params, m, RouteOptions{})
		if err != nil {
			var re *RouteError
			if !errors.As(err, &re) {
				t.Fatalf("SplitInsert(%q): %T %v is not a *RouteError", sql, err, err)
			}
			return
		}
		checkParts(t, a, m, sql, bp, RouteOptions{}, parts)
	})
}
