package shardmap

import (
	"cmp"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"strings"
)

// Comparison is what changes between two shard maps, as an operator needs
// it before a reload: which shards and tables come and go, and for each
// table which keys change shard.
type Comparison struct {
	OldVersion, NewVersion     string
	ShardsAdded, ShardsRemoved []string
	OldDefault, NewDefault     string
	TablesAdded, TablesRemoved []string
	// Tables has one entry per table listed in either map, sorted by name.
	Tables []TableChange
}

// TableChange is what changes for one table.
type TableChange struct {
	Table    string
	Old, New string // "hash bigint customer_id", "replicated", "unsharded on s0", …
	// Moved is the share of the key space whose shard changes, computed
	// exactly from the ring arcs: the fraction of the 2^64 hash values whose
	// owner differs between the two maps. For uniformly hashed keys it is
	// the expected share of rows that move. HasMoved is false where it does
	// not apply (list, range, replicated, or a changed key).
	Moved    float64
	HasMoved bool
	// Flows splits Moved by (old shard, new shard), sorted by From then To.
	Flows []Flow
	// Notes describe list, range, replication and strategy changes in words.
	Notes []string
}

// Flow is the share of a table's key space that moves from one shard to another.
type Flow struct {
	From, To string
	Share    float64
}

// Changed reports whether the table's placement changes at all.
func (tc TableChange) Changed() bool {
	return tc.Old != tc.New || (tc.HasMoved && tc.Moved > 0) || len(tc.Notes) > 0
}

// Table returns the change of one table.
func (c Comparison) Table(name string) (TableChange, bool) {
	for _, tc := range c.Tables {
		if tc.Table == name {
			return tc, true
		}
	}
	return TableChange{}, false
}

// u128 counts hash values; the whole space, 2^64, needs 65 bits.
type u128 struct{ hi, lo uint64 }

func (a u128) add(b u128) u128 {
	lo, c := bits.Add64(a.lo, b.lo, 0)
	return u128{a.hi + b.hi + c, lo}
}

// share is a / 2^64.
func (a u128) share() float64 { return float64(a.hi) + float64(a.lo)/(1<<64) }

// ringDiff walks the union of both rings' points. Between two consecutive
// points (a, b] neither ring has a point, so every hash there has the owner
// of b in each ring; the wrap-around arc (last, 2^64) ∪ [0, first] belongs
// to the owners of the first point. Summing arc lengths per (old, new)
// owner pair gives the exact share of the hash space that moves.
func ringDiff(or *ring, oshards []string, nr *ring, nshards []string) (u128, map[[2]string]u128) {
	bounds := make([]uint64, 0, len(or.points)+len(nr.points))
	bounds = append(bounds, or.points...)
	bounds = append(bounds, nr.points...)
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)
	var moved u128
	flows := map[[2]string]u128{}
	count := func(b uint64, n u128) {
		from, to := oshards[or.locate(b)], nshards[nr.locate(b)]
		if from != to {
			moved = moved.add(n)
			k := [2]string{from, to}
			flows[k] = flows[k].add(n)
		}
	}
	first, last := bounds[0], bounds[len(bounds)-1]
	// Wrap arc: 2^64 - last + first values (last = first = 0 gives 2^64).
	wrap := u128{1, 0}
	if last != 0 {
		wrap = u128{0, -last}
	}
	count(first, wrap.add(u128{0, first}))
	for i := 1; i < len(bounds); i++ {
		count(bounds[i], u128{0, bounds[i] - bounds[i-1]})
	}
	return moved, flows
}

// placement is a table's placement in one map, for Compare.
type placement struct {
	m     *Map
	t     *Table // nil: not listed, so unsharded on the default shard
	ring  *ring  // for hash and unsharded tables
	descr string
}

func placementOf(m *Map, name string) placement {
	if t, ok := m.tables[name]; ok {
		p := placement{m: m, t: t, descr: t.describe()}
		if t.strategy == Hash {
			p.ring = &m.ring
		}
		return p
	}
	r := constRing(m.shardIdx[m.def])
	return placement{m: m, ring: &r, descr: "unsharded on " + m.def}
}

// Compare describes what changes from old to new.
func Compare(old, new *Map) Comparison {
	c := Comparison{
		OldVersion: old.version, NewVersion: new.version,
		OldDefault: old.def, NewDefault: new.def,
	}
	for _, s := range new.shards {
		if !old.HasShard(s) {
			c.ShardsAdded = append(c.ShardsAdded, s)
		}
	}
	for _, s := range old.shards {
		if !new.HasShard(s) {
			c.ShardsRemoved = append(c.ShardsRemoved, s)
		}
	}
	names := slices.Clone(old.names)
	for _, n := range new.names {
		if _, ok := old.tables[n]; !ok {
			names = append(names, n)
			c.TablesAdded = append(c.TablesAdded, n)
		}
	}
	for _, n := range old.names {
		if _, ok := new.tables[n]; !ok {
			c.TablesRemoved = append(c.TablesRemoved, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		c.Tables = append(c.Tables, compareTable(n, placementOf(old, n), placementOf(new, n), c.ShardsAdded, c.ShardsRemoved))
	}
	return c
}

func compareTable(name string, o, n placement, added, removed []string) TableChange {
	tc := TableChange{Table: name, Old: o.descr, New: n.descr}
	note := func(format string, args ...any) { tc.Notes = append(tc.Notes, fmt.Sprintf(format, args...)) }
	sameKey := o.t != nil && n.t != nil && o.t.key == n.t.key && o.t.typ == n.t.typ
	switch {
	case o.ring != nil && n.ring != nil && (o.t == nil || n.t == nil || sameKey):
		moved, flows := ringDiff(o.ring, o.m.shards, n.ring, n.m.shards)
		tc.Moved, tc.HasMoved = moved.share(), true
		for k, v := range flows {
			tc.Flows = append(tc.Flows, Flow{k[0], k[1], v.share()})
		}
		slices.SortFunc(tc.Flows, func(a, b Flow) int {
			return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
		})
	case o.t != nil && n.t != nil && o.t.strategy == n.t.strategy && n.t.strategy == Replicated:
		if len(added) > 0 {
			note("copy the table to the new shards %s", strings.Join(added, ", "))
		}
		if len(removed) > 0 {
			note("its copies on the removed shards %s go away", strings.Join(removed, ", "))
		}
	case o.t != nil && n.t != nil && o.t.strategy == n.t.strategy && sameKey && n.t.strategy == List:
		tc.Notes = diffLists(o.t, n.t)
	case o.t != nil && n.t != nil && o.t.strategy == n.t.strategy && sameKey && n.t.strategy == Range:
		tc.Notes = diffRanges(o.t, n.t)
	case o.t != nil && n.t != nil && o.t.strategy == n.t.strategy:
		note("the shard key changes from %s %s to %s %s: every row may move", o.t.typ, o.t.key, n.t.typ, n.t.key)
	default:
		note("placement changes from %s to %s: every row must be placed again", o.descr, n.descr)
	}
	return tc
}

// ownerName is the shard a normalised value goes to, or "" for none.
func ownerName(t *Table, v []byte) string {
	s, err := t.Locate(v)
	if err != nil {
		return ""
	}
	return s
}

func shownShard(s string) string {
	if s == "" {
		return "(no shard: an error)"
	}
	return s
}

func showValue(t *Table, v []byte) string {
	s, err := FormatValue(t.typ, v)
	if err != nil {
		return fmt.Sprintf("%x", v)
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func diffLists(o, n *Table) []string {
	var vals [][]byte
	for _, e := range o.listVals {
		vals = append(vals, []byte(e.norm))
	}
	for _, e := range n.listVals {
		if _, ok := o.list[e.norm]; !ok {
			vals = append(vals, []byte(e.norm))
		}
	}
	slices.SortFunc(vals, n.compare)
	var notes []string
	for _, v := range vals {
		if a, b := ownerName(o, v), ownerName(n, v); a != b {
			notes = append(notes, fmt.Sprintf("value %s: %s -> %s", showValue(n, v), shownShard(a), shownShard(b)))
		}
	}
	od, _ := o.Default()
	nd, _ := n.Default()
	if od != nd {
		notes = append(notes, fmt.Sprintf("values in no list: %s -> %s", shownShard(od), shownShard(nd)))
	}
	return notes
}

// lowOwner is the shard of values below every bound: the range with an
// open from, else the default.
func lowOwner(t *Table) string {
	if len(t.ranges) > 0 && t.ranges[0].from == nil {
		return t.m.shards[t.ranges[0].shard]
	}
	d, _ := t.Default()
	return d
}

func diffRanges(o, n *Table) []string {
	var bounds [][]byte
	for _, t := range []*Table{o, n} {
		for _, r := range t.ranges {
			for _, b := range [][]byte{r.from, r.to} {
				if b != nil {
					bounds = append(bounds, b)
				}
			}
		}
	}
	slices.SortFunc(bounds, n.compare)
	bounds = slices.CompactFunc(bounds, func(a, b []byte) bool { return n.compare(a, b) == 0 })
	// Segment i is [bounds[i-1], bounds[i]); segment 0 starts open, the last ends open.
	type seg struct {
		from, to []byte
		a, b     string
	}
	var segs []seg
	add := func(s seg) {
		if k := len(segs) - 1; k >= 0 && segs[k].a == s.a && segs[k].b == s.b {
			segs[k].to = s.to
			return
		}
		segs = append(segs, s)
	}
	var first []byte
	if len(bounds) > 0 {
		first = bounds[0]
	}
	add(seg{nil, first, lowOwner(o), lowOwner(n)})
	for i, b := range bounds {
		var to []byte
		if i+1 < len(bounds) {
			to = bounds[i+1]
		}
		add(seg{b, to, ownerName(o, b), ownerName(n, b)})
	}
	var notes []string
	for _, s := range segs {
		if s.a == s.b {
			continue
		}
		lo, hi := "(-inf", "+inf)"
		if s.from != nil {
			lo = "[" + showValue(n, s.from)
		}
		if s.to != nil {
			hi = showValue(n, s.to) + ")"
		}
		notes = append(notes, fmt.Sprintf("%s, %s: %s -> %s", lo, hi, shownShard(s.a), shownShard(s.b)))
	}
	return notes
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

// Write prints the comparison for an operator; shares are percentages of
// the key space to 0.1%.
func (c Comparison) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "shard map %s -> %s\n", c.OldVersion, c.NewVersion)
	list := func(label string, xs []string) {
		if len(xs) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", label, strings.Join(xs, ", "))
		}
	}
	list("shards added", c.ShardsAdded)
	list("shards removed", c.ShardsRemoved)
	if c.OldDefault != c.NewDefault {
		fmt.Fprintf(&b, "default shard: %s -> %s (every table not listed moves)\n", c.OldDefault, c.NewDefault)
	}
	list("tables added", c.TablesAdded)
	list("tables removed", c.TablesRemoved)
	changed := len(c.ShardsAdded)+len(c.ShardsRemoved)+len(c.TablesAdded)+len(c.TablesRemoved) > 0 || c.OldDefault != c.NewDefault
	for _, tc := range c.Tables {
		descr := tc.New
		if tc.Old != tc.New {
			descr = tc.Old + " -> " + tc.New
		}
		fmt.Fprintf(&b, "table %s (%s):", tc.Table, descr)
		switch {
		case tc.HasMoved:
			fmt.Fprintf(&b, " %s of keys move\n", pct(tc.Moved))
			for _, f := range tc.Flows {
				fmt.Fprintf(&b, "  %s -> %s: %s\n", f.From, f.To, pct(f.Share))
			}
		case len(tc.Notes) == 0 && tc.Old == tc.New:
			b.WriteString(" unchanged\n")
		default:
			b.WriteString("\n")
		}
		for _, n := range tc.Notes {
			fmt.Fprintf(&b, "  %s\n", n)
		}
		changed = changed || tc.Changed()
	}
	if !changed {
		b.WriteString("no changes: every key stays on its shard\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// String is what Write prints.
func (c Comparison) String() string {
	var b strings.Builder
	_ = c.Write(&b)
	return b.String()
}
