package shardmap

import "testing"

func TestColocated(t *testing.T) {
	t.Parallel()
	m := mapFrom(t, "shardwire.yaml", header+`  a:     { key: id, type: bigint, strategy: hash }
  b:     { key: aid, type: integer, strategy: hash }
  c:     { key: code, type: text, strategy: hash }
  l1:    { key: r, type: text, strategy: list, lists: { s0: [eu, uk], s1: [us] } }
  l2:    { key: r, type: text, strategy: list, lists: { s0: [uk, eu], s1: [us] } }
  l3:    { key: r, type: text, strategy: list, lists: { s0: [eu], s1: [us, uk] } }
  l4:    { key: r, type: text, strategy: list, lists: { s0: [eu, uk], s1: [us] }, default: s1 }
  r1:    { key: d, type: date, strategy: range, ranges: [ { shard: s0, to: 2026-01-01 }, { shard: s1, from: 2026-01-01 } ] }
  r2:    { key: d, type: date, strategy: range, ranges: [ { shard: s1, from: 2026-01-01 }, { shard: s0, to: 2026-01-01 } ] }
  r3:    { key: d, type: date, strategy: range, ranges: [ { shard: s0, to: 2026-02-01 }, { shard: s1, from: 2026-02-01 } ] }
  r4:    { key: d, type: date, strategy: range, ranges: [ { shard: s0, from: 2020-01-01, to: 2026-01-01 }, { shard: s1, from: 2026-01-01 } ] }
  rep:   { strategy: replicated }
`)
	other := mapFrom(t, "other.yaml", header+`  a:     { key: id, type: bigint, strategy: hash }
`)
	tab := func(m *Map, name string) *Table {
		x, ok := m.Table(name)
		if !ok {
			t.Fatalf("no table %s", name)
		}
		return x
	}
	oa := tab(other, "a")
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"a", "a", true},
		{"a", "b", true}, // integer and bigint normalise alike
		{"a", "c", false},
		{"l1", "l2", true}, // same lists in another order
		{"l1", "l3", false},
		{"l1", "l4", false}, // a default shard differs
		{"l1", "c", false},  // list vs hash
		{"r1", "r2", true},
		{"r1", "r3", false},
		{"r1", "r4", false}, // an open end differs from a bound
		{"rep", "rep", false},
		{"rep", "a", false},
	} {
		ta, tb := tab(m, c.a), tab(m, c.b)
		if got := ta.Colocated(tb); got != c.want {
			t.Errorf("%s.Colocated(%s) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := tb.Colocated(ta); got != c.want {
			t.Errorf("%s.Colocated(%s) = %v, want %v (not symmetric)", c.b, c.a, got, c.want)
		}
	}
	if tab(m, "a").Colocated(oa) {
		t.Error("tables of two maps are co-located")
	}
	if tab(m, "a").Colocated(nil) {
		t.Error("a table is co-located with nil")
	}
}
