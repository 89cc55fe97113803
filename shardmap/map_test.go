package shardmap

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/shardwire/shardwire/config"
)

var testEnv = map[string]string{"APP_PASSWORD": "secret1", "OPS_PASSWORD": "secret2"}

func lookup(k string) (string, bool) { v, ok := testEnv[k]; return v, ok }

// specMap loads the project's copy of the canonical config.
func specMap(t testing.TB) *Map {
	t.Helper()
	data, err := os.ReadFile("../configs/shardwire.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return mapFrom(t, "shardwire.yaml", string(data))
}

func mapFrom(t testing.TB, name, yaml string) *Map {
	t.Helper()
	cfg, err := config.Parse(name, []byte(yaml), lookup)
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// header is a minimal valid config up to "tables:", 12 lines; a test's
// table lines start at line 13.
const header = `listen: 127.0.0.1:6432
database: app
users:
  - name: app
    password: x
shards:
  - name: s0
    primary: 127.0.0.1:15432
  - name: s1
    primary: 127.0.0.1:15532
default_shard: s0
tables:
`

const headerLines = 12

func TestSpecFile(t *testing.T) {
	t.Parallel()
	m := specMap(t)
	if got := m.Shards(); !slices.Equal(got, []string{"s0", "s1"}) {
		t.Errorf("Shards() = %v", got)
	}
	if m.DefaultShard() != "s0" || m.VNodes() != 256 {
		t.Errorf("DefaultShard() = %q, VNodes() = %d", m.DefaultShard(), m.VNodes())
	}
	if v := m.Version(); len(v) != 16 || v != specMap(t).Version() {
		t.Errorf("Version() = %q: want 16 hex digits, the same for the same file", v)
	}
	tables := []struct {
		name, key string
		typ       KeyType
		strategy  Strategy
		shards    []string
	}{
		{"customers", "id", Bigint, Hash, []string{"s0", "s1"}},
		{"orders", "customer_id", Bigint, Hash, []string{"s0", "s1"}},
		{"stores", "region", Text, List, []string{"s0", "s1"}},
		{"events", "created_at", Date, Range, []string{"s0", "s1"}},
		{"countries", "", "", Replicated, []string{"s0", "s1"}},
	}
	for _, want := range tables {
		tb, ok := m.Table(want.name)
		if !ok {
			t.Errorf("table %s missing", want.name)
			continue
		}
		if tb.Name() != want.name || tb.Key() != want.key || tb.Type() != want.typ || tb.Strategy() != want.strategy ||
			tb.Replicated() != (want.strategy == Replicated) || !slices.Equal(tb.Shards(), want.shards) {
			t.Errorf("table %s = %s %q %s %s %v", want.name, tb.Strategy(), tb.Key(), tb.Type(), tb.Name(), tb.Shards())
		}
		if q, ok := m.Table("public." + want.name); !ok || q != tb {
			t.Errorf("public.%s does not find the table", want.name)
		}
	}
	if got := len(m.Tables()); got != len(tables) {
		t.Errorf("Tables() has %d tables, want %d", got, len(tables))
	}
	for _, name := range []string{"users", "ORDERS", "other.orders", ""} {
		if _, ok := m.Table(name); ok {
			t.Errorf("Table(%q) found a table; want it unlisted", name)
		}
	}
	locs := []struct {
		table, key, want string
		err              error
	}{
		{"stores", "eu", "s0", nil},
		{"stores", "uk", "s0", nil},
		{"stores", "us", "s1", nil},
		{"stores", "ca", "s1", nil},
		{"stores", "EU", "", ErrNoShard},
		{"stores", "fr", "", ErrNoShard},
		{"events", "2025-12-31", "s0", nil},
		{"events", "2025-12-31 23:59:59", "s0", nil},
		{"events", "2026-01-01", "s1", nil},
		{"events", "-infinity", "s0", nil},
		{"events", "infinity", "s1", nil},
		{"countries", "x", "", ErrReplicated},
	}
	for _, l := range locs {
		tb, _ := m.Table(l.table)
		got, err := tb.LocateText(l.key)
		if got != l.want || !errors.Is(err, l.err) {
			t.Errorf("%s %q: got %q, %v; want %q, %v", l.table, l.key, got, err, l.want, l.err)
		}
	}
	countries, _ := m.Table("countries")
	if _, err := countries.LocateBinary(OIDInt8, be64(1)); !errors.Is(err, ErrReplicated) {
		t.Errorf("LocateBinary on a replicated table: %v", err)
	}
}

func TestTableNames(t *testing.T) {
	t.Parallel()
	m := mapFrom(t, "n.yaml", header+`  Orders: { key: Customer_ID, type: bigint, strategy: hash }
  public.items: { key: id, type: bigint, strategy: hash }
  '"Mixed"': { key: '"Key"', type: text, strategy: hash }
  sales.facts: { key: id, type: int8, strategy: hash }
`)
	cases := []struct {
		lookup, name, key string
		found             bool
	}{
		{"orders", "orders", "customer_id", true},
		{"public.orders", "orders", "customer_id", true},
		{"Orders", "", "", false},
		{"items", "items", "id", true},
		{"public.items", "items", "id", true},
		{"Mixed", "Mixed", "Key", true},
		{"mixed", "", "", false},
		{"sales.facts", "sales.facts", "id", true},
		{"facts", "", "", false},
	}
	for _, c := range cases {
		tb, ok := m.Table(c.lookup)
		if ok != c.found || (ok && (tb.Name() != c.name || tb.Key() != c.key)) {
			t.Errorf("Table(%q) = %v, %v", c.lookup, tb, ok)
		}
	}
	if tb, _ := m.Table("sales.facts"); tb.Type() != Bigint {
		t.Errorf("int8 is type %q, want bigint", tb.Type())
	}
}

func TestValidationErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		tables string
		line   int // within tables, 1-based
		reason string
	}{
		{"unknown shard in lists", `  t:
    key: region
    type: text
    strategy: list
    lists:
      s0: [eu]
      s9: [us]
`, 7, `lists name "s9", which is not a shard`},
		{"value in two lists", `  t:
    key: region
    type: text
    strategy: list
    lists:
      s0: [eu, uk]
      s1:
        - us
        - uk
`, 9, `value "uk" is in the lists of both s0 and s1`},
		{"value in two lists after normalisation", `  t:
    key: id
    type: bigint
    strategy: list
    lists:
      s0: [1, 2]
      s1: ["+2"]
`, 7, `value "+2" is in the lists of both s0 and s1`},
		{"value twice in one list", `  t:
    key: region
    type: text
    strategy: list
    lists:
      s0:
        - eu
        - eu
`, 8, `value "eu" is listed twice for shard s0`},
		{"list value that does not parse", `  t:
    key: id
    type: bigint
    strategy: list
    lists:
      s0:
        - 1
        - x1
`, 8, `list value "x1": invalid input syntax for type bigint`},
		{"list value out of range", `  t:
    key: id
    type: integer
    strategy: list
    lists:
      s0:
        - 3000000000
`, 7, `out of range for type integer`},
		{"list without lists", `  t:
    key: id
    type: bigint
    strategy: list
`, 1, `has strategy list but no lists`},
		{"list with unknown default", `  t:
    key: id
    type: bigint
    strategy: list
    lists: { s0: [1] }
    default: s7
`, 6, `default shard "s7" is not a shard`},
		{"overlapping ranges", `  t:
    key: d
    type: date
    strategy: range
    ranges:
      - { shard: s0, to: 2026-02-01 }
      - { shard: s1, from: 2026-01-01 }
`, 7, `ranges 0 and 1 overlap`},
		{"two open starts", `  t:
    key: d
    type: bigint
    strategy: range
    ranges:
      - { shard: s0, to: 10 }
      - { shard: s1, to: 20 }
`, 7, `ranges 0 and 1 overlap`},
		{"overlap is numeric, not textual", `  t:
    key: n
    type: bigint
    strategy: range
    ranges:
      - { shard: s0, from: -100, to: 9 }
      - { shard: s1, from: 10, to: 100 }
      - { shard: s0, from: 50 }
`, 8, `ranges 1 and 2 overlap`},
		{"empty range", `  t:
    key: d
    type: date
    strategy: range
    ranges:
      - { shard: s0, from: 2026-01-01, to: 2026-01-01 }
`, 6, `range 0 is empty`},
		{"range on an unknown shard", `  t:
    key: d
    type: date
    strategy: range
    ranges:
      - shard: s0
        to: 2026-01-01
      - shard: s3
        from: 2026-01-01
`, 8, `range 1: "s3" is not a shard`},
		{"range without shard", `  t:
    key: d
    type: date
    strategy: range
    ranges:
      - from: 2026-01-01
`, 6, `range 0 has no shard`},
		{"range bound that does not parse", `  t:
    key: d
    type: date
    strategy: range
    ranges:
      - shard: s0
        to: 2026-13-01
`, 7, `to "2026-13-01": date/time field value out of range`},
		{"range without ranges", `  t:
    key: d
    type: date
    strategy: range
`, 1, `has strategy range but no ranges`},
		{"no key", `  t:
    type: bigint
    strategy: hash
`, 1, `table t has no key (strategy hash needs one)`},
		{"no type", `  t:
    key: id
    strategy: hash
`, 1, `table t has no key type`},
		{"unknown type", `  t:
    key: id
    type: float8
    strategy: hash
`, 3, `key type "float8" is not one of`},
		{"unknown strategy", `  t:
    key: id
    type: bigint
    strategy: modulo
`, 4, `strategy "modulo" is not one of hash, list, range, replicated`},
		{"no strategy", `  t:
    key: id
    type: bigint
`, 1, `table t has no strategy`},
		{"hash with ranges", `  t:
    key: id
    type: bigint
    strategy: hash
    ranges: [ { shard: s0 } ]
`, 5, `ranges belong to strategy range, not hash`},
		{"hash with lists", `  t:
    key: id
    type: bigint
    strategy: hash
    lists: { s0: [1] }
`, 5, `lists belong to strategy list, not hash`},
		{"hash with default", `  t:
    key: id
    type: bigint
    strategy: hash
    default: s0
`, 5, `a hash table has no default shard`},
		{"range with lists", `  t:
    key: id
    type: bigint
    strategy: range
    ranges: [ { shard: s0 } ]
    lists: { s0: [1] }
`, 6, `lists belong to strategy list, not range`},
		{"replicated with lists", `  t:
    strategy: replicated
    lists: { s0: [1] }
`, 3, `table t is replicated: it has no lists`},
		{"replicated with default", `  t:
    strategy: replicated
    default: s1
`, 3, `table t is replicated: it has no default shard`},
		{"replicated with a bad type", `  t:
    strategy: replicated
    type: money
`, 3, `key type "money" is not one of`},
		{"a table listed twice", `  orders: { key: id, type: bigint, strategy: hash }
  public.orders: { key: id, type: bigint, strategy: hash }
`, 2, `table orders is listed twice (as "orders" and "public.orders")`},
		{"a bad table name", `  '"unterminated': { key: id, type: bigint, strategy: hash }
`, 1, `unterminated quoted identifier`},
		{"a three-part table name", `  a.b.c: { key: id, type: bigint, strategy: hash }
`, 1, `use table or schema.table`},
		{"a bad key column", `  t: { key: a.b, type: bigint, strategy: hash }
`, 1, `key column "a.b": a column name has no dots`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Parse("bad.yaml", []byte(header+c.tables), lookup)
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			m, err := New(cfg)
			if err == nil {
				t.Fatalf("New accepted it: version %s", m.Version())
			}
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v is not config.Errors", err)
			}
			wantLine := headerLines + c.line
			for _, e := range errs {
				if e.File == "bad.yaml" && e.Line == wantLine && strings.Contains(e.Reason, c.reason) {
					if got, want := e.Error(), fmt.Sprintf("bad.yaml:%d: ", wantLine); !strings.HasPrefix(got, want) {
						t.Errorf("%q does not start with %q", got, want)
					}
					return
				}
			}
			t.Errorf("no error at bad.yaml:%d containing %q; got:\n%v", wantLine, c.reason, err)
		})
	}
}

func TestValidationCollectsEveryError(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("many.yaml", []byte(header+`  a: { key: id, type: bigint, strategy: hash, default: s0 }
  b: { type: bigint, strategy: hash }
  c: { key: id, type: real, strategy: hash }
`), lookup)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg)
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v", err)
	}
	var lines []int
	for _, e := range errs {
		lines = append(lines, e.Line)
	}
	if want := []int{13, 14, 15}; !slices.Equal(lines, want) {
		t.Errorf("error lines %v, want %v (sorted, one per table):\n%v", lines, want, err)
	}
}

func TestNewWithoutShards(t *testing.T) {
	t.Parallel()
	cases := []*config.Config{
		{Path: "x.yaml", Ring: config.Ring{VNodes: 16}},
		{Path: "x.yaml", Shards: []config.Shard{{Name: "a"}, {Name: "a"}}, Ring: config.Ring{VNodes: 16}},
		{Path: "x.yaml", Shards: []config.Shard{{Name: "a"}}, Ring: config.Ring{VNodes: 0}},
		{Path: "x.yaml", Shards: []config.Shard{{Name: "a"}}, DefaultShard: "b", Ring: config.Ring{VNodes: 1}},
		nil,
	}
	for i, cfg := range cases {
		if _, err := New(cfg); err == nil {
			t.Errorf("case %d: New accepted %+v", i, cfg)
		}
	}
}

func TestListAndRangeEdges(t *testing.T) {
	t.Parallel()
	m := mapFrom(t, "edges.yaml", header+`  lb:
    key: id
    type: bigint
    strategy: list
    lists: { s0: [1, 2, -3], s1: [3] }
    default: s1
  ln:
    key: id
    type: uuid
    strategy: list
    lists: { s1: [a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11] }
  rb:
    key: n
    type: bigint
    strategy: range
    ranges:
      - { shard: s0, to: 0 }
      - { shard: s1, from: 0, to: 100 }
      - { shard: s0, from: 200 }
  rt:
    key: name
    type: text
    strategy: range
    default: s1
    ranges:
      - { shard: s0, from: a, to: m }
      - { shard: s1, from: m, to: "n" }
  rts:
    key: at
    type: timestamptz
    strategy: range
    ranges:
      - { shard: s0, to: "2026-01-01 00:00:00+00" }
      - { shard: s1, from: "2026-01-01 00:00:00+00" }
  ri:
    key: n
    type: integer
    strategy: range
    ranges:
      - { shard: s1, from: -5, to: 5 }
`)
	cases := []struct {
		table, key, want string
		noShard          bool
	}{
		{"lb", "1", "s0", false},
		{"lb", "02", "s0", false},
		{"lb", "-3", "s0", false},
		{"lb", "3", "s1", false},
		{"lb", "4", "s1", false}, // default
		{"ln", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "s1", false},
		{"ln", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12", "", true},
		{"rb", "-9223372036854775808", "s0", false},
		{"rb", "-1", "s0", false},
		{"rb", "0", "s1", false}, // from is inclusive
		{"rb", "99", "s1", false},
		{"rb", "100", "", true}, // to is exclusive; the gap has no default
		{"rb", "199", "", true},
		{"rb", "200", "s0", false},
		{"rb", "9223372036854775807", "s0", false},
		{"rt", "a", "s0", false},
		{"rt", "lemon", "s0", false},
		{"rt", "m", "s1", false},
		{"rt", "mzzz", "s1", false},
		{"rt", "n", "s1", false}, // past the last range: default
		{"rt", "M", "s1", false}, // 'M' < 'a' by bytes: default
		{"rt", "", "s1", false},
		{"rts", "2026-01-01 01:00:00+02", "s0", false}, // 2025-12-31 23:00 UTC
		{"rts", "2025-12-31 23:59:59.999999+00", "s0", false},
		{"rts", "2026-01-01 00:00:00+00", "s1", false},
		{"rts", "2025-12-31 19:00:00-05", "s1", false},
		{"ri", "-6", "", true},
		{"ri", "-5", "s1", false},
		{"ri", "4", "s1", false},
		{"ri", "5", "", true},
	}
	for _, c := range cases {
		tb, ok := m.Table(c.table)
		if !ok {
			t.Fatalf("no table %s", c.table)
		}
		got, err := tb.LocateText(c.key)
		if c.noShard {
			if !errors.Is(err, ErrNoShard) {
				t.Errorf("%s %q: got %q, %v; want ErrNoShard", c.table, c.key, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s %q: got %q, %v; want %q", c.table, c.key, got, err, c.want)
		}
	}
	rb, _ := m.Table("rb")
	for _, in := range []input{bin(OIDInt4, be32(-1)), bin(OIDInt2, be16(50)), bin(0, be64(250))} {
		got, err := rb.LocateBinary(in.oid, in.raw)
		want, _ := rb.LocateText(fmt.Sprint(int64FromBE(in.raw)))
		if err != nil || got != want {
			t.Errorf("rb binary %x: got %q, %v; want %q (as text)", in.raw, got, err, want)
		}
	}
	if got, _ := rb.Default(); got != "" {
		t.Errorf("rb has default %q, want none", got)
	}
	if got := rb.Shards(); !slices.Equal(got, []string{"s0", "s1"}) {
		t.Errorf("rb.Shards() = %v", got)
	}
	ri, _ := m.Table("ri")
	if got := ri.Shards(); !slices.Equal(got, []string{"s1"}) {
		t.Errorf("ri.Shards() = %v, want [s1]", got)
	}
	if _, err := ri.LocateText("x"); err == nil || !strings.Contains(err.Error(), "table ri, key n: invalid input syntax for type integer") {
		t.Errorf("bad value error: %v", err)
	}
	if _, err := rb.LocateText("150"); err == nil || !strings.Contains(err.Error(), `key n = "150" is in no range`) {
		t.Errorf("no-shard error: %v", err)
	}
}

func int64FromBE(b []byte) int64 {
	var n int64
	if len(b) > 0 && b[0]&0x80 != 0 {
		n = -1
	}
	for _, c := range b {
		n = n<<8 | int64(c)
	}
	return n
}

func TestVersionDiffers(t *testing.T) {
	t.Parallel()
	base := header + `  t: { key: id, type: bigint, strategy: hash }
`
	v := mapFrom(t, "a.yaml", base).Version()
	if mapFrom(t, "other-name.yaml", base).Version() != v {
		t.Error("the file name changes Version")
	}
	for _, other := range []string{
		header + "  t: { key: id, type: bigint, strategy: hash }\n  u: { strategy: replicated }\n",
		header + "  t: { key: id2, type: bigint, strategy: hash }\n",
		header + "  t: { key: id, type: text, strategy: hash }\n",
		header + "  t: { key: id, type: bigint, strategy: list, lists: { s0: [1] } }\n",
		header + "  t: { key: id, type: bigint, strategy: hash }\nring: { vnodes: 64 }\n",
		strings.Replace(base, "default_shard: s0", "default_shard: s1", 1),
	} {
		if mapFrom(t, "b.yaml", other).Version() == v {
			t.Errorf("Version does not change with:\n%s", other)
		}
	}
	l1 := mapFrom(t, "l.yaml", header+"  t: { key: id, type: bigint, strategy: list, lists: { s0: [1], s1: [2] } }\n").Version()
	l2 := mapFrom(t, "l.yaml", header+"  t: { key: id, type: bigint, strategy: list, lists: { s0: [2], s1: [1] } }\n").Version()
	if l1 == l2 {
		t.Error("swapping list values keeps Version")
	}
}

func TestHolder(t *testing.T) {
	t.Parallel()
	a := specMap(t)
	b := mapFrom(t, "b.yaml", header)
	h := NewHolder(a)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bad sync.Map
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if m := h.Load(); m != a && m != b {
					bad.Store("load", m)
				}
			}
		}()
	}
	cur := a
	for range 1000 {
		next := a
		if cur == a {
			next = b
		}
		if old := h.Swap(next); old != cur {
			t.Fatalf("Swap returned %p, want %p", old, cur)
		}
		cur = next
	}
	close(stop)
	wg.Wait()
	if v, ok := bad.Load("load"); ok {
		t.Errorf("Load returned a map that was never stored: %v", v)
	}
	if h.Load() != cur {
		t.Error("Load after the last Swap is not the last map")
	}
}

func TestOnly(t *testing.T) {
	t.Parallel()
	const one = `listen: 127.0.0.1:6432
database: app
users:
  - name: app
    password: x
shards:
  - name: solo
    primary: 127.0.0.1:15432
`
	cases := []struct {
		name      string
		yaml      string
		wantShard string
		wantOK    bool
	}{
		{"one shard, no tables", one, "solo", true},
		{"one shard with a table", one + "tables:\n  events: { key: id, type: bigint, strategy: hash }\n", "", false},
		{"two shards", header, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			shard, ok := mapFrom(t, "only.yaml", c.yaml).Only()
			if shard != c.wantShard || ok != c.wantOK {
				t.Fatalf("Only() = %q, %v; want %q, %v", shard, ok, c.wantShard, c.wantOK)
			}
		})
	}
}
