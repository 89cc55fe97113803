package router

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/shardwire/shardwire/shardmap"
)

// Params gives the bind parameters of one extended-protocol execution.
// The proxy can implement it over a Bind message without copying, or fill
// a BindParams.
type Params interface {
	// Param returns parameter $n (n from 1): its bytes (nil for NULL),
	// whether it is in binary format, and its type OID as Parse gave it (0
	// if unspecified). ok is false if the statement has no parameter n.
	// Route does not keep the bytes.
	Param(n int) (value []byte, binary bool, oid uint32, ok bool)
}

// BindParams is a Params over the parts of a Bind message (values and
// format codes, as the protocol sends them) and the parameter types of its
// Parse message.
type BindParams struct {
	Values  [][]byte // nil is NULL
	Formats []int16  // none: all text; one: for all; else one per value (1 = binary)
	Types   []uint32 // parameter type OIDs from Parse; missing or 0 = unspecified
}

// Param implements Params.
func (b *BindParams) Param(n int) ([]byte, bool, uint32, bool) {
	if b == nil || n < 1 || n > len(b.Values) {
		return nil, false, 0, false
	}
	i := n - 1
	binary := false
	switch len(b.Formats) {
	case 0:
	case 1:
		binary = b.Formats[0] == 1
	default:
		binary = i < len(b.Formats) && b.Formats[i] == 1
	}
	var oid uint32
	if i < len(b.Types) {
		oid = b.Types[i]
	}
	return b.Values[i], binary, oid, true
}

// RouteBy says what decided a Route.
type RouteBy uint8

// Route reasons.
const (
	ByNoTable         RouteBy = iota // names no table (SELECT 1, SET, BEGIN): the default shard, but any would do
	ByDefault                        // only unsharded tables: the default shard
	ByKey                            // the key values of a sharded table
	ByNoRows                         // the key values match no row (k = NULL, a value no shard holds): any shard
	ByReplicatedRead                 // only replicated tables are read: any one shard of Shards
	ByReplicatedWrite                // a replicated table is written: every shard of Shards
	ByHintShard                      // a /* shardwire: shard=NAME */ hint
	ByHintKey                        // a /* shardwire: key=VALUE */ hint
	BySessionShard                   // SET shardwire.shard
	BySessionKey                     // SET shardwire.key
	ByUnparsed                       // not SQL the parser accepts: the default shard, whose server reports the error
	ByScatter                        // a sharded table without a usable key (SELECT, UPDATE, DELETE): every shard it may have rows on
)

var routeByNames = [...]string{"no table", "unsharded", "key", "no rows", "replicated read", "replicated write",
	"shard hint", "key hint", "session shard", "session key", "unparsed", "scatter"}

func (b RouteBy) String() string {
	if int(b) < len(routeByNames) {
		return routeByNames[b]
	}
	return "RouteBy(?)"
}

// Route is where a statement (or Query string) must run.
//
// A Route over several shards (not AnyShard) means the statement needs
// rows of every one of them: a key set spanning shards, or By ==
// ByScatter, where a SELECT, UPDATE or DELETE has no usable key for some
// sharded table and Shards is every shard that table may have rows on
// (Table.Shards). Every table of the statement still had to agree on that
// set: an unsharded table (default shard only) or a table keyed to fewer
// shards makes it an error, and a replicated table is on every shard. But
// Route does not check that running the statement on each shard and
// combining the results gives the answer one server would: a SELECT must
// be planned with PlanScatter, which checks joins, subqueries and
// aggregates and says how to merge (so do it for every statement that is
// not an UPDATE or DELETE: EXPLAIN, SELECT INTO, FOR UPDATE and
// data-modifying WITH are SELECTs to Route, and PlanScatter refuses
// them). An UPDATE or DELETE over several shards names exactly one
// sharded table occurrence (Route refuses joins and subqueries over
// other sharded tables there), so running it on each shard and summing
// the counts is right.
type Route struct {
	// Shards is the set of shards the statement must run on, sorted by name,
	// each once: usually one. With AnyShard, any one of them will do. The
	// slice is shared: do not modify it.
	Shards []string
	// AnyShard: running on any single shard of Shards gives the same
	// result (reads of replicated tables, statements that match no row).
	// The caller picks one, e.g. the shard its transaction is on.
	AnyShard bool
	// Replicated: a replicated table is written, so the statement must run
	// on every shard of Shards.
	Replicated bool
	// Default: no sharded or replicated table is involved; Shards is the
	// map's default shard.
	Default bool
	// NoTables: the statement names no table at all (SELECT 1, SET,
	// COMMIT, FETCH); Default is set too, but a caller whose transaction
	// is on another shard should run it there.
	NoTables bool
	By       RouteBy
	// Table and Key are the table (canonical name) and key column that
	// decided, for messages and logs; "" if none.
	Table, Key string
}

// Single returns the one shard of the route and true, or "" and false if
// it spans several shards (only AnyShard routes may then pick one).
func (r Route) Single() (string, bool) {
	if len(r.Shards) == 1 {
		return r.Shards[0], true
	}
	return "", false
}

// String describes the route for logs: "s1 (key orders.customer_id)".
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(strings.Join(r.Shards, ","))
	b.WriteString(" (")
	b.WriteString(r.By.String())
	if r.Table != "" {
		b.WriteByte(' ')
		b.WriteString(r.Table)
		if r.Key != "" {
			b.WriteByte('.')
			b.WriteString(r.Key)
		}
	}
	if r.AnyShard {
		b.WriteString(", any one")
	}
	b.WriteByte(')')
	return b.String()
}

// SQLSTATE codes of RouteError besides those of shardmap.ValueError.
const (
	CodeFeatureNotSupported = "0A000" // no usable key, key update, cross-shard statement
	CodeInvalidParameter    = "22023" // bad shard hint or setting
	CodeCheckViolation      = "23514" // INSERT of a key value no shard holds
	CodeSyntaxError         = "42601" // a literal Postgres would reject
	CodeInternal            = "XX000" // the caller passed inconsistent arguments
)

// RouteError is a statement the router refuses, with the SQLSTATE the
// client should get.
type RouteError struct {
	Code  string
	Msg   string // the whole message, "shardwire: …"
	Table string // the table concerned, if any
	Err   error  // the cause (a *shardmap.ValueError for bad key values), if any
}

func (e *RouteError) Error() string { return e.Msg }

// SQLState returns the SQLSTATE code.
func (e *RouteError) SQLState() string { return e.Code }

func (e *RouteError) Unwrap() error { return e.Err }

// RouteOptions are a session's routing inputs besides the statement.
type RouteOptions struct {
	// Loc is the session's TimeZone, for timestamptz key values without an
	// offset; nil means UTC.
	Loc *time.Location
	// Hints are the statement's shardwire hints (Inspect; for a Query
	// string of several statements, merged).
	Hints Hints
	// Shard is the session's SET shardwire.shard ("" when not set).
	Shard string
	// Key and HasKey are the session's SET shardwire.key.
	Key    string
	HasKey bool
}

// Route decides where a statement runs on map m. an is its Analysis
// (Classify, ClassifyWith or Prepare); sql is the text of this execution
// and lits its literals (Scratch.Literals after ClassifyWith on sql), so
// that the cached analysis reads this execution's values; params are the
// bind parameters of an extended-protocol execution, nil for a simple
// Query.
//
// Precedence: a statement's shard hint, then its key hint, then the
// session's shardwire.shard, then shardwire.key, then the keys in the
// statement. The error is a *RouteError for statements that cannot be
// routed; see the package documentation for the rules. A Route spanning
// several shards is not an error: the caller decides whether it can run it.
func (a *Analyzer) Route(an *Analysis, sql string, lits []Literal, params Params, m *shardmap.Map, opt RouteOptions) (Route, error) {
	if m == nil || an == nil {
		return Route{}, &RouteError{Code: CodeInternal, Msg: "shardwire: Route without a shard map or analysis"}
	}
	mi := a.index(m)
	rc := routeCtx{mi: mi, an: an, ki: an.keys, sql: sql, lits: lits, params: params, loc: opt.Loc}
	h := opt.Hints
	switch {
	case h.Err != nil:
		return Route{}, &RouteError{Code: CodeInvalidParameter, Msg: "shardwire: " + h.Err.Error(), Err: h.Err}
	case h.Shard != "":
		return mi.shardRoute(h.Shard, ByHintShard, "hint shard=")
	case h.HasKey:
		rc.key, rc.hasKey, rc.keyBy = h.Key, true, ByHintKey
	case opt.Shard != "":
		return mi.shardRoute(opt.Shard, BySessionShard, "shardwire.shard = ")
	case opt.HasKey:
		rc.key, rc.hasKey, rc.keyBy = opt.Key, true, BySessionKey
	}
	if rc.ki == nil {
		if an.unroutable != "" {
			return Route{}, &RouteError{Code: CodeFeatureNotSupported, Msg: "shardwire: cannot route the statement: " + an.unroutable}
		}
		// Not SQL, or SQL the parser rejects: Postgres will say why.
		return Route{Shards: mi.single(mi.def), Default: true, NoTables: true, By: ByUnparsed}, nil
	}
	if len(lits) != an.literals {
		return Route{}, &RouteError{Code: CodeInternal, Msg: fmt.Sprintf(
			"shardwire: %d literals given for a statement shape with %d", len(lits), an.literals)}
	}
	var q reqs
	for i := range rc.ki.stmts {
		s, err := rc.statement(&rc.ki.stmts[i])
		if err != nil {
			return Route{}, err
		}
		q.merge(&s)
	}
	return rc.result(&q)
}

// Prepare analyses a statement for the extended protocol. Keep both
// results with the prepared statement: at each Bind, Route(an, sql, lits,
// params, …) routes it with that Bind's parameters. lits belongs to the
// caller.
func (a *Analyzer) Prepare(sql string) (*Analysis, []Literal) {
	var s Scratch
	an := a.ClassifyWith(&s, sql)
	return an, s.lits
}

// --- shard sets -----------------------------------------------------------

// shardSet is a set of shards by rank (position in name order).
type shardSet struct {
	lo uint64
	hi []uint64 // ranks from 64 on; nil for maps of up to 64 shards
}

func (s *shardSet) add(r int) {
	if r < 64 {
		s.lo |= 1 << uint(r)
		return
	}
	w := r/64 - 1
	for len(s.hi) <= w {
		s.hi = append(s.hi, 0)
	}
	s.hi[w] |= 1 << uint(r%64)
}

func (s shardSet) has(r int) bool {
	if r < 64 {
		return s.lo&(1<<uint(r)) != 0
	}
	w := r/64 - 1
	return w < len(s.hi) && s.hi[w]&(1<<uint(r%64)) != 0
}

// union and intersect change s, which must not share hi with another set.
func (s *shardSet) union(o shardSet) {
	s.lo |= o.lo
	for len(s.hi) < len(o.hi) {
		s.hi = append(s.hi, 0)
	}
	for i, w := range o.hi {
		s.hi[i] |= w
	}
}

func (s *shardSet) intersect(o shardSet) {
	s.lo &= o.lo
	if len(s.hi) > len(o.hi) {
		s.hi = s.hi[:len(o.hi)]
	}
	for i := range s.hi {
		s.hi[i] &= o.hi[i]
	}
}

func (s shardSet) clone() shardSet {
	if s.hi != nil {
		s.hi = append([]uint64(nil), s.hi...)
	}
	return s
}

func (s shardSet) count() int {
	n := bits.OnesCount64(s.lo)
	for _, w := range s.hi {
		n += bits.OnesCount64(w)
	}
	return n
}

// subsetOf reports whether every shard of s is in o.
func (s shardSet) subsetOf(o shardSet) bool {
	if s.lo&^o.lo != 0 {
		return false
	}
	for i, w := range s.hi {
		var ow uint64
		if i < len(o.hi) {
			ow = o.hi[i]
		}
		if w&^ow != 0 {
			return false
		}
	}
	return true
}

func (s shardSet) equal(o shardSet) bool { return s.subsetOf(o) && o.subsetOf(s) }

// first returns the lowest rank in s, or -1.
func (s shardSet) first() int {
	if s.lo != 0 {
		return bits.TrailingZeros64(s.lo)
	}
	for i, w := range s.hi {
		if w != 0 {
			return 64*(i+1) + bits.TrailingZeros64(w)
		}
	}
	return -1
}

// --- map index ------------------------------------------------------------

// mapIndex is what Route needs of a shard map beyond its methods: shard
// names in sorted order (a set's ranks) and the hash tables, built once
// per map.
type mapIndex struct {
	m      *shardmap.Map
	names  []string // sorted
	rank   map[string]int
	all    shardSet
	def    int
	hashed []*shardmap.Table
	// scatter caches PlanScatter's plans, which depend on the map.
	scatter scatterCache
}

func newMapIndex(m *shardmap.Map) *mapIndex {
	mi := &mapIndex{m: m, names: m.Shards(), rank: map[string]int{}}
	slices.Sort(mi.names)
	for i, n := range mi.names {
		mi.rank[n] = i
		mi.all.add(i)
	}
	mi.def = mi.rank[m.DefaultShard()]
	for _, t := range m.Tables() {
		if t.Strategy() == shardmap.Hash {
			mi.hashed = append(mi.hashed, t)
		}
	}
	return mi
}

// index returns the mapIndex of m, building it on first use. Two are
// kept, so that sessions still on the previous map during a reload do not
// make each other rebuild.
func (a *Analyzer) index(m *shardmap.Map) *mapIndex {
	for i := range a.maps {
		if mi := a.maps[i].Load(); mi != nil && mi.m == m {
			return mi
		}
	}
	mi := newMapIndex(m)
	a.maps[a.mapTurn.Add(1)%uint32(len(a.maps))].Store(mi)
	return mi
}

func (mi *mapIndex) rankOf(shard string) int {
	if len(mi.names) <= 8 {
		for i, n := range mi.names {
			if n == shard {
				return i
			}
		}
		return -1
	}
	if r, ok := mi.rank[shard]; ok {
		return r
	}
	return -1
}

// single is the one-shard slice of rank r, shared and capacity-limited so
// that an append by the caller copies.
func (mi *mapIndex) single(r int) []string { return mi.names[r : r+1 : r+1] }

// shards lists the names of s: shared slices for one shard and for all.
func (mi *mapIndex) shards(s shardSet) []string {
	switch n := s.count(); {
	case n == 1:
		return mi.single(s.first())
	case n == len(mi.names):
		return mi.names[:n:n]
	default:
		out := make([]string, 0, n)
		for r := range mi.names {
			if s.has(r) {
				out = append(out, mi.names[r])
			}
		}
		return out
	}
}

func (mi *mapIndex) describe(s shardSet) string {
	names := mi.shards(s)
	if len(names) == 1 {
		return "shard " + names[0]
	}
	return "shards " + strings.Join(names, ", ")
}

func (mi *mapIndex) shardRoute(name string, by RouteBy, what string) (Route, error) {
	r := mi.rankOf(name)
	if r < 0 {
		return Route{}, &RouteError{Code: CodeInvalidParameter, Msg: fmt.Sprintf(
			"shardwire: %s%q: no such shard (shards: %s)", what, name, strings.Join(mi.names, ", "))}
	}
	return Route{Shards: mi.single(r), By: by}, nil
}

// --- evaluation -----------------------------------------------------------

type routeCtx struct {
	mi     *mapIndex
	an     *Analysis
	ki     *keyInfo
	sql    string
	lits   []Literal
	params Params
	loc    *time.Location
	key    string // a key hint or setting, if hasKey
	hasKey bool
	keyBy  RouteBy
}

// req is what one table (or statement) requires: run on exactly fixed,
// and on shards within within.
type req struct {
	fixed, within       shardSet
	hasFixed, hasWithin bool
	by                  RouteBy // of the strongest requirement
	table, key          string
	replicated          bool // a replicated table is written
	defaultOnly         bool // every fixed requirement is an unsharded table's
	first               need // the first fixed requirement, for messages
}

// need is one table's fixed requirement, described only for an error.
type need struct {
	by    RouteBy
	table string
	set   shardSet
}

func (n need) describe(mi *mapIndex) string {
	switch n.by {
	case ByDefault:
		return fmt.Sprintf("unsharded table %q is on the default shard %s", n.table, mi.names[mi.def])
	case ByReplicatedWrite:
		return fmt.Sprintf("replicated table %q is written on every shard", n.table)
	case ByScatter:
		return fmt.Sprintf("table %q has no usable key and is read on %s", n.table, mi.describe(n.set))
	}
	return fmt.Sprintf("table %q is on %s", n.table, mi.describe(n.set))
}

// reqs accumulates the requirements of a Query string's statements.
type reqs struct{ req }

// rank orders reasons: a scatter (which the caller must know about)
// decides over a key, which decides over a replicated write, which
// decides over an unsharded table.
func strength(b RouteBy) int {
	switch b {
	case ByScatter:
		return 4
	case ByKey, ByHintKey, BySessionKey:
		return 3
	case ByReplicatedWrite:
		return 2
	case ByDefault:
		return 1
	}
	return 0
}

// statement combines the requirements of a statement's tables: every fixed
// requirement must name the same shards.
func (rc *routeCtx) statement(st *keyStmt) (req, error) {
	var s req
	s.defaultOnly = true
	scattered, sharded := "", 0
	for i := range st.rels {
		r := &st.rels[i]
		t, listed := rc.mi.m.Table(r.table)
		switch {
		case !listed && r.system:
			continue // catalogs exist on every shard
		case !listed:
			var set shardSet
			set.add(rc.mi.def)
			if err := s.fix(rc.mi, need{ByDefault, r.table, set}, ""); err != nil {
				return s, err
			}
		case t.Replicated():
			set := rc.tableSet(t)
			if r.written {
				s.replicated = true
				s.defaultOnly = false
				if err := s.fix(rc.mi, need{ByReplicatedWrite, t.Name(), set}, ""); err != nil {
					return s, err
				}
			} else {
				s.within1(set, ByReplicatedRead, t.Name())
			}
		default:
			sharded++
			set, noRows, by, err := rc.keyShards(t, r, st)
			if err != nil {
				return s, err
			}
			if by == ByScatter && scattered == "" {
				scattered = t.Name()
			}
			if err := rc.checkKeyUpdate(t, r, set, noRows); err != nil {
				return s, err
			}
			if noRows {
				s.within1(rc.mi.all.clone(), ByNoRows, t.Name())
				continue
			}
			s.defaultOnly = false
			if err := s.fix(rc.mi, need{by, t.Name(), set}, t.Key()); err != nil {
				return s, err
			}
		}
	}
	if s.hasFixed && s.hasWithin && !s.fixed.subsetOf(s.within) {
		return s, &RouteError{Code: CodeFeatureNotSupported, Table: s.table, Msg: fmt.Sprintf(
			"shardwire: %s, which does not hold all the rows the statement reads", s.first.describe(rc.mi))}
	}
	if (st.kind == kindUpdate || st.kind == kindDelete) && sharded > 1 && (scattered != "" || s.fixed.count() > 1) {
		// Each shard would join its rows only with its own rows of the
		// other sharded table (or subquery): right only for co-located
		// tables joined on their keys, which PlanScatter checks for a
		// SELECT but nothing checks for a write.
		verb, table := "UPDATE", scattered
		if st.kind == kindDelete {
			verb = "DELETE"
		}
		if table == "" {
			table = s.table
		}
		return s, &RouteError{Code: CodeFeatureNotSupported, Table: table, Msg: fmt.Sprintf(
			"shardwire: %s on sharded table %q spans several shards and also reads another sharded table; a join or subquery of sharded tables across shards is not supported in a write",
			verb, table)}
	}
	return s, nil
}

// tableSet is the set of shards a listed table has rows on.
func (rc *routeCtx) tableSet(t *shardmap.Table) shardSet {
	var s shardSet
	for _, n := range t.Shards() {
		if r := rc.mi.rankOf(n); r >= 0 {
			s.add(r)
		}
	}
	return s
}

// fix adds a requirement to run on exactly n.set.
func (s *req) fix(mi *mapIndex, n need, key string) error {
	if n.by != ByDefault {
		s.defaultOnly = false
	}
	if !s.hasFixed {
		s.fixed, s.hasFixed, s.first = n.set, true, n
		s.by, s.table, s.key = n.by, n.table, key
		return nil
	}
	if !s.fixed.equal(n.set) {
		return &RouteError{Code: CodeFeatureNotSupported, Table: n.table, Msg: fmt.Sprintf(
			"shardwire: %s but %s; one statement cannot combine rows of different shards", s.first.describe(mi), n.describe(mi))}
	}
	if strength(n.by) > strength(s.by) {
		s.by, s.table, s.key = n.by, n.table, key
	}
	return nil
}

// within1 adds a requirement to run on one shard of set.
func (s *req) within1(set shardSet, by RouteBy, table string) {
	if !s.hasWithin {
		s.within, s.hasWithin = set, true
		if !s.hasFixed {
			s.by, s.table = by, table
		}
		return
	}
	s.within.intersect(set)
}

// merge adds a statement's requirements to a Query string's: the
// statements run one after the other, so fixed sets add up.
func (q *reqs) merge(s *req) {
	if s.hasFixed {
		if !q.hasFixed {
			q.fixed, q.hasFixed = s.fixed.clone(), true
			q.by, q.table, q.key, q.first, q.defaultOnly = s.by, s.table, s.key, s.first, s.defaultOnly
		} else {
			q.fixed.union(s.fixed)
			q.defaultOnly = q.defaultOnly && s.defaultOnly
			if strength(s.by) > strength(q.by) {
				q.by, q.table, q.key = s.by, s.table, s.key
			}
		}
		q.replicated = q.replicated || s.replicated
	}
	if s.hasWithin {
		if !q.hasWithin {
			q.within, q.hasWithin = s.within.clone(), true
			if !q.hasFixed {
				q.by, q.table = s.by, s.table
			}
		} else {
			q.within.intersect(s.within)
		}
	}
}

func (rc *routeCtx) result(q *reqs) (Route, error) {
	mi := rc.mi
	switch {
	case q.hasFixed:
		if q.hasWithin && !q.fixed.subsetOf(q.within) {
			return Route{}, &RouteError{Code: CodeFeatureNotSupported, Table: q.table, Msg: fmt.Sprintf(
				"shardwire: the statements need %s, which does not hold all the rows they read", mi.describe(q.fixed))}
		}
		r := Route{Shards: mi.shards(q.fixed), By: q.by, Table: q.table, Key: q.key,
			Replicated: q.replicated, Default: q.defaultOnly}
		return r, nil
	case q.hasWithin:
		if q.within.count() == 0 {
			return Route{}, &RouteError{Code: CodeFeatureNotSupported, Table: q.table,
				Msg: "shardwire: no shard holds every table the statement reads"}
		}
		return Route{Shards: mi.shards(q.within), AnyShard: true, By: q.by, Table: q.table}, nil
	}
	if rc.hasKey {
		// No table to take the key's type from: place it as the map's hash
		// tables would, if they agree (a function call routed by key).
		if r, ok := rc.keyWithoutTable(); ok {
			return Route{Shards: mi.single(r), By: rc.keyBy}, nil
		}
	}
	return Route{Shards: mi.single(mi.def), Default: true, NoTables: true, By: ByNoTable}, nil
}

// keyWithoutTable places the key hint by the map's hash tables: the shard
// they agree on, if all that accept the value do.
func (rc *routeCtx) keyWithoutTable() (int, bool) {
	rank := -1
	for _, t := range rc.mi.hashed {
		shard, err := t.LocateTextIn(rc.key, rc.loc)
		if err != nil {
			continue
		}
		r := rc.mi.rankOf(shard)
		if rank >= 0 && r != rank {
			return 0, false
		}
		rank = r
	}
	return rank, rank >= 0
}

// keyShards evaluates the key condition of a sharded table's occurrence.
// noRows reports a condition no row satisfies.
func (rc *routeCtx) keyShards(t *shardmap.Table, r *keyRel, st *keyStmt) (set shardSet, noRows bool, by RouteBy, err error) {
	if rc.hasKey {
		usable, err := rc.addText(&set, t, rc.key, r.insert)
		if err != nil || !usable {
			return set, false, rc.keyBy, err
		}
		return set, set.count() == 0, rc.keyBy, nil
	}
	if c, ok := keyColumn(t.Key(), r, st); ok {
		set, usable, err := rc.eval(c.cond, t, r.insert)
		if err != nil {
			return set, false, ByKey, err
		}
		if usable {
			return set, set.count() == 0, ByKey, nil
		}
	}
	if !r.insert && (st.kind == kindSelect || st.kind == kindUpdate || st.kind == kindDelete) {
		// No usable key: every shard the table may have rows on. A read
		// there is planned by PlanScatter; a write runs on each shard.
		return rc.tableSet(t), false, ByScatter, nil
	}
	return set, false, ByKey, noKeyError(t, r, st.kind)
}

// keyColumn finds the condition of column key of r: its own, else that of
// the unqualified name in its query level.
func keyColumn(key string, r *keyRel, st *keyStmt) (keyCol, bool) {
	for _, c := range r.cols {
		if c.name == key {
			return c, true
		}
	}
	if r.shared >= 0 && int(r.shared) < len(st.shared) {
		for _, c := range st.shared[r.shared] {
			if c.name == key {
				return c, true
			}
		}
	}
	return keyCol{}, false
}

func noKeyError(t *shardmap.Table, r *keyRel, kind stmtKind) error {
	key := t.Key()
	var msg string
	switch {
	case r.insert && kind == kindInsert:
		msg = fmt.Sprintf("shardwire: INSERT into sharded table %q has no usable value for its key %s; list %s in the column list with a constant or $n in every row",
			t.Name(), key, key)
	case kind == kindSelect, kind == kindUpdate, kind == kindDelete, kind == kindInsert:
		msg = fmt.Sprintf("shardwire: statement on sharded table %q has no usable value for its key %s; add WHERE %s = …", t.Name(), key, key)
	default:
		what := [...]string{kindMerge: "MERGE", kindCopy: "COPY", kindOther: "this statement"}[kind]
		msg = fmt.Sprintf("shardwire: %s on sharded table %q cannot be routed by its key %s; run it on each shard with /* shardwire: shard=NAME */",
			what, t.Name(), key)
	}
	return &RouteError{Code: CodeFeatureNotSupported, Table: t.Name(), Msg: msg}
}

// checkKeyUpdate refuses an UPDATE (or ON CONFLICT DO UPDATE) that assigns
// the key column a value that may live on another shard than the rows.
func (rc *routeCtx) checkKeyUpdate(t *shardmap.Table, r *keyRel, rows shardSet, noRows bool) error {
	key := t.Key()
	for _, s := range r.sets {
		if s.name != key || s.val == setUnchanged || noRows {
			continue
		}
		if s.val >= 0 {
			var to shardSet
			usable, err := rc.addValue(&to, t, rc.ki.vals[s.val], true)
			if err != nil {
				return err
			}
			if usable && to.count() == 1 && rows.count() == 1 && to.equal(rows) {
				continue // the rows keep their shard
			}
		}
		return &RouteError{Code: CodeFeatureNotSupported, Table: t.Name(), Msg: fmt.Sprintf(
			"shardwire: UPDATE of the key column %s of sharded table %q could move rows to another shard; delete and insert them instead",
			key, t.Name())}
	}
	return nil
}

// eval evaluates condition ci for table t: the shards of the values it
// allows, and whether it is usable (every value it needs is known).
func (rc *routeCtx) eval(ci int32, t *shardmap.Table, insert bool) (shardSet, bool, error) {
	var set shardSet
	ki := rc.ki
	if ci < 0 || int(ci) >= len(ki.conds) {
		return set, false, nil
	}
	c := ki.conds[ci]
	switch c.op {
	case condValues:
		for _, v := range ki.vals[c.lo:c.hi] {
			usable, err := rc.addValue(&set, t, v, insert)
			if err != nil || !usable {
				return set, false, err
			}
		}
		return set, true, nil
	case condAnd:
		have := false
		for _, k := range ki.kids[c.lo:c.hi] {
			s, usable, err := rc.eval(k, t, insert)
			switch {
			case err != nil:
				return set, false, err
			case !usable:
			case !have:
				set, have = s, true
			default:
				set.intersect(s)
			}
		}
		return set, have, nil
	case condOr:
		for _, k := range ki.kids[c.lo:c.hi] {
			s, usable, err := rc.eval(k, t, insert)
			if err != nil || !usable {
				return set, false, err
			}
			set.union(s)
		}
		return set, true, nil
	}
	return set, false, nil
}

// castFits reports whether a value cast to c keeps its meaning as a key of
// type typ.
func castFits(c castKind, typ shardmap.KeyType) bool {
	switch c {
	case castNone:
		return true
	case castInt:
		return typ == shardmap.Bigint || typ == shardmap.Integer
	case castText:
		return typ == shardmap.Text
	case castUUID:
		return typ == shardmap.UUID
	case castDate:
		return typ == shardmap.Date
	case castTimestamp:
		return typ == shardmap.Timestamp
	case castTimestamptz:
		return typ == shardmap.Timestamptz
	}
	return false
}

// addValue adds the shards of value v to set. It reports false when the
// value is not usable: not a constant of the key's type, a missing
// parameter, or NULL in an INSERT (NULL elsewhere matches nothing).
func (rc *routeCtx) addValue(set *shardSet, t *shardmap.Table, v keyValue, insert bool) (bool, error) {
	if !castFits(v.cast, t.Type()) {
		return false, nil
	}
	if v.lit >= 0 {
		if int(v.lit) >= len(rc.lits) {
			return false, nil
		}
		l := rc.lits[v.lit]
		text, err := l.Value(rc.sql)
		if err != nil {
			return false, &RouteError{Code: CodeSyntaxError, Table: t.Name(), Msg: "shardwire: key literal: " + err.Error(), Err: err}
		}
		if v.neg {
			if l.Kind != LitNumber {
				return false, nil
			}
			text = "-" + text
		}
		if v.array {
			return rc.addTextArray(set, t, text, insert)
		}
		return rc.addText(set, t, text, insert)
	}
	if rc.params == nil {
		return false, nil
	}
	b, bin, oid, ok := rc.params.Param(int(v.param))
	switch {
	case !ok:
		return false, nil
	case b == nil:
		return !insert, nil
	case v.array && bin:
		return rc.addBinaryArray(set, t, b, insert)
	case v.array:
		return rc.addTextArray(set, t, bytesString(b), insert)
	case bin:
		shard, err := t.LocateBinary(oid, b)
		return rc.addShard(set, t, shard, err, insert)
	}
	if !textParamFits(oid, t.Type()) {
		return false, &RouteError{Code: shardmap.CodeTypeMismatch, Table: t.Name(), Msg: fmt.Sprintf(
			"shardwire: table %s, key %s: a parameter of type OID %d cannot be a shard key of type %s", t.Name(), t.Key(), oid, t.Type())}
	}
	return rc.addText(set, t, bytesString(b), insert)
}

// bytesString views b as a string without copying. Route only reads the
// string during the call (shardmap copies what it puts in error messages),
// and the bytes do not change meanwhile.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// textParamFits reports whether a text-format parameter declared with oid
// can be a key of type typ: an unspecified or text-like type (Postgres
// then reads the text as the column's type) or the key's own type family.
func textParamFits(oid uint32, typ shardmap.KeyType) bool {
	switch oid {
	case shardmap.OIDUnspecified, shardmap.OIDText, shardmap.OIDVarchar, shardmap.OIDBpchar, shardmap.OIDName, shardmap.OIDUnknown:
		return true
	case shardmap.OIDInt2, shardmap.OIDInt4, shardmap.OIDInt8:
		return typ == shardmap.Bigint || typ == shardmap.Integer
	case shardmap.OIDUUID:
		return typ == shardmap.UUID
	case shardmap.OIDDate:
		return typ == shardmap.Date
	case shardmap.OIDTimestamp:
		return typ == shardmap.Timestamp
	case shardmap.OIDTimestamptz:
		return typ == shardmap.Timestamptz
	}
	return false
}

func (rc *routeCtx) addText(set *shardSet, t *shardmap.Table, text string, insert bool) (bool, error) {
	shard, err := t.LocateTextIn(text, rc.loc)
	return rc.addShard(set, t, shard, err, insert)
}

// addShard adds a Locate result to set. A value no shard holds matches no
// row, except that an INSERT of it is refused.
func (rc *routeCtx) addShard(set *shardSet, t *shardmap.Table, shard string, err error, insert bool) (bool, error) {
	if err != nil {
		if errors.Is(err, shardmap.ErrNoShard) {
			if insert {
				return false, &RouteError{Code: CodeCheckViolation, Table: t.Name(), Msg: "shardwire: " + err.Error(), Err: err}
			}
			return true, nil
		}
		code := CodeInternal
		var ve *shardmap.ValueError
		if errors.As(err, &ve) {
			code = ve.Code
		}
		return false, &RouteError{Code: code, Table: t.Name(), Msg: "shardwire: " + err.Error(), Err: err}
	}
	r := rc.mi.rankOf(shard)
	if r < 0 {
		return false, &RouteError{Code: CodeInternal, Table: t.Name(), Msg: fmt.Sprintf("shardwire: shard %q is not in the map", shard)}
	}
	set.add(r)
	return true, nil
}

// errArray is a malformed array value.
func arrayError(t *shardmap.Table, why string) error {
	return &RouteError{Code: shardmap.CodeInvalidText, Table: t.Name(), Msg: "shardwire: malformed array for key " + t.Key() + ": " + why}
}

// addTextArray adds the shards of the elements of an array in text form
// ('{1,2,"x y",NULL}'); nested braces are flattened, NULLs match nothing.
func (rc *routeCtx) addTextArray(set *shardSet, t *shardmap.Table, s string, insert bool) (bool, error) {
	i := 0
	skipSpace := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	skipSpace()
	if i < len(s) && s[i] == '[' { // dimension decoration [1:3]=
		j := strings.IndexByte(s[i:], '=')
		if j < 0 {
			return false, arrayError(t, "dimensions without =")
		}
		i += j + 1
		skipSpace()
	}
	if i >= len(s) || s[i] != '{' {
		return false, arrayError(t, `it must start with "{"`)
	}
	depth := 0
	expectElem := true
	for i < len(s) {
		c := s[i]
		switch {
		case isSpace(c):
			i++
		case c == '{':
			if !expectElem {
				return false, arrayError(t, `unexpected "{"`)
			}
			depth++
			i++
		case c == '}':
			depth--
			i++
			expectElem = false
			if depth == 0 {
				skipSpace()
				if i != len(s) {
					return false, arrayError(t, "junk after the closing brace")
				}
				return true, nil
			}
		case c == ',':
			if expectElem {
				return false, arrayError(t, `unexpected ","`)
			}
			expectElem = true
			i++
		default:
			if !expectElem || depth == 0 {
				return false, arrayError(t, "unexpected element")
			}
			elem, quoted, n, err := arrayElement(s[i:])
			if err != nil {
				return false, arrayError(t, err.Error())
			}
			i += n
			expectElem = false
			if !quoted && strings.EqualFold(elem, "null") {
				if insert {
					return false, nil
				}
				continue
			}
			usable, err := rc.addText(set, t, elem, insert)
			if err != nil || !usable {
				return usable, err
			}
		}
	}
	return false, arrayError(t, "unterminated")
}

// arrayElement reads one element of a text array: a quoted string with
// backslash escapes, or an unquoted run with trailing spaces trimmed.
func arrayElement(s string) (elem string, quoted bool, n int, err error) {
	if s[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
				if i < len(s) {
					b.WriteByte(s[i])
				}
			case '"':
				return b.String(), true, i + 1, nil
			default:
				b.WriteByte(s[i])
			}
		}
		return "", true, 0, errors.New("unterminated quoted element")
	}
	i := 0
	escaped := false
	for i < len(s) && s[i] != ',' && s[i] != '}' && s[i] != '{' && s[i] != '"' {
		if s[i] == '\\' {
			escaped = true
			i++
		}
		i++
	}
	i = min(i, len(s))
	elem = strings.TrimRight(s[:i], " \t\n\r\v\f")
	if escaped {
		var b strings.Builder
		for j := 0; j < len(elem); j++ {
			if elem[j] == '\\' && j+1 < len(elem) {
				j++
			}
			b.WriteByte(elem[j])
		}
		elem = b.String()
	}
	return elem, false, i, nil
}

// addBinaryArray adds the shards of the elements of an array in binary
// format: ndim, has-null flag, element OID, (length, lower bound) per
// dimension, then each element as a length (-1 for NULL) and its bytes.
func (rc *routeCtx) addBinaryArray(set *shardSet, t *shardmap.Table, b []byte, insert bool) (bool, error) {
	if len(b) < 12 {
		return false, arrayError(t, "binary header too short")
	}
	ndim := int32(binary.BigEndian.Uint32(b))
	elemOID := binary.BigEndian.Uint32(b[8:])
	if ndim < 0 || ndim > 6 || len(b) < 12+8*int(ndim) {
		return false, arrayError(t, "bad dimensions")
	}
	n := int64(1)
	if ndim == 0 {
		n = 0
	}
	for d := 0; d < int(ndim); d++ {
		l := int64(int32(binary.BigEndian.Uint32(b[12+8*d:])))
		if l < 0 || l > int64(len(b)) {
			return false, arrayError(t, "bad dimension length")
		}
		n *= l
		if n > int64(len(b)) {
			return false, arrayError(t, "more elements than bytes")
		}
	}
	p := 12 + 8*int(ndim)
	for ; n > 0; n-- {
		if len(b)-p < 4 {
			return false, arrayError(t, "truncated element")
		}
		l := int32(binary.BigEndian.Uint32(b[p:]))
		p += 4
		if l < 0 {
			if insert {
				return false, nil
			}
			continue
		}
		if int(l) > len(b)-p {
			return false, arrayError(t, "truncated element")
		}
		shard, err := t.LocateBinary(elemOID, b[p:p+int(l)])
		p += int(l)
		if usable, err := rc.addShard(set, t, shard, err, insert); err != nil || !usable {
			return usable, err
		}
	}
	if p != len(b) {
		return false, arrayError(t, "junk after the elements")
	}
	return true, nil
}
