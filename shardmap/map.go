package shardmap

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/shardwire/shardwire/config"
)

// Strategy is how a table's rows are spread over shards.
type Strategy string

// The strategies a table may declare.
const (
	Hash       Strategy = "hash"
	List       Strategy = "list"
	Range      Strategy = "range"
	Replicated Strategy = "replicated"
)

var (
	// ErrNoShard is wrapped by Locate errors for a list or range value that
	// matches no shard in a table without a default shard.
	ErrNoShard = errors.New("no shard holds this key")
	// ErrReplicated is wrapped by Locate errors for a replicated table,
	// whose rows are on every shard.
	ErrReplicated = errors.New("the table is replicated on every shard")
)

// Map is a validated, immutable shard map. Its methods are safe for
// concurrent use.
type Map struct {
	shards   []string
	shardIdx map[string]int32
	def      string
	vnodes   int
	ring     ring
	tables   map[string]*Table
	names    []string // table names, sorted
	version  string
}

// Table is one table listed in the shard map.
type Table struct {
	m        *Map
	name     string
	key      string
	typ      KeyType
	strategy Strategy
	list     map[string]int32 // normalised value -> shard
	listVals []listEntry      // the same, sorted by value, for Compare and Version
	ranges   []rangeEntry     // sorted by from; open from first
	def      int32            // default shard, or -1
	on       []string         // shards the table may have rows on, in config order
}

type listEntry struct {
	norm  string
	shard int32
}

// rangeEntry is [from, to) in normalised bytes; nil is an open end.
type rangeEntry struct {
	from, to []byte
	shard    int32
}

// New builds the shard map of cfg and validates it. Its error is
// config.Errors, each positioned at the offending key of cfg's file.
func New(cfg *config.Config) (*Map, error) {
	if cfg == nil {
		return nil, config.Errors{{File: "", Reason: "no configuration"}}
	}
	var errs config.Errors
	bad := func(path, format string, args ...any) {
		errs = append(errs, cfg.Errorf(path, format, args...))
	}
	m := &Map{shardIdx: map[string]int32{}, tables: map[string]*Table{}, vnodes: cfg.Ring.VNodes}
	for i, s := range cfg.Shards {
		p := fmt.Sprintf("shards.%d", i)
		switch {
		case s.Name == "":
			bad(p, "shard %d has no name", i)
			continue
		case strings.ContainsAny(s.Name, "\x00"):
			bad(p+".name", "shard name %q contains a NUL byte", s.Name)
			continue
		}
		if _, dup := m.shardIdx[s.Name]; dup {
			bad(p+".name", "shard %q is listed twice", s.Name)
			continue
		}
		m.shardIdx[s.Name] = int32(len(m.shards))
		m.shards = append(m.shards, s.Name)
	}
	if len(cfg.Shards) == 0 {
		bad("shards", "at least one shard is required")
	}
	m.def = cfg.DefaultShardName()
	if _, ok := m.shardIdx[m.def]; !ok && len(m.shards) > 0 {
		bad("default_shard", "default_shard %q is not a shard", m.def)
	}
	if m.vnodes < 1 || m.vnodes > 65536 {
		bad("ring.vnodes", "ring.vnodes must be between 1 and 65536")
	}

	raw := make([]string, 0, len(cfg.Tables))
	for name := range cfg.Tables {
		raw = append(raw, name)
	}
	slices.Sort(raw)
	from := map[string]string{} // canonical name -> name in the file
	for _, rawName := range raw {
		p := "tables." + rawName
		name, err := CanonicalTable(rawName)
		if err != nil {
			bad(p, "table name %q: %v", rawName, err)
			continue
		}
		if other, dup := from[name]; dup {
			bad(p, "table %s is listed twice (as %q and %q)", name, other, rawName)
			continue
		}
		from[name] = rawName
		t, terrs := m.newTable(cfg, p, name, cfg.Tables[rawName])
		errs = append(errs, terrs...)
		if t != nil {
			m.tables[name] = t
			m.names = append(m.names, name)
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *config.Error) int { return cmp.Compare(a.Line, b.Line) })
		return nil, errs
	}
	slices.Sort(m.names)
	m.ring = newRing(m.shards, m.vnodes)
	m.version = m.computeVersion()
	return m, nil
}

func (m *Map) newTable(cfg *config.Config, p, name string, ct config.Table) (*Table, config.Errors) {
	var errs config.Errors
	bad := func(path, format string, args ...any) {
		errs = append(errs, cfg.Errorf(path, format, args...))
	}
	t := &Table{m: m, name: name, def: -1}
	switch st := Strategy(strings.ToLower(strings.TrimSpace(ct.Strategy))); st {
	case Hash, List, Range, Replicated:
		t.strategy = st
	case "":
		bad(p, "table %s has no strategy (hash, list, range or replicated)", name)
		return nil, errs
	default:
		bad(p+".strategy", "table %s: strategy %q is not one of hash, list, range, replicated", name, ct.Strategy)
		return nil, errs
	}
	typeOK := false
	if ct.Type != "" {
		if t.typ, typeOK = ParseKeyType(ct.Type); !typeOK {
			bad(p+".type", "table %s: key type %q is not one of bigint, integer, text, uuid, date, timestamp, timestamptz", name, ct.Type)
		}
	}
	if ct.Key != "" {
		k, err := canonicalIdent(ct.Key)
		if err != nil {
			bad(p+".key", "table %s: key column %q: %v", name, ct.Key, err)
		}
		t.key = k
	}
	if t.strategy == Replicated {
		if len(ct.Lists) > 0 {
			bad(p+".lists", "table %s is replicated: it has no lists", name)
		}
		if len(ct.Ranges) > 0 {
			bad(p+".ranges", "table %s is replicated: it has no ranges", name)
		}
		if ct.Default != "" {
			bad(p+".default", "table %s is replicated: it has no default shard", name)
		}
		t.on = m.shards
		return t, errs
	}
	if ct.Key == "" {
		bad(p, "table %s has no key (strategy %s needs one)", name, t.strategy)
	}
	if ct.Type == "" {
		bad(p, "table %s has no key type (one of bigint, integer, text, uuid, date, timestamp, timestamptz)", name)
	}
	if ct.Default != "" {
		if t.strategy == Hash {
			bad(p+".default", "table %s: a hash table has no default shard", name)
		} else if i, ok := m.shardIdx[ct.Default]; !ok {
			bad(p+".default", "table %s: default shard %q is not a shard", name, ct.Default)
		} else {
			t.def = i
		}
	}
	if t.strategy != List && len(ct.Lists) > 0 {
		bad(p+".lists", "table %s: lists belong to strategy list, not %s", name, t.strategy)
	}
	if t.strategy != Range && len(ct.Ranges) > 0 {
		bad(p+".ranges", "table %s: ranges belong to strategy range, not %s", name, t.strategy)
	}
	switch t.strategy {
	case Hash:
		t.on = m.shards
	case List:
		errs = append(errs, t.buildLists(cfg, p, ct, typeOK)...)
	case Range:
		errs = append(errs, t.buildRanges(cfg, p, ct, typeOK)...)
	}
	return t, errs
}

func (t *Table) buildLists(cfg *config.Config, p string, ct config.Table, typeOK bool) config.Errors {
	var errs config.Errors
	bad := func(path, format string, args ...any) {
		errs = append(errs, cfg.Errorf(path, format, args...))
	}
	if len(ct.Lists) == 0 {
		bad(p, "table %s has strategy list but no lists", t.name)
		return errs
	}
	// Visit lists in file order so "in two lists" points at the later one.
	shards := make([]string, 0, len(ct.Lists))
	for s := range ct.Lists {
		shards = append(shards, s)
	}
	slices.SortFunc(shards, func(a, b string) int {
		if c := cmp.Compare(cfg.Line(p+".lists."+a), cfg.Line(p+".lists."+b)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	type seenAt struct{ shard, text string }
	seen := map[string]seenAt{}
	t.list = map[string]int32{}
	for _, s := range shards {
		lp := p + ".lists." + s
		idx, ok := t.m.shardIdx[s]
		if !ok {
			bad(lp, "table %s: lists name %q, which is not a shard", t.name, s)
		}
		for j, v := range ct.Lists[s] {
			vp := lp + "." + strconv.Itoa(j)
			if !typeOK {
				continue
			}
			norm, err := AppendText(nil, t.typ, v, nil)
			if err != nil {
				bad(vp, "table %s: list value %q: %v", t.name, v, err)
				continue
			}
			if prev, dup := seen[string(norm)]; dup {
				if prev.shard == s {
					bad(vp, "table %s: value %q is listed twice for shard %s", t.name, v, s)
				} else {
					bad(vp, "table %s: value %q is in the lists of both %s and %s", t.name, v, prev.shard, s)
				}
				continue
			}
			seen[string(norm)] = seenAt{s, v}
			if ok {
				t.list[string(norm)] = idx
				t.listVals = append(t.listVals, listEntry{string(norm), idx})
			}
		}
	}
	slices.SortFunc(t.listVals, func(a, b listEntry) int { return t.compare([]byte(a.norm), []byte(b.norm)) })
	t.on = t.shardsUsed(func(i int32) bool {
		for _, e := range t.listVals {
			if e.shard == i {
				return true
			}
		}
		return false
	})
	return errs
}

func (t *Table) buildRanges(cfg *config.Config, p string, ct config.Table, typeOK bool) config.Errors {
	var errs config.Errors
	bad := func(path, format string, args ...any) {
		errs = append(errs, cfg.Errorf(path, format, args...))
	}
	if len(ct.Ranges) == 0 {
		bad(p, "table %s has strategy range but no ranges", t.name)
		return errs
	}
	type indexed struct {
		rangeEntry
		i int
	}
	var rs []indexed
	for i, r := range ct.Ranges {
		rp := fmt.Sprintf("%s.ranges.%d", p, i)
		ok := true
		idx, known := t.m.shardIdx[r.Shard]
		switch {
		case r.Shard == "":
			bad(rp, "table %s: range %d has no shard", t.name, i)
			ok = false
		case !known:
			bad(rp+".shard", "table %s: range %d: %q is not a shard", t.name, i, r.Shard)
			ok = false
		}
		if !typeOK {
			continue
		}
		e := indexed{rangeEntry{shard: idx}, i}
		for _, b := range []struct {
			name, text string
			dst        *[]byte
		}{{"from", r.From, &e.from}, {"to", r.To, &e.to}} {
			if b.text == "" {
				continue
			}
			norm, err := AppendText(nil, t.typ, b.text, nil)
			if err != nil {
				bad(rp+"."+b.name, "table %s: range %d: %s %q: %v", t.name, i, b.name, b.text, err)
				ok = false
				continue
			}
			*b.dst = norm
		}
		if ok && e.from != nil && e.to != nil && t.compare(e.from, e.to) >= 0 {
			bad(rp, "table %s: range %d is empty: from %s is not before to %s", t.name, i, r.From, r.To)
			ok = false
		}
		if ok {
			rs = append(rs, e)
		}
	}
	slices.SortStableFunc(rs, func(a, b indexed) int { return t.compareLow(a.from, b.from) })
	for k := 1; k < len(rs); k++ {
		prev, cur := rs[k-1], rs[k]
		if prev.to == nil || cur.from == nil || t.compare(prev.to, cur.from) > 0 {
			later := max(prev.i, cur.i)
			bad(fmt.Sprintf("%s.ranges.%d", p, later), "table %s: ranges %d and %d overlap", t.name, min(prev.i, cur.i), later)
		}
	}
	for _, r := range rs {
		t.ranges = append(t.ranges, r.rangeEntry)
	}
	t.on = t.shardsUsed(func(i int32) bool {
		for _, r := range t.ranges {
			if r.shard == i {
				return true
			}
		}
		return false
	})
	return errs
}

// shardsUsed lists, in config order, the shards for which used is true or
// that are the table's default.
func (t *Table) shardsUsed(used func(int32) bool) []string {
	var on []string
	for i, s := range t.m.shards {
		if used(int32(i)) || int32(i) == t.def {
			on = append(on, s)
		}
	}
	return on
}

// compare orders two normalised values of the table's type: integers,
// dates and timestamps numerically, text and uuids by bytes.
func (t *Table) compare(a, b []byte) int {
	if t.typ.signed() && len(a) > 0 && len(b) > 0 && a[0] != b[0] {
		return cmp.Compare(a[0]^0x80, b[0]^0x80)
	}
	return bytes.Compare(a, b)
}

// compareLow orders lower bounds, nil (open) first.
func (t *Table) compareLow(a, b []byte) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return t.compare(a, b)
}

// canonicalIdent folds an unquoted identifier to lower case, as Postgres
// does, and unquotes a double-quoted one.
func canonicalIdent(s string) (string, error) {
	parts, err := splitIdent(s)
	if err != nil {
		return "", err
	}
	if len(parts) != 1 {
		return "", errors.New("a column name has no dots")
	}
	return parts[0], nil
}

// CanonicalTable resolves a table name as Postgres resolves an identifier in
// SQL: unquoted parts are folded to lower case, double-quoted parts are kept
// as written, and the schema public is dropped ("Public.Orders" is
// "orders"). Map.Table takes names in this form.
func CanonicalTable(s string) (string, error) {
	parts, err := splitIdent(s)
	if err != nil {
		return "", err
	}
	switch len(parts) {
	case 1:
		return parts[0], nil
	case 2:
		if parts[0] == "public" {
			return parts[1], nil
		}
		return parts[0] + "." + parts[1], nil
	}
	return "", errors.New("use table or schema.table")
}

func splitIdent(s string) ([]string, error) {
	var parts []string
	i := 0
	for {
		var part string
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, errors.New("unterminated quoted identifier")
				}
				if s[j] == '"' {
					if j+1 < len(s) && s[j+1] == '"' {
						b.WriteByte('"')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			part, i = b.String(), j+1
		} else {
			j := i
			for j < len(s) && s[j] != '.' {
				c := s[j]
				if c == '"' || isSpace(c) || c == 0 {
					return nil, fmt.Errorf("%q is not allowed in an unquoted identifier", string(c))
				}
				j++
			}
			part = strings.Map(func(r rune) rune {
				if r >= 'A' && r <= 'Z' {
					return r + 'a' - 'A'
				}
				return r
			}, s[i:j])
			i = j
		}
		if part == "" || strings.IndexByte(part, 0) >= 0 {
			return nil, errors.New("empty identifier")
		}
		parts = append(parts, part)
		if i == len(s) {
			return parts, nil
		}
		if s[i] != '.' {
			return nil, errors.New("text after a quoted identifier")
		}
		i++
	}
}

// Shards returns the shard names in config order (a copy).
func (m *Map) Shards() []string { return slices.Clone(m.shards) }

// HasShard reports whether the map has a shard of that name.
func (m *Map) HasShard(name string) bool { _, ok := m.shardIdx[name]; return ok }

// Only returns the map's shard and true when it has one shard and lists no
// tables: every statement then goes to that shard, whatever it says.
func (m *Map) Only() (string, bool) {
	if len(m.shards) != 1 || len(m.tables) != 0 {
		return "", false
	}
	return m.shards[0], true
}

// DefaultShard is the shard of tables the map does not list.
func (m *Map) DefaultShard() string { return m.def }

// VNodes is the number of ring points per shard.
func (m *Map) VNodes() int { return m.vnodes }

// Version is a short content hash of everything that decides placement
// (shards in order, default shard, ring size, tables), so two maps with the
// same Version place every key alike.
func (m *Map) Version() string { return m.version }

// Table returns a listed table by the name Postgres resolves (an unquoted
// name lower-cased; "public.orders" and "orders" are the same). A table that
// is not listed is unsharded and lives on DefaultShard.
func (m *Map) Table(name string) (*Table, bool) {
	if t, ok := m.tables[name]; ok {
		return t, true
	}
	if rest, ok := strings.CutPrefix(name, "public."); ok {
		t, ok := m.tables[rest]
		return t, ok
	}
	return nil, false
}

// Tables returns the listed tables sorted by name.
func (m *Map) Tables() []*Table {
	out := make([]*Table, len(m.names))
	for i, n := range m.names {
		out[i] = m.tables[n]
	}
	return out
}

// Name is the table's canonical name.
func (t *Table) Name() string { return t.name }

// Key is the shard key column (lower-cased unless quoted); empty for a
// replicated table without one.
func (t *Table) Key() string { return t.key }

// Type is the declared key type; empty for a replicated table without one.
func (t *Table) Type() KeyType { return t.typ }

// Strategy is how the table is spread over shards.
func (t *Table) Strategy() Strategy { return t.strategy }

// Replicated reports whether the table has a full copy on every shard.
func (t *Table) Replicated() bool { return t.strategy == Replicated }

// Default returns the shard of list or range values that match nothing.
func (t *Table) Default() (string, bool) {
	if t.def < 0 {
		return "", false
	}
	return t.m.shards[t.def], true
}

// Shards returns the shards the table may have rows on, in config order:
// every shard for hash and replicated tables, the shards named by lists or
// ranges (and the default) otherwise. The caller must not modify it.
func (t *Table) Shards() []string { return t.on }

// LocateText returns the shard of the key value v in its text form;
// timestamptz values without an offset are taken as UTC.
func (t *Table) LocateText(v string) (string, error) { return t.LocateTextIn(v, nil) }

// LocateTextIn is LocateText with the session time zone for timestamptz
// values without an offset.
func (t *Table) LocateTextIn(v string, loc *time.Location) (string, error) {
	if t.strategy == Replicated {
		return "", t.replicatedError()
	}
	var buf [16]byte
	b, err := AppendText(buf[:0], t.typ, v, loc)
	if err != nil {
		return "", t.valueError(err)
	}
	return t.Locate(b)
}

// LocateBinary returns the shard of a binary-format bind parameter of type
// oid (0 if unspecified); see AppendBinary.
func (t *Table) LocateBinary(oid uint32, v []byte) (string, error) {
	if t.strategy == Replicated {
		return "", t.replicatedError()
	}
	if t.typ == Text && (oid == OIDUnspecified || textOID(oid)) {
		// The normalised form of text is the value itself: no copy.
		if bytes.IndexByte(v, 0) >= 0 {
			return "", t.valueError(nulError(Text))
		}
		return t.Locate(v)
	}
	var buf [16]byte
	b, err := AppendBinary(buf[:0], t.typ, oid, v)
	if err != nil {
		return "", t.valueError(err)
	}
	return t.Locate(b)
}

// Locate returns the shard of an already normalised key value.
func (t *Table) Locate(norm []byte) (string, error) {
	switch t.strategy {
	case Hash:
		return t.m.shards[t.m.ring.locate(xxhash.Sum64(norm))], nil
	case List:
		if s, ok := t.list[string(norm)]; ok {
			return t.m.shards[s], nil
		}
	case Range:
		if s, ok := t.rangeShard(norm); ok {
			return t.m.shards[s], nil
		}
	case Replicated:
		return "", t.replicatedError()
	}
	if t.def >= 0 {
		return t.m.shards[t.def], nil
	}
	v, err := FormatValue(t.typ, norm)
	if err != nil {
		v = hex.EncodeToString(norm)
	}
	what := "is in no list"
	if t.strategy == Range {
		what = "is in no range"
	}
	return "", fmt.Errorf("table %s: %w: key %s = %s %s and the table has no default shard", t.name, ErrNoShard, t.key, quoteValue(v), what)
}

// rangeShard finds the range holding v: the last range whose from is <= v,
// if v is before its to.
func (t *Table) rangeShard(v []byte) (int32, bool) {
	lo, hi := 0, len(t.ranges)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if f := t.ranges[mid].from; f == nil || t.compare(f, v) <= 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return 0, false
	}
	r := &t.ranges[lo-1]
	if r.to == nil || t.compare(v, r.to) < 0 {
		return r.shard, true
	}
	return 0, false
}

func (t *Table) valueError(err error) error {
	return fmt.Errorf("table %s, key %s: %w", t.name, t.key, err)
}

func (t *Table) replicatedError() error {
	return fmt.Errorf("table %s: %w", t.name, ErrReplicated)
}

// describe is a one-line summary: "hash bigint customer_id".
func (t *Table) describe() string {
	if t.strategy == Replicated {
		return string(Replicated)
	}
	return fmt.Sprintf("%s %s %s", t.strategy, t.typ, t.key)
}

func (m *Map) computeVersion() string {
	var b strings.Builder
	fmt.Fprintf(&b, "shardmap 1\nshards %q\ndefault %q\nvnodes %d\n", m.shards, m.def, m.vnodes)
	for _, n := range m.names {
		t := m.tables[n]
		fmt.Fprintf(&b, "table %q %s %s %q default %d\n", n, t.strategy, t.typ, t.key, t.def)
		for _, e := range t.listVals {
			fmt.Fprintf(&b, " list %x %d\n", e.norm, e.shard)
		}
		for _, r := range t.ranges {
			fmt.Fprintf(&b, " range %x %t %x %t %d\n", r.from, r.from == nil, r.to, r.to == nil, r.shard)
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8])
}

// Holder holds the current Map; a reload swaps in a new one atomically while
// readers keep using the Map they loaded.
type Holder struct {
	p atomic.Pointer[Map]
}

// NewHolder returns a Holder holding m.
func NewHolder(m *Map) *Holder {
	h := &Holder{}
	h.p.Store(m)
	return h
}

// Load returns the current Map.
func (h *Holder) Load() *Map { return h.p.Load() }

// Swap installs m and returns the Map it replaces.
func (h *Holder) Swap(m *Map) *Map { return h.p.Swap(m) }
