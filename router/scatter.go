package router

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shardwire/shardwire/gather"
	"github.com/shardwire/shardwire/shardmap"
)

// This file plans a SELECT that spans shards (scatter-gather): it checks
// that running the statement on each shard and merging the rows gives
// exactly what one server holding every row would return, rewrites the
// statement for the shards, and says how to merge (gather.Plan). What it
// cannot show to be exact it refuses.
//
// Why the checks are what they are:
//
//   - A row of a sharded table lives on one shard, so a query level whose
//     FROM reads one sharded table (plus replicated tables, complete on
//     every shard) returns each of its rows on exactly one shard.
//   - Two sharded tables can be joined per shard only if every pair of
//     rows the join can pair lives on one shard: the tables place equal
//     keys alike (shardmap.Table.Colocated) and the join requires their
//     keys to be equal, in the ON clause of the join that combines them or
//     in WHERE (which also rejects rows an outer join padded with NULLs).
//     An outer join whose preserved side has no sharded table would pad
//     its rows once per shard: refused.
//   - A subquery (sublink, LATERAL) that reads a sharded table is exact
//     per shard only if its WHERE ties the table's key to the key of a row
//     of an enclosing query (o.customer_id = c.id, or c.id IN (SELECT
//     o.customer_id …) as a condition of WHERE): every row it can read is
//     then on that row's shard. A FROM subquery or CTE over sharded tables
//     is a sharded relation of its own if it keeps rows apart (no
//     aggregate, GROUP BY, DISTINCT, LIMIT or window function).
//   - The merge combines what partial results can combine: count, sum,
//     min, max, bool_and/or and avg (as sum and count); it sorts, applies
//     LIMIT and OFFSET, DISTINCT and HAVING after combining.

// Scatter is how a statement that spans shards runs: the SQL each shard
// gets and how the proxy merges the results. A Scatter from PlanScatter
// may be shared through the plan cache: do not modify its Plan's slices.
type Scatter struct {
	// SQL is the statement every shard runs: the client's text when the
	// merge needs nothing else, else the statement rewritten and deparsed
	// (comments dropped). It takes the client's bind parameters, with the
	// same numbers and types.
	SQL  string
	Plan gather.Plan
}

// scatterError is a refusal: the construct that cannot run across shards.
func scatterError(construct string) error {
	return &RouteError{Code: CodeFeatureNotSupported, Msg: "shardwire: SELECT across shards is not supported: " + construct}
}

// pgError is an error Postgres itself would raise for the statement,
// detected while planning.
func pgError(code, msg string) error { return &RouteError{Code: code, Msg: msg} }

// PlanScatter plans a SELECT that spans shards. sql is the client's text
// (with literals and $n parameters as sent); m is the shard map, for the
// placement of the tables it reads. The error is a *RouteError: 0A000 for
// what cannot run across shards (naming the construct), or the error
// Postgres would give for a few statements it rejects (a negative LIMIT).
//
// Plans are cached by exact text per map, bounded in bytes, so the
// extended protocol's repeated Parse of one statement plans it once.
func (a *Analyzer) PlanScatter(sql string, m *shardmap.Map) (Scatter, error) {
	if m == nil {
		return Scatter{}, &RouteError{Code: CodeInternal, Msg: "shardwire: PlanScatter without a shard map"}
	}
	mi := a.index(m)
	if e := mi.scatter.get(sql); e != nil {
		return e.sc, e.err
	}
	sc, err := planScatter(&a.funcs, sql, m)
	mi.scatter.put(sql, sc, err)
	return sc, err
}

// --- cache ------------------------------------------------------------------

// Budget of the plan cache of one map, and the longest text cached.
const (
	scatterCacheBytes = 4 << 20
	scatterMaxText    = 64 << 10
)

// scatterCache maps statement text to its plan. Lookups take no lock; an
// insert past the budget evicts entries in the map's (random) iteration
// order. The zero value is ready to use.
type scatterCache struct {
	m     sync.Map // string -> *scatterEntry
	bytes atomic.Int64
	mu    sync.Mutex // one evictor at a time
}

type scatterEntry struct {
	sc   Scatter
	err  error
	cost int64
}

func (c *scatterCache) get(sql string) *scatterEntry {
	if v, ok := c.m.Load(sql); ok {
		return v.(*scatterEntry)
	}
	return nil
}

func (c *scatterCache) put(sql string, sc Scatter, err error) {
	if len(sql) > scatterMaxText {
		return
	}
	p := &sc.Plan
	cost := int64(2*len(sql) + len(sc.SQL) + 192 + 8*(len(p.Sort)+len(p.Group)+len(p.Aggs)) + 32*len(p.Having))
	if err != nil {
		cost += int64(len(err.Error()))
	}
	if _, loaded := c.m.LoadOrStore(sql, &scatterEntry{sc: sc, err: err, cost: cost}); loaded {
		return
	}
	if c.bytes.Add(cost) <= scatterCacheBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m.Range(func(k, v any) bool {
		if c.bytes.Load() <= scatterCacheBytes*3/4 {
			return false
		}
		if _, ok := c.m.LoadAndDelete(k); ok {
			c.bytes.Add(-v.(*scatterEntry).cost)
		}
		return true
	})
}

// --- entry ------------------------------------------------------------------

func planScatter(funcs *functionSet, sql string, m *shardmap.Map) (sc Scatter, err error) {
	defer func() {
		if r := recover(); r != nil { // defensive: a planner bug must not take the session down
			sc, err = Scatter{}, scatterError(fmt.Sprintf("statement the planner failed on (%v)", r))
		}
	}()
	if len(sql) > maxParseBytes {
		return Scatter{}, scatterError(fmt.Sprintf("statement of %d bytes (limit %d)", len(sql), maxParseBytes))
	}
	if risk, chain := nestingRisk(sql); risk > maxNestingRisk || chain > maxDottedChain {
		return Scatter{}, scatterError("statement too complex to analyse safely")
	}
	res, err := pg_query.Parse(sql)
	if err != nil {
		return Scatter{}, &RouteError{Code: CodeSyntaxError, Msg: "shardwire: " + err.Error(), Err: err}
	}
	if len(res.Stmts) != 1 {
		return Scatter{}, scatterError("several statements in one query")
	}
	sel := res.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil {
		return Scatter{}, scatterError("a statement other than SELECT")
	}
	p := &scatterPlanner{funcs: funcs, m: m, stmt: sel}
	// Rewriting must not drop a parameter: the client's Bind must still
	// fit the shards' statement.
	hasParams := strings.IndexByte(sql, '$') >= 0
	var before []int32
	if hasParams {
		before = paramsOf(sel.ProtoReflect())
	}
	if err := p.plan(); err != nil {
		return Scatter{}, err
	}
	sc.Plan = p.out
	if !p.changed {
		sc.SQL = sql
		return sc, nil
	}
	if hasParams && !slices.Equal(before, paramsOf(sel.ProtoReflect())) {
		return Scatter{}, scatterError("a bind parameter in a clause the merge applies (HAVING, ORDER BY of an aggregate, …)")
	}
	out, err := pg_query.Deparse(res)
	if err != nil {
		return Scatter{}, scatterError("a statement shardwire cannot rewrite (" + err.Error() + ")")
	}
	if _, err := pg_query.Parse(out); err != nil {
		return Scatter{}, scatterError("a statement shardwire cannot rewrite (" + err.Error() + ")")
	}
	sc.SQL = out
	return sc, nil
}

// paramsOf lists the $n numbers a tree uses, sorted, each once.
func paramsOf(m protoreflect.Message) []int32 {
	var out []int32
	walkMsg(m, true, func(x protoreflect.Message) bool {
		if pr, ok := x.Interface().(*pg_query.ParamRef); ok && !slices.Contains(out, pr.Number) {
			out = append(out, pr.Number)
		}
		return true
	})
	slices.Sort(out)
	return out
}

// --- query levels, sources and key equalities ---------------------------------

type srcKind uint8

const (
	// srcOther: a replicated table, or a subquery whose rows are the same
	// on every shard or are computed from an enclosing row.
	srcOther srcKind = iota
	// srcSharded: rows of sharded tables, each on one shard.
	srcSharded
)

// source is one item of a query level's FROM (a table, subquery, CTE
// reference, function, or the alias of a join).
type source struct {
	name   string // how columns are qualified: the alias, else the relation name
	schema string // an unaliased table's schema as written, for s.t.col
	rel    string // the table (or CTE) named, for messages
	kind   srcKind
	table  *shardmap.Table // placement of a srcSharded source
	keys   []string        // columns equal to the shard key, for srcSharded
}

func (s *source) hasKey(col string) bool { return s.kind == srcSharded && slices.Contains(s.keys, col) }

// colKey is a column of a source.
type colKey struct {
	src *source
	col string
}

// unionFind groups columns that equalities make equal.
type unionFind map[colKey]colKey

func (u unionFind) find(k colKey) colKey {
	for {
		p, ok := u[k]
		if !ok || p == k {
			return k
		}
		if gp, ok := u[p]; ok && gp != p {
			u[k] = gp // path halving
		}
		k = p
	}
}

func (u unionFind) union(a, b colKey) {
	ra, rb := u.find(a), u.find(b)
	if ra != rb {
		u[ra] = rb
	}
}

// cte is a WITH query, analysed when first referenced.
type cte struct {
	name     string
	colnames []string
	query    *pg_query.Node
	scope    *level // where its body is analysed (sees the WITH list, not the FROM)
	busy     bool   // being analysed: a recursive reference
	done     bool
	res      queryResult
	err      error
}

// level is one query level (a SELECT's FROM scope).
type level struct {
	parent *level
	srcs   []*source
	ctes   []*cte
	where  unionFind // equalities of WHERE (they hold for every row)
	all    unionFind // and of every ON clause
}

func newLevel(parent *level) *level {
	return &level{parent: parent, where: unionFind{}, all: unionFind{}}
}

// findCTE finds a visible WITH query by name.
func (lv *level) findCTE(name string) *cte {
	for l := lv; l != nil; l = l.parent {
		for _, c := range l.ctes {
			if c.name == name {
				return c
			}
		}
	}
	return nil
}

// resolve finds the source column a column reference names, looking
// outward from lv. An unqualified name is resolved only when it is the
// shard key of exactly one sharded source of lv: otherwise shardwire,
// which does not know the tables' columns, cannot tell whose column it is.
func (lv *level) resolve(fields []*pg_query.Node) (colKey, bool) {
	parts := make([]string, 0, len(fields))
	for _, f := range fields {
		s := f.GetString_()
		if s == nil {
			return colKey{}, false // a * or something odd
		}
		parts = append(parts, s.Sval)
	}
	switch len(parts) {
	case 1:
		var found *source
		for _, s := range lv.srcs {
			if s.hasKey(parts[0]) {
				if found != nil {
					return colKey{}, false // ambiguous: Postgres rejects it
				}
				found = s
			}
		}
		if found != nil {
			return colKey{found, parts[0]}, true
		}
	case 2, 3, 4:
		q, col := parts[len(parts)-2], parts[len(parts)-1]
		schema := ""
		if len(parts) >= 3 {
			schema = parts[len(parts)-3]
		}
		for l := lv; l != nil; l = l.parent {
			for _, s := range l.srcs {
				if s.name == q && (schema == "" || s.schema == schema) {
					return colKey{s, col}, true
				}
			}
		}
	}
	return colKey{}, false
}

// addEquals records the column equalities among the top-level conjuncts
// of expr in the union-finds given.
func (lv *level) addEquals(expr *pg_query.Node, ufs ...unionFind) {
	for _, c := range conjunctsOf(expr) {
		a, b, ok := columnEquality(c)
		if !ok {
			continue
		}
		ka, oka := lv.resolve(a)
		kb, okb := lv.resolve(b)
		if oka && okb {
			for _, u := range ufs {
				u.union(ka, kb)
			}
		}
	}
}

// conjunctsOf flattens the top-level ANDs of an expression.
func conjunctsOf(n *pg_query.Node) []*pg_query.Node {
	if n == nil {
		return nil
	}
	if b := n.GetBoolExpr(); b != nil && b.Boolop == pg_query.BoolExprType_AND_EXPR {
		var out []*pg_query.Node
		for _, a := range b.Args {
			out = append(out, conjunctsOf(a)...)
		}
		return out
	}
	return []*pg_query.Node{n}
}

// columnEquality matches col = col (the built-in =).
func columnEquality(n *pg_query.Node) (a, b []*pg_query.Node, ok bool) {
	e := n.GetAExpr()
	if e == nil || e.Kind != pg_query.A_Expr_Kind_AEXPR_OP || !isOperator(e.Name, "=") {
		return nil, nil, false
	}
	l, r := e.Lexpr.GetColumnRef(), e.Rexpr.GetColumnRef()
	if l == nil || r == nil {
		return nil, nil, false
	}
	return l.Fields, r.Fields, true
}

// isOperator reports whether name is op, unqualified or in pg_catalog.
func isOperator(name []*pg_query.Node, op string) bool {
	schema, n, ok := names(name)
	return ok && n == op && (schema == "" || schema == "pg_catalog")
}

// keyClass reports whether some key of a and some key of b are equal in u.
func keyClass(u unionFind, a, b *source) bool {
	for _, ka := range a.keys {
		ra := u.find(colKey{a, ka})
		for _, kb := range b.keys {
			if u.find(colKey{b, kb}) == ra {
				return true
			}
		}
	}
	return false
}

// --- analysis of a query ------------------------------------------------------

// queryCtx is where a query appears.
type queryCtx uint8

const (
	ctxTop     queryCtx = iota
	ctxFrom             // a FROM subquery or a CTE
	ctxLateral          // a LATERAL subquery
	ctxSublink          // an expression subquery (EXISTS, IN, scalar, ARRAY)
)

// queryResult is what a query means for its enclosing level.
type queryResult struct {
	sharded bool            // it reads sharded rows that are not tied to an enclosing row
	table   *shardmap.Table // their placement
	rel     string          // the first such table, for messages
	keys    []keyOut        // output columns equal to the shard key
}

// keyOut is an output column of a subquery equal to the shard key.
type keyOut struct {
	pos  int // position in the select list; -1 when after a *
	name string
}

// inPin is the outer column a subquery's first output is compared with
// by a positive "outer IN (SELECT …)" condition of WHERE.
type inPin struct{ outer colKey }

type scatterPlanner struct {
	funcs *functionSet
	m     *shardmap.Map
	stmt  *pg_query.SelectStmt
	top   *level
	depth int

	out     gather.Plan
	changed bool
}

// maxQueryDepth bounds the nesting of subqueries the planner follows.
const maxQueryDepth = 64

// analyze checks one query (a SELECT, set operation or VALUES) in the
// scope parent, and returns what it is for the enclosing level. The level
// of a plain SELECT is returned for the top-level planner.
func (p *scatterPlanner) analyze(n *pg_query.Node, parent *level, ctx queryCtx, pin *inPin) (queryResult, *level, error) {
	s := n.GetSelectStmt()
	if s == nil {
		return queryResult{}, nil, scatterError("data-modifying statement in WITH")
	}
	return p.analyzeSelect(s, parent, ctx, pin)
}

func (p *scatterPlanner) analyzeSelect(s *pg_query.SelectStmt, parent *level, ctx queryCtx, pin *inPin) (queryResult, *level, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxQueryDepth {
		return queryResult{}, nil, scatterError("subqueries nested too deeply")
	}
	if s.IntoClause != nil {
		return queryResult{}, nil, scatterError("SELECT INTO")
	}
	if len(s.LockingClause) > 0 {
		reason := "SELECT ... FOR UPDATE/SHARE"
		if l := s.LockingClause[0].GetLockingClause(); l != nil {
			if r, ok := lockReasons[l.Strength]; ok {
				reason = r
			}
		}
		return queryResult{}, nil, scatterError(reason)
	}
	scope := parent
	if s.WithClause != nil {
		scope = newLevel(parent)
		for _, cn := range s.WithClause.Ctes {
			c := cn.GetCommonTableExpr()
			if c == nil {
				return queryResult{}, nil, scatterError("WITH clause shardwire does not understand")
			}
			if c.Ctequery.GetSelectStmt() == nil {
				return queryResult{}, nil, scatterError("data-modifying statement in WITH")
			}
			scope.ctes = append(scope.ctes, &cte{name: c.Ctename, colnames: stringList(c.Aliascolnames), query: c.Ctequery, scope: scope})
		}
	}
	if s.Op != pg_query.SetOperation_SETOP_NONE && s.Op != pg_query.SetOperation_SET_OPERATION_UNDEFINED {
		if ctx == ctxTop {
			return queryResult{}, nil, scatterError("UNION, INTERSECT or EXCEPT")
		}
		// A set operation inside a subquery: fine when no branch reads
		// sharded rows of its own (tied to an enclosing row is fine).
		lv := newLevel(scope)
		for _, b := range []*pg_query.SelectStmt{s.Larg, s.Rarg} {
			if b == nil {
				continue
			}
			r, _, err := p.analyzeSelect(b, scope, ctxSublink, nil)
			if err != nil {
				return queryResult{}, nil, err
			}
			if r.sharded {
				return queryResult{}, nil, scatterError(fmt.Sprintf("UNION, INTERSECT or EXCEPT over sharded table %q", r.rel))
			}
		}
		if err := p.sublinks(lv, s); err != nil {
			return queryResult{}, nil, err
		}
		return queryResult{}, lv, nil
	}
	lv := newLevel(scope)
	if len(s.ValuesLists) > 0 {
		if ctx == ctxTop {
			return queryResult{}, nil, scatterError("VALUES")
		}
		return queryResult{}, lv, p.sublinks(lv, s)
	}
	// FROM: the sources, then the LATERAL subqueries, which may refer to
	// them.
	var tree []*joinNode
	var laterals []*lateralItem
	for _, item := range s.FromClause {
		j, err := p.fromItem(lv, item, &laterals)
		if err != nil {
			return queryResult{}, nil, err
		}
		tree = append(tree, j)
	}
	for _, l := range laterals {
		r, _, err := p.analyze(l.rs.Subquery, lv, ctxLateral, nil)
		if err != nil {
			return queryResult{}, nil, err
		}
		l.src.setResult(r, l.rs.Alias)
	}
	lv.addEquals(s.WhereClause, lv.where, lv.all)
	var sharded []*source
	for _, j := range tree {
		sh, err := p.checkJoin(lv, j)
		if err != nil {
			return queryResult{}, nil, err
		}
		sharded = append(sharded, sh...)
	}
	// Every sharded source must join the others on equal keys; with the
	// ON clauses all added, one class must hold them all.
	for _, s2 := range sharded[min(1, len(sharded)):] {
		s1 := sharded[0]
		if !s1.table.Colocated(s2.table) {
			return queryResult{}, nil, scatterError(fmt.Sprintf("join of sharded tables %q and %q, which are not co-located (same strategy, key type and placement)", s1.rel, s2.rel))
		}
		if !keyClass(lv.all, s1, s2) {
			return queryResult{}, nil, scatterError(fmt.Sprintf("join of sharded tables %q and %q not on equal shard keys", s1.rel, s2.rel))
		}
	}
	if err := p.sublinks(lv, s); err != nil {
		return queryResult{}, nil, err
	}
	if len(sharded) == 0 {
		if ctx == ctxTop {
			return queryResult{}, nil, scatterError("a query whose FROM reads no sharded table")
		}
		return queryResult{}, lv, nil
	}
	res := queryResult{sharded: true, table: sharded[0].table, rel: sharded[0].rel}
	if ctx == ctxTop {
		return res, lv, nil
	}
	// A subquery: are its sharded rows tied to an enclosing row's key?
	if pin != nil && len(s.TargetList) > 0 {
		if rt := s.TargetList[0].GetResTarget(); rt != nil {
			if cr := rt.Val.GetColumnRef(); cr != nil {
				if k, ok := lv.resolve(cr.Fields); ok {
					lv.where.union(k, pin.outer)
				}
			}
		}
	}
	if p.pinned(lv, sharded) {
		return queryResult{}, lv, nil
	}
	if ctx == ctxSublink {
		return queryResult{}, nil, scatterError(fmt.Sprintf("subquery over sharded table %q that is not tied to the enclosing row by its shard key", res.rel))
	}
	if why := p.mergesRows(s); why != "" {
		return queryResult{}, nil, scatterError(fmt.Sprintf("subquery over sharded table %q with %s", res.rel, why))
	}
	res.keys = exportKeys(lv, s, sharded)
	return res, lv, nil
}

// pinned reports whether the WHERE of lv ties one of its sharded sources'
// key to the key of a co-located sharded source of an enclosing level.
func (p *scatterPlanner) pinned(lv *level, sharded []*source) bool {
	for l := lv.parent; l != nil; l = l.parent {
		for _, o := range l.srcs {
			if o.kind != srcSharded {
				continue
			}
			for _, s := range sharded {
				if s.table.Colocated(o.table) && keyClass(lv.where, s, o) {
					return true
				}
			}
		}
	}
	return false
}

// mergesRows says why a subquery over sharded rows does not keep them
// apart ("" if it does), in which case it cannot be a sharded relation.
func (p *scatterPlanner) mergesRows(s *pg_query.SelectStmt) string {
	switch {
	case len(s.GroupClause) > 0:
		return "GROUP BY"
	case s.HavingClause != nil:
		return "HAVING"
	case len(s.DistinctClause) > 0:
		return "DISTINCT"
	case s.LimitCount != nil || s.LimitOffset != nil:
		return "LIMIT or OFFSET"
	case len(s.WindowClause) > 0:
		return "a window"
	}
	why := ""
	for _, list := range [][]*pg_query.Node{s.TargetList, s.SortClause} {
		for _, n := range list {
			walkMsg(n.ProtoReflect(), false, func(m protoreflect.Message) bool {
				if why != "" {
					return false
				}
				switch x := m.Interface().(type) {
				case *pg_query.FuncCall:
					schema, name, _ := names(x.Funcname)
					switch {
					case x.Over != nil:
						why = "window function " + name + "()"
					case isAggregateName(schema, name):
						why = "aggregate " + name + "()"
					case !p.funcs.readOnly(schema, name):
						why = "function " + qualified(schema, name) + "(), which may be an aggregate"
					}
				case *pg_query.GroupingFunc, *pg_query.JsonObjectAgg, *pg_query.JsonArrayAgg:
					why = "an aggregate"
				}
				return true
			})
		}
	}
	return why
}

// exportKeys lists the output columns of a row-keeping subquery that are
// equal to its sharded rows' key.
func exportKeys(lv *level, s *pg_query.SelectStmt, sharded []*source) []keyOut {
	var out []keyOut
	pos := 0
	for _, n := range s.TargetList {
		rt := n.GetResTarget()
		if rt == nil {
			continue
		}
		if star, q := starOf(rt.Val); star {
			for _, src := range lv.srcs {
				if src.kind == srcSharded && (q == "" || src.name == q) {
					for _, k := range src.keys {
						out = append(out, keyOut{pos: -1, name: k})
					}
				}
			}
			pos = -1 << 30
			continue
		}
		if cr := rt.Val.GetColumnRef(); cr != nil {
			if k, ok := lv.resolve(cr.Fields); ok {
				for _, s := range sharded {
					if isKeyOf(lv.where, k, s) {
						name := rt.Name
						if name == "" {
							name = k.col
						}
						out = append(out, keyOut{pos: max(pos, -1), name: name})
						break
					}
				}
			}
		}
		pos++
	}
	return out
}

// isKeyOf reports whether column k is a key of s or equal to one in u.
func isKeyOf(u unionFind, k colKey, s *source) bool {
	if k.src == s && s.hasKey(k.col) {
		return true
	}
	r := u.find(k)
	for _, key := range s.keys {
		if u.find(colKey{s, key}) == r {
			return true
		}
	}
	return false
}

// setResult makes a subquery source what its analysis says, renaming
// exported key columns by the alias's column list.
func (s *source) setResult(r queryResult, alias *pg_query.Alias) {
	if !r.sharded {
		s.kind = srcOther
		return
	}
	s.kind, s.table, s.rel = srcSharded, r.table, r.rel
	var cols []string
	if alias != nil {
		cols = stringList(alias.Colnames)
	}
	for _, k := range r.keys {
		switch {
		case len(cols) == 0:
			s.keys = append(s.keys, k.name)
		case k.pos >= 0 && k.pos < len(cols):
			s.keys = append(s.keys, cols[k.pos])
		case k.pos >= len(cols):
			s.keys = append(s.keys, k.name)
		}
	}
}

// joinNode is a FROM item: a source or a join of two items.
type joinNode struct {
	src         *source
	join        *pg_query.JoinExpr
	left, right *joinNode
}

type lateralItem struct {
	rs  *pg_query.RangeSubselect
	src *source
}

// fromFunctions are the set-returning functions allowed in FROM: their
// rows depend only on their arguments, so they are the same on every
// shard (or computed from the row of a LATERAL argument).
var fromFunctions = map[string]bool{
	"unnest": true, "generate_series": true, "generate_subscripts": true,
	"json_each": true, "json_each_text": true, "jsonb_each": true, "jsonb_each_text": true,
	"json_array_elements": true, "json_array_elements_text": true, "jsonb_array_elements": true, "jsonb_array_elements_text": true,
	"json_object_keys": true, "jsonb_object_keys": true, "json_to_record": true, "json_to_recordset": true,
	"jsonb_to_record": true, "jsonb_to_recordset": true, "json_populate_record": true, "json_populate_recordset": true,
	"jsonb_populate_record": true, "jsonb_populate_recordset": true, "jsonb_path_query": true,
	"regexp_matches": true, "regexp_split_to_table": true, "string_to_table": true,
}

func (p *scatterPlanner) fromItem(lv *level, n *pg_query.Node, laterals *[]*lateralItem) (*joinNode, error) {
	switch x := n.Node.(type) {
	case *pg_query.Node_RangeVar:
		src, err := p.relation(lv, x.RangeVar)
		if err != nil {
			return nil, err
		}
		lv.srcs = append(lv.srcs, src)
		return &joinNode{src: src}, nil
	case *pg_query.Node_RangeSubselect:
		rs := x.RangeSubselect
		src := &source{rel: "subquery"}
		if rs.Alias != nil {
			src.name = rs.Alias.Aliasname
			src.rel = rs.Alias.Aliasname
		}
		lv.srcs = append(lv.srcs, src)
		if rs.Lateral {
			*laterals = append(*laterals, &lateralItem{rs, src})
		} else {
			// Not LATERAL: it sees the enclosing levels, not this FROM.
			r, _, err := p.analyze(rs.Subquery, lv.parent, ctxFrom, nil)
			if err != nil {
				return nil, err
			}
			src.setResult(r, rs.Alias)
		}
		return &joinNode{src: src}, nil
	case *pg_query.Node_JoinExpr:
		j := x.JoinExpr
		l, err := p.fromItem(lv, j.Larg, laterals)
		if err != nil {
			return nil, err
		}
		r, err := p.fromItem(lv, j.Rarg, laterals)
		if err != nil {
			return nil, err
		}
		node := &joinNode{join: j, left: l, right: r}
		for _, a := range []*pg_query.Alias{j.Alias, j.JoinUsingAlias} {
			if a != nil {
				// The join's columns under another name: shardwire does not
				// follow them (they resolve to nothing).
				lv.srcs = append(lv.srcs, &source{name: a.Aliasname, rel: a.Aliasname})
			}
		}
		return node, nil
	case *pg_query.Node_RangeFunction:
		rf := x.RangeFunction
		for _, f := range rf.Functions {
			items := f.GetList().GetItems()
			if len(items) == 0 {
				return nil, scatterError("function in FROM")
			}
			fc := items[0].GetFuncCall()
			if fc == nil {
				return nil, scatterError("function in FROM")
			}
			schema, name, _ := names(fc.Funcname)
			if (schema != "" && schema != "pg_catalog") || !fromFunctions[name] {
				return nil, scatterError(fmt.Sprintf("function %s() in FROM", qualified(schema, name)))
			}
		}
		src := &source{rel: "function"}
		if rf.Alias != nil {
			src.name = rf.Alias.Aliasname
		}
		lv.srcs = append(lv.srcs, src)
		return &joinNode{src: src}, nil
	case *pg_query.Node_RangeTableSample:
		return nil, scatterError("TABLESAMPLE")
	}
	return nil, scatterError("FROM item shardwire does not understand")
}

// relation classifies a table or CTE reference.
func (p *scatterPlanner) relation(lv *level, rv *pg_query.RangeVar) (*source, error) {
	src := &source{name: rv.Relname, schema: rv.Schemaname, rel: canonicalName(rv.Schemaname, rv.Relname)}
	if rv.Alias != nil {
		src.name, src.schema = rv.Alias.Aliasname, ""
	}
	if rv.Schemaname == "" {
		if c := lv.findCTE(rv.Relname); c != nil {
			r, err := p.cteResult(c)
			if err != nil {
				return nil, err
			}
			src.setResult(r, rv.Alias)
			return src, nil
		}
	}
	switch s := rv.Schemaname; {
	case s == "pg_catalog", s == "information_schema", strings.HasPrefix(s, "pg_temp"), s == "pg_toast",
		s == "" && strings.HasPrefix(rv.Relname, "pg_"):
		return nil, scatterError(fmt.Sprintf("system catalog %s (it differs between servers)", src.rel))
	}
	t, ok := p.m.Table(src.rel)
	switch {
	case !ok:
		return nil, scatterError(fmt.Sprintf("unsharded table %q (it lives on the default shard only)", src.rel))
	case t.Replicated():
		src.kind = srcOther
	default:
		src.kind, src.table = srcSharded, t
		if rv.Alias == nil || len(rv.Alias.Colnames) == 0 {
			// Column aliases rename the key to a name shardwire cannot
			// know without the table's column order.
			src.keys = []string{t.Key()}
		}
	}
	return src, nil
}

func (p *scatterPlanner) cteResult(c *cte) (queryResult, error) {
	switch {
	case c.done:
		return c.res, c.err
	case c.busy:
		// A recursive reference: its rows are those of the CTE, which is
		// refused below if it reads sharded rows.
		return queryResult{}, nil
	}
	c.busy = true
	r, _, err := p.analyze(c.query, c.scope, ctxFrom, nil)
	c.busy = false
	if err == nil && len(c.colnames) > 0 {
		var keys []keyOut
		for _, k := range r.keys {
			if k.pos >= 0 && k.pos < len(c.colnames) {
				keys = append(keys, keyOut{k.pos, c.colnames[k.pos]})
			} else if k.pos >= len(c.colnames) {
				keys = append(keys, k)
			}
		}
		r.keys = keys
	}
	c.res, c.err, c.done = r, err, true
	return r, err
}

// checkJoin checks the joins of a FROM item bottom-up and returns its
// sharded sources.
func (p *scatterPlanner) checkJoin(lv *level, j *joinNode) ([]*source, error) {
	if j.join == nil {
		if j.src.kind == srcSharded {
			return []*source{j.src}, nil
		}
		return nil, nil
	}
	left, err := p.checkJoin(lv, j.left)
	if err != nil {
		return nil, err
	}
	right, err := p.checkJoin(lv, j.right)
	if err != nil {
		return nil, err
	}
	je := j.join
	lv.addEquals(je.Quals, lv.all)
	// USING (c) and NATURAL equate same-named columns; shardwire knows
	// only the keys' names.
	using := stringList(je.UsingClause)
	for _, a := range left {
		for _, b := range right {
			for _, ka := range a.keys {
				if slices.Contains(b.keys, ka) && (je.IsNatural || slices.Contains(using, ka)) {
					lv.all.union(colKey{a, ka}, colKey{b, ka})
				}
			}
		}
	}
	if err := p.sublinksIn(lv, je.Quals, nil); err != nil {
		return nil, err
	}
	switch {
	case len(left) > 0 && len(right) > 0:
		for _, a := range left {
			for _, b := range right {
				if a.table.Colocated(b.table) && keyClass(lv.all, a, b) {
					return append(left, right...), nil
				}
			}
		}
		return nil, scatterError(fmt.Sprintf("join of sharded tables %q and %q not on equal shard keys of co-located tables", left[0].rel, right[0].rel))
	case len(left) == 0 && len(right) == 0:
		return nil, nil
	}
	preserved := ""
	switch je.Jointype {
	case pg_query.JoinType_JOIN_LEFT:
		if len(left) == 0 {
			preserved = "LEFT"
		}
	case pg_query.JoinType_JOIN_RIGHT:
		if len(right) == 0 {
			preserved = "RIGHT"
		}
	case pg_query.JoinType_JOIN_FULL:
		preserved = "FULL"
	case pg_query.JoinType_JOIN_INNER:
	default:
		return nil, scatterError("join type shardwire does not understand")
	}
	if preserved != "" {
		sh := append(left, right...)[0]
		return nil, scatterError(fmt.Sprintf("%s JOIN of sharded table %q with rows that are on every shard (they would come back once per shard)", preserved, sh.rel))
	}
	return append(left, right...), nil
}

// sublinks checks the expression subqueries of a query level (those in
// JOIN … ON are checked by checkJoin, FROM subqueries by fromItem).
func (p *scatterPlanner) sublinks(lv *level, s *pg_query.SelectStmt) error {
	// A positive "x IN (SELECT …)" condition of WHERE may tie the
	// subquery to x: every row that satisfies it has a subquery row whose
	// first column equals x, and a NULL (no match) and false both drop the
	// row.
	done := map[*pg_query.SubLink]bool{}
	for _, c := range conjunctsOf(s.WhereClause) {
		sl := c.GetSubLink()
		if sl == nil || sl.SubLinkType != pg_query.SubLinkType_ANY_SUBLINK {
			continue
		}
		done[sl] = true
		var pin *inPin
		if cr := sl.Testexpr.GetColumnRef(); cr != nil && (len(sl.OperName) == 0 || isOperator(sl.OperName, "=")) {
			if k, ok := lv.resolve(cr.Fields); ok {
				pin = &inPin{outer: k}
			}
		}
		if err := p.sublinksIn(lv, sl.Testexpr, done); err != nil {
			return err
		}
		if _, _, err := p.analyze(sl.Subselect, lv, ctxSublink, pin); err != nil {
			return err
		}
	}
	lists := [][]*pg_query.Node{s.TargetList, s.GroupClause, s.SortClause, s.DistinctClause, s.WindowClause,
		{s.WhereClause, s.HavingClause, s.LimitCount, s.LimitOffset}}
	for _, vl := range s.ValuesLists {
		lists = append(lists, vl.GetList().GetItems())
	}
	for _, list := range lists {
		for _, n := range list {
			if err := p.sublinksIn(lv, n, done); err != nil {
				return err
			}
		}
	}
	// The arguments of functions in FROM, at any depth of its joins.
	var err error
	for _, item := range s.FromClause {
		walkMsg(item.ProtoReflect(), false, func(m protoreflect.Message) bool {
			if err != nil {
				return false
			}
			switch x := m.Interface().(type) {
			case *pg_query.RangeSubselect:
				return false
			case *pg_query.RangeFunction:
				for _, f := range x.Functions {
					if e := p.sublinksIn(lv, f, done); e != nil {
						err = e
					}
				}
				return false
			}
			return true
		})
	}
	return err
}

// sublinksIn analyses every SubLink under n (except those done) as a
// subquery of level lv.
func (p *scatterPlanner) sublinksIn(lv *level, n *pg_query.Node, done map[*pg_query.SubLink]bool) error {
	if n == nil {
		return nil
	}
	var err error
	walkMsg(n.ProtoReflect(), false, func(m protoreflect.Message) bool {
		if err != nil {
			return false
		}
		sl, ok := m.Interface().(*pg_query.SubLink)
		if !ok {
			return true
		}
		if e := p.sublinksIn(lv, sl.Testexpr, done); e != nil {
			err = e
			return false
		}
		if !done[sl] {
			_, _, err = p.analyze(sl.Subselect, lv, ctxSublink, nil)
		}
		return false
	})
	return err
}

// --- tree helpers -----------------------------------------------------------------

// walkMsg visits m and the messages below it, depth first; f returns
// false to skip a message's children. With intoQueries false it does not
// enter subqueries (SelectStmt), which are levels of their own.
func walkMsg(m protoreflect.Message, intoQueries bool, f func(protoreflect.Message) bool) {
	if !m.IsValid() {
		return
	}
	if _, ok := m.Interface().(*pg_query.SelectStmt); ok && !intoQueries {
		return
	}
	if !f(m) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					walkMsg(l.Get(i).Message(), intoQueries, f)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			walkMsg(v.Message(), intoQueries, f)
		}
		return true
	})
}

// stringList returns the String values of a list of nodes.
func stringList(list []*pg_query.Node) []string {
	out := make([]string, 0, len(list))
	for _, n := range list {
		if s := n.GetString_(); s != nil {
			out = append(out, s.Sval)
		}
	}
	return out
}

func qualified(schema, name string) string {
	if schema == "" {
		return name
	}
	return schema + "." + name
}

// starOf reports whether a select-list expression is * or q.* (q returned).
func starOf(n *pg_query.Node) (bool, string) {
	if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) > 0 {
		if cr.Fields[len(cr.Fields)-1].GetAStar() != nil {
			q := ""
			if len(cr.Fields) >= 2 {
				if s := cr.Fields[len(cr.Fields)-2].GetString_(); s != nil {
					q = s.Sval
				}
			}
			return true, q
		}
	}
	if ind := n.GetAIndirection(); ind != nil && len(ind.Indirection) > 0 && ind.Indirection[len(ind.Indirection)-1].GetAStar() != nil {
		return true, "?"
	}
	return false, ""
}

// exprEqual compares two expressions as parse trees, ignoring where they
// are in the text. Column references also compare equal when one is
// qualified and the other not, if the level has a single source (so both
// name its column).
func (p *scatterPlanner) exprEqual(lv *level, a, b *pg_query.Node) bool {
	if a == nil || b == nil {
		return a == b
	}
	return p.msgEqual(lv, a.ProtoReflect(), b.ProtoReflect())
}

func (p *scatterPlanner) msgEqual(lv *level, a, b protoreflect.Message) bool {
	if a.IsValid() != b.IsValid() {
		return false
	}
	if !a.IsValid() {
		return true
	}
	if a.Descriptor() != b.Descriptor() {
		return false
	}
	if ca, ok := a.Interface().(*pg_query.ColumnRef); ok {
		return columnsEqual(lv, ca, b.Interface().(*pg_query.ColumnRef))
	}
	// Range visits only the fields that are set (a Node has one of some
	// 250); b must then have the same set fields.
	eq, n := true, 0
	a.Range(func(fd protoreflect.FieldDescriptor, va protoreflect.Value) bool {
		if fd.Name() == "location" {
			return true
		}
		n++
		if !b.Has(fd) {
			eq = false
			return false
		}
		vb := b.Get(fd)
		switch {
		case fd.IsMap():
			eq = false
		case fd.IsList():
			la, lb := va.List(), vb.List()
			if la.Len() != lb.Len() {
				eq = false
				break
			}
			for j := 0; j < la.Len() && eq; j++ {
				if fd.Kind() == protoreflect.MessageKind {
					eq = p.msgEqual(lv, la.Get(j).Message(), lb.Get(j).Message())
				} else {
					eq = la.Get(j).Equal(lb.Get(j))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			eq = p.msgEqual(lv, va.Message(), vb.Message())
		default:
			eq = va.Equal(vb)
		}
		return eq
	})
	if !eq {
		return false
	}
	b.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if fd.Name() != "location" {
			n--
		}
		return true
	})
	return n == 0
}

func columnsEqual(lv *level, a, b *pg_query.ColumnRef) bool {
	fa, fb := stringList(a.Fields), stringList(b.Fields)
	if len(fa) != len(a.Fields) || len(fb) != len(b.Fields) {
		return false // a *
	}
	if slices.Equal(fa, fb) {
		return true
	}
	if lv == nil || len(fa) == 0 || len(fb) == 0 || fa[len(fa)-1] != fb[len(fb)-1] || (len(fa) > 1 && len(fb) > 1) {
		return false
	}
	// One is qualified, one is not: the same column if the level has one
	// source and the qualifier names it.
	if len(lv.srcs) != 1 {
		return false
	}
	q := fa
	if len(fb) > 1 {
		q = fb
	}
	src := lv.srcs[0]
	return q[len(q)-2] == src.name && (len(q) == 2 || q[len(q)-3] == src.schema)
}

// figureColname is the column name Postgres gives an unaliased
// select-list expression (FigureColname in parse_target.c); ok is false
// for the few expressions whose name shardwire does not work out.
func figureColname(n *pg_query.Node) (string, bool) {
	name, strength, ok := figureColnameInternal(n)
	if !ok {
		return "", false
	}
	if strength == 0 {
		return "?column?", true
	}
	return name, true
}

func figureColnameInternal(n *pg_query.Node) (name string, strength int, ok bool) {
	if n == nil {
		return "", 0, true
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_ColumnRef:
		f := stringList(x.ColumnRef.Fields)
		if len(f) > 0 {
			return f[len(f)-1], 2, true
		}
		return "", 0, true
	case *pg_query.Node_AIndirection:
		f := stringList(x.AIndirection.Indirection)
		if len(f) > 0 {
			return f[len(f)-1], 2, true
		}
		return figureColnameInternal(x.AIndirection.Arg)
	case *pg_query.Node_FuncCall:
		f := stringList(x.FuncCall.Funcname)
		if len(f) > 0 {
			return f[len(f)-1], 2, true
		}
		return "", 0, false
	case *pg_query.Node_AExpr:
		if x.AExpr.Kind == pg_query.A_Expr_Kind_AEXPR_NULLIF {
			return "nullif", 2, true
		}
		return "", 0, true
	case *pg_query.Node_TypeCast:
		name, strength, ok := figureColnameInternal(x.TypeCast.Arg)
		if !ok {
			return "", 0, false
		}
		if strength <= 1 && x.TypeCast.TypeName != nil {
			if f := stringList(x.TypeCast.TypeName.Names); len(f) > 0 {
				return f[len(f)-1], 1, true
			}
		}
		return name, strength, true
	case *pg_query.Node_CollateClause:
		return figureColnameInternal(x.CollateClause.Arg)
	case *pg_query.Node_GroupingFunc:
		return "grouping", 2, true
	case *pg_query.Node_SubLink:
		switch x.SubLink.SubLinkType {
		case pg_query.SubLinkType_EXISTS_SUBLINK:
			return "exists", 2, true
		case pg_query.SubLinkType_ARRAY_SUBLINK:
			return "array", 2, true
		case pg_query.SubLinkType_EXPR_SUBLINK:
			s := x.SubLink.Subselect.GetSelectStmt()
			for s != nil && s.Larg != nil {
				s = s.Larg
			}
			if s == nil || len(s.TargetList) == 0 {
				return "", 0, false
			}
			rt := s.TargetList[0].GetResTarget()
			if rt == nil {
				return "", 0, false
			}
			if rt.Name != "" {
				return rt.Name, 2, true
			}
			if star, _ := starOf(rt.Val); star {
				return "", 0, false
			}
			name, ok := figureColname(rt.Val)
			return name, 2, ok
		}
		return "", 0, true
	case *pg_query.Node_CaseExpr:
		name, strength, ok := figureColnameInternal(x.CaseExpr.Defresult)
		if !ok {
			return "", 0, false
		}
		if strength <= 1 {
			return "case", 1, true
		}
		return name, strength, true
	case *pg_query.Node_AArrayExpr:
		return "array", 2, true
	case *pg_query.Node_RowExpr:
		return "row", 2, true
	case *pg_query.Node_CoalesceExpr:
		return "coalesce", 2, true
	case *pg_query.Node_MinMaxExpr:
		if x.MinMaxExpr.Op == pg_query.MinMaxOp_IS_LEAST {
			return "least", 2, true
		}
		return "greatest", 2, true
	case *pg_query.Node_SqlvalueFunction:
		if n := svfNames[x.SqlvalueFunction.Op]; n != "" {
			return n, 2, true
		}
		return "", 0, false
	case *pg_query.Node_AConst, *pg_query.Node_ParamRef, *pg_query.Node_BoolExpr, *pg_query.Node_NullTest,
		*pg_query.Node_BooleanTest:
		return "", 0, true
	}
	return "", 0, false
}

var svfNames = map[pg_query.SQLValueFunctionOp]string{
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_DATE:        "current_date",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME:        "current_time",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N:      "current_time",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP:   "current_timestamp",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N: "current_timestamp",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME:           "localtime",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME_N:         "localtime",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP:      "localtimestamp",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:    "localtimestamp",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_ROLE:        "current_role",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_USER:        "current_user",
	pg_query.SQLValueFunctionOp_SVFOP_USER:                "user",
	pg_query.SQLValueFunctionOp_SVFOP_SESSION_USER:        "session_user",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG:     "current_catalog",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:      "current_schema",
}

// builtinAggregates are the names of PostgreSQL's aggregate and window
// functions (pg_proc.prokind 'a' or 'w' in pg_catalog, PostgreSQL 15,
// plus any_value from 16). No plain function shares one of these names.
var builtinAggregates = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Fields(`any_value array_agg avg bit_and bit_or bit_xor bool_and bool_or corr count
		covar_pop covar_samp cume_dist dense_rank every first_value json_agg json_object_agg jsonb_agg
		jsonb_object_agg lag last_value lead max min mode nth_value ntile percent_rank percentile_cont
		percentile_disc range_agg range_intersect_agg rank regr_avgx regr_avgy regr_count regr_intercept
		regr_r2 regr_slope regr_sxx regr_sxy regr_syy row_number stddev stddev_pop stddev_samp
		string_agg sum var_pop var_samp variance xmlagg`) {
		m[n] = true
	}
	return m
}()

func isAggregateName(schema, name string) bool {
	return (schema == "" || schema == "pg_catalog") && builtinAggregates[name]
}

// combinable are the aggregates whose partial results the merge combines.
var combinable = map[string]gather.AggKind{
	"count": gather.AggCount, "sum": gather.AggSum, "min": gather.AggMin, "max": gather.AggMax,
	"avg": gather.AggAvg, "bool_and": gather.AggBoolAnd, "every": gather.AggBoolAnd, "bool_or": gather.AggBoolOr,
}

// cloneNode deep-copies a parse tree node.
func cloneNode(n *pg_query.Node) *pg_query.Node { return proto.Clone(n).(*pg_query.Node) }

func strNode(s string) *pg_query.Node { return pg_query.MakeStrNode(s) }

// intConst is an integer constant of any size.
func intConst(v int64) *pg_query.Node {
	if v >= math.MinInt32 && v <= math.MaxInt32 {
		return pg_query.MakeAConstIntNode(v, -1)
	}
	return &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{
		Val: &pg_query.A_Const_Fval{Fval: &pg_query.Float{Fval: strconv.FormatInt(v, 10)}}, Location: -1}}}
}

// int8Cast is n::int8.
func int8Cast(n *pg_query.Node) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{
		Arg: n, TypeName: &pg_query.TypeName{Names: []*pg_query.Node{strNode("int8")}, Typemod: -1, Location: -1}, Location: -1}}}
}

// --- the top-level plan ---------------------------------------------------------

// outRef is a column of the shards' rows before the hidden columns are
// numbered: a select-list item or a hidden column.
type outRef struct {
	hidden bool
	i      int
}

// outCol is a select-list item of the top-level query.
type outCol struct {
	rt    *pg_query.ResTarget
	star  bool
	name  string // output name; "" when unknown
	named bool
	agg   *pg_query.FuncCall // the whole item is a combinable aggregate
	kind  gather.AggKind
}

// hiddenCol is a column the planner appends for the merge.
type hiddenCol struct {
	name string
	val  *pg_query.Node // as the shards compute it
	orig *pg_query.Node // as the statement wrote it (avg for a sum), for matching
	agg  bool
}

type aggRef struct {
	col, count outRef
	kind       gather.AggKind
}

type sortRef struct {
	col              outRef
	desc, nullsFirst bool
}

type condRef struct {
	col   outRef
	op    gather.CmpOp
	value string
}

// topPlan is the state of planning the top-level select list and clauses.
type topPlan struct {
	cols   []outCol
	hidden []hiddenCol
	aggs   []aggRef
	group  []outRef
	sort   []sortRef
	having []condRef
	star   bool
	// firstStar and lastStar are the positions of the first and last *.
	firstStar, lastStar int
}

func (p *scatterPlanner) plan() error {
	s := p.stmt
	_, lv, err := p.analyzeSelect(s, nil, ctxTop, nil)
	if err != nil {
		return err
	}
	p.top = lv
	p.out.Limit = -1
	if len(s.WindowClause) > 0 {
		return scatterError("window function (WINDOW clause)")
	}
	tp := &topPlan{firstStar: -1, lastStar: -1}
	anyAgg := false
	for i, n := range s.TargetList {
		rt := n.GetResTarget()
		if rt == nil || rt.Val == nil {
			return scatterError("select list shardwire does not understand")
		}
		c := outCol{rt: rt}
		if c.star, _ = starOf(rt.Val); c.star {
			tp.star = true
			if tp.firstStar < 0 {
				tp.firstStar = i
			}
			tp.lastStar = i
		} else if rt.Name != "" {
			c.name, c.named = rt.Name, true
		} else {
			c.name, c.named = figureColname(rt.Val)
		}
		calls, err := p.aggregateCalls(rt.Val)
		if err != nil {
			return err
		}
		if len(calls) > 0 {
			anyAgg = true
			fc := rt.Val.GetFuncCall()
			if len(calls) != 1 || fc != calls[0] {
				_, name, _ := names(calls[0].Funcname)
				return scatterError(fmt.Sprintf("an expression on aggregate %s() in the select list", name))
			}
			_, name, _ := names(fc.Funcname)
			c.agg, c.kind = fc, combinable[name]
		}
		tp.cols = append(tp.cols, c)
	}
	for _, n := range s.SortClause {
		sb := n.GetSortBy()
		if sb == nil {
			return scatterError("ORDER BY shardwire does not understand")
		}
		calls, err := p.aggregateCalls(sb.Node)
		if err != nil {
			return err
		}
		anyAgg = anyAgg || len(calls) > 0
	}
	if calls, err := p.aggregateCalls(s.HavingClause); err != nil {
		return err
	} else if len(calls) > 0 {
		anyAgg = true
	}
	for _, list := range [][]*pg_query.Node{s.TargetList, s.SortClause} {
		for _, n := range list {
			if name := outerAggregate(n); name != "" {
				return scatterError(fmt.Sprintf("aggregate %s() over the outer query's columns inside a subquery", name))
			}
		}
	}
	distinct := false
	if len(s.DistinctClause) > 0 {
		if len(s.DistinctClause) != 1 || s.DistinctClause[0].GetNode() != nil {
			return scatterError("DISTINCT ON")
		}
		distinct = true
	}
	aggregating := anyAgg || len(s.GroupClause) > 0 || s.HavingClause != nil
	if aggregating {
		err = p.planAggregate(tp, distinct)
	} else {
		err = p.planRows(tp, distinct)
	}
	if err != nil {
		return err
	}
	if err := p.limits(aggregating); err != nil {
		return err
	}
	p.finish(tp)
	return nil
}

// outerAggregate finds, in the subqueries under n, an aggregate (or a
// function that may be one) whose arguments may refer only to columns of
// the enclosing query: Postgres then computes it in the enclosing query,
// which then aggregates (SELECT (SELECT sum(o.qty)) FROM orders o is one
// row). An argument column counts as the subquery's own when its
// qualifier names a FROM item of the subquery (at any depth), or, when
// unqualified, when the subquery reads some FROM item; so this is
// conservative except for an unqualified name of an outer column that
// the subquery's tables lack.
func outerAggregate(n *pg_query.Node) string {
	if n == nil {
		return ""
	}
	found := ""
	walkMsg(n.ProtoReflect(), false, func(m protoreflect.Message) bool {
		sl, ok := m.Interface().(*pg_query.SubLink)
		if !ok || found != "" {
			return found == ""
		}
		sub := sl.Subselect.ProtoReflect()
		inner, hasFrom := map[string]bool{}, false
		walkMsg(sub, true, func(x protoreflect.Message) bool {
			var a *pg_query.Alias
			switch y := x.Interface().(type) {
			case *pg_query.SelectStmt:
				hasFrom = hasFrom || len(y.FromClause) > 0
			case *pg_query.RangeVar:
				inner[y.Relname] = true
				a = y.Alias
			case *pg_query.RangeSubselect:
				a = y.Alias
			case *pg_query.RangeFunction:
				a = y.Alias
			case *pg_query.JoinExpr:
				a = y.Alias
			case *pg_query.CommonTableExpr:
				inner[y.Ctename] = true
			}
			if a != nil {
				inner[a.Aliasname] = true
			}
			return true
		})
		walkMsg(sub, true, func(x protoreflect.Message) bool {
			fc, ok := x.Interface().(*pg_query.FuncCall)
			if !ok || found != "" {
				return found == ""
			}
			schema, name, _ := names(fc.Funcname)
			if _, builtin := builtinReadOnly()[name]; builtin && !isAggregateName(schema, name) && (schema == "" || schema == "pg_catalog") {
				return true // a plain function
			}
			outer := false
			for _, arg := range append(slices.Clip(fc.Args), fc.AggFilter) {
				if arg == nil {
					continue
				}
				walkMsg(arg.ProtoReflect(), false, func(y protoreflect.Message) bool {
					cr, ok := y.Interface().(*pg_query.ColumnRef)
					if !ok {
						return true
					}
					f := stringList(cr.Fields)
					if len(f) < len(cr.Fields) { // q.*: the qualifier is the last name
						f = append(f, "*")
					}
					if len(f) == 1 {
						outer = outer || !hasFrom
					} else if len(f) > 1 {
						outer = outer || !inner[f[len(f)-2]]
					}
					return false
				})
			}
			if outer {
				found = name
			}
			return true
		})
		return false
	})
	return found
}

// aggregateCalls returns the combinable aggregate calls in n (outside
// subqueries), and refuses window functions, other aggregates, and
// functions that may be user-defined aggregates.
func (p *scatterPlanner) aggregateCalls(n *pg_query.Node) ([]*pg_query.FuncCall, error) {
	if n == nil {
		return nil, nil
	}
	var calls []*pg_query.FuncCall
	var err error
	walkMsg(n.ProtoReflect(), false, func(m protoreflect.Message) bool {
		if err != nil {
			return false
		}
		switch x := m.Interface().(type) {
		case *pg_query.FuncCall:
			schema, name, ok := names(x.Funcname)
			switch {
			case !ok:
				err = scatterError("call of a function with an unusual name")
			case x.Over != nil:
				err = scatterError(fmt.Sprintf("window function %s()", name))
			case isAggregateName(schema, name):
				err = checkAggregate(x, name)
				calls = append(calls, x)
				return false // Postgres rejects aggregates nested in aggregates
			case !p.funcs.readOnly(schema, name):
				err = scatterError(fmt.Sprintf("function %s(), which shardwire does not know (it may be an aggregate)", qualified(schema, name)))
			}
		case *pg_query.GroupingFunc:
			err = scatterError("GROUPING()")
		case *pg_query.JsonObjectAgg:
			err = scatterError("aggregate JSON_OBJECTAGG")
		case *pg_query.JsonArrayAgg:
			err = scatterError("aggregate JSON_ARRAYAGG")
		}
		return true
	})
	return calls, err
}

// checkAggregate refuses the aggregate calls whose partial results the
// merge cannot combine.
func checkAggregate(fc *pg_query.FuncCall, name string) error {
	kind, ok := combinable[name]
	switch {
	case !ok:
		return scatterError(fmt.Sprintf("aggregate %s()", name))
	case fc.AggWithinGroup:
		return scatterError(fmt.Sprintf("%s() WITHIN GROUP", name))
	case len(fc.AggOrder) > 0:
		return scatterError(fmt.Sprintf("%s() with ORDER BY", name))
	case fc.FuncVariadic:
		return scatterError(fmt.Sprintf("%s() with VARIADIC", name))
	case fc.AggDistinct && kind != gather.AggMin && kind != gather.AggMax && kind != gather.AggBoolAnd && kind != gather.AggBoolOr:
		// DISTINCT changes nothing for min, max, bool_and and bool_or.
		return scatterError(fmt.Sprintf("%s(DISTINCT …)", name))
	case name == "count" && fc.AggStar && len(fc.Args) == 0:
	case fc.AggStar || len(fc.Args) != 1:
		return scatterError(fmt.Sprintf("%s() with %d arguments", name, len(fc.Args)))
	}
	return nil
}

// target is a reference to select-list item i, or, when a * before it
// and another after it hide its position, a hidden copy.
func (tp *topPlan) target(i int) outRef {
	if tp.firstStar >= 0 && tp.firstStar < i && tp.lastStar > i {
		return tp.addHidden("?sw_sort", cloneNode(tp.cols[i].rt.Val), nil, false)
	}
	return outRef{i: i}
}

func (tp *topPlan) addHidden(prefix string, val, orig *pg_query.Node, agg bool) outRef {
	if orig == nil {
		orig = val
	}
	tp.hidden = append(tp.hidden, hiddenCol{name: fmt.Sprintf("%s_%d", prefix, len(tp.hidden)+1), val: val, orig: orig, agg: agg})
	return outRef{hidden: true, i: len(tp.hidden) - 1}
}

// sortItem reads the direction of an ORDER BY item, and returns the
// expression to sort on and the one to compare with the select list
// (without an allowed COLLATE).
func sortItem(sb *pg_query.SortBy) (expr, match *pg_query.Node, desc, nullsFirst bool, err error) {
	if sb.SortbyDir == pg_query.SortByDir_SORTBY_USING || len(sb.UseOp) > 0 {
		return nil, nil, false, false, scatterError("ORDER BY … USING")
	}
	desc = sb.SortbyDir == pg_query.SortByDir_SORTBY_DESC
	nullsFirst = desc // Postgres: NULLS LAST for ASC, NULLS FIRST for DESC
	switch sb.SortbyNulls {
	case pg_query.SortByNulls_SORTBY_NULLS_FIRST:
		nullsFirst = true
	case pg_query.SortByNulls_SORTBY_NULLS_LAST:
		nullsFirst = false
	}
	expr, match = sb.Node, sb.Node
	if cc := sb.Node.GetCollateClause(); cc != nil {
		schema, coll, ok := names(cc.Collname)
		if !ok || (schema != "" && schema != "pg_catalog") || (coll != "C" && coll != "POSIX" && coll != "default") {
			return nil, nil, false, false, scatterError(fmt.Sprintf("COLLATE %q in ORDER BY (the merge compares in byte order)", strings.Join(stringList(cc.Collname), ".")))
		}
		match = cc.Arg
	}
	return expr, match, desc, nullsFirst, nil
}

// position reads an ORDER BY or GROUP BY item that is an integer
// constant (a select-list position, from 1).
func position(n *pg_query.Node) (int, bool, error) {
	c := n.GetAConst()
	if c == nil {
		return 0, false, nil
	}
	if iv, ok := c.Val.(*pg_query.A_Const_Ival); ok {
		return int(iv.Ival.Ival), true, nil
	}
	return 0, false, scatterError("a constant other than a position in ORDER BY or GROUP BY")
}

// byName finds the select-list item an unqualified name in ORDER BY
// names (Postgres prefers an output name to an input column there).
// ok is false when the name names no item; an error when it cannot tell.
func (p *scatterPlanner) byName(tp *topPlan, n *pg_query.Node) (int, bool, error) {
	cr := n.GetColumnRef()
	if cr == nil || len(cr.Fields) != 1 || cr.Fields[0].GetString_() == nil {
		return 0, false, nil
	}
	name := cr.Fields[0].GetString_().Sval
	found := -1
	for i, c := range tp.cols {
		switch {
		case c.star:
		case !c.named:
			return 0, false, scatterError(fmt.Sprintf("ORDER BY %s, when shardwire cannot tell the name of every output column", name))
		case c.name == name:
			if found >= 0 && !p.exprEqual(p.top, tp.cols[found].rt.Val, c.rt.Val) {
				return 0, false, pgError("42702", fmt.Sprintf("ORDER BY %q is ambiguous", name))
			}
			if found < 0 {
				found = i
			}
		}
	}
	return found, found >= 0, nil
}

// planRows plans a statement that does not aggregate: the shards sort,
// and the merge keeps their order.
func (p *scatterPlanner) planRows(tp *topPlan, distinct bool) error {
	s := p.stmt
	for _, n := range s.SortClause {
		expr, match, desc, nullsFirst, err := sortItem(n.GetSortBy())
		if err != nil {
			return err
		}
		ref, err := p.rowSortRef(tp, expr, match, distinct)
		if err != nil {
			return err
		}
		tp.sort = append(tp.sort, sortRef{ref, desc, nullsFirst})
	}
	if distinct {
		p.out.Distinct = true
	}
	return nil
}

func (p *scatterPlanner) rowSortRef(tp *topPlan, expr, match *pg_query.Node, distinct bool) (outRef, error) {
	k, isPos, err := position(match)
	if err != nil {
		return outRef{}, err
	}
	if isPos {
		switch {
		case k < 1 || k > len(tp.cols) && !tp.star:
			return outRef{}, pgError("42P10", fmt.Sprintf("ORDER BY position %d is not in select list", k))
		case tp.firstStar >= 0 && tp.firstStar < k:
			return outRef{}, scatterError("ORDER BY a position after SELECT *")
		}
		return tp.target(k - 1), nil
	}
	if i, ok, err := p.byName(tp, match); err != nil {
		return outRef{}, err
	} else if ok {
		return tp.target(i), nil
	}
	for i, c := range tp.cols {
		if !c.star && p.exprEqual(p.top, c.rt.Val, match) {
			return tp.target(i), nil
		}
	}
	if distinct {
		return outRef{}, pgError("42P10", "for SELECT DISTINCT, ORDER BY expressions must appear in select list")
	}
	return tp.addHidden("?sw_sort", cloneNode(expr), nil, false), nil
}

// planAggregate plans a statement that aggregates: the shards compute
// partial aggregates per group, and the merge combines, filters (HAVING),
// sorts, limits and removes duplicates.
func (p *scatterPlanner) planAggregate(tp *topPlan, distinct bool) error {
	s := p.stmt
	if tp.star {
		return scatterError("SELECT * with GROUP BY or aggregates")
	}
	for _, list := range [][]*pg_query.Node{s.TargetList, s.SortClause, {s.HavingClause}} {
		for _, n := range list {
			if hasSublink(n) {
				return scatterError("a subquery in the select list, HAVING or ORDER BY of an aggregate query")
			}
		}
	}
	// GROUP BY: each item is an output column, or becomes a hidden one.
	for _, g := range s.GroupClause {
		if g.GetGroupingSet() != nil {
			return scatterError("GROUPING SETS, ROLLUP or CUBE")
		}
		ref, err := p.groupRef(tp, g)
		if err != nil {
			return err
		}
		if !slices.Contains(tp.group, ref) {
			tp.group = append(tp.group, ref)
		}
	}
	// Every other output is an aggregate, a grouped column or a constant.
	for i, c := range tp.cols {
		ref := outRef{i: i}
		switch {
		case c.agg != nil, slices.Contains(tp.group, ref):
		case isConstant(c.rt.Val):
			tp.group = append(tp.group, ref)
		default:
			return scatterError(fmt.Sprintf("select-list column %q that is neither an aggregate nor a GROUP BY item", c.name))
		}
	}
	for _, c := range conjunctsOf(s.HavingClause) {
		if err := p.havingCond(tp, c); err != nil {
			return err
		}
	}
	for _, n := range s.SortClause {
		_, match, desc, nullsFirst, err := sortItem(n.GetSortBy())
		if err != nil {
			return err
		}
		ref, err := p.aggSortRef(tp, match)
		if err != nil {
			return err
		}
		tp.sort = append(tp.sort, sortRef{ref, desc, nullsFirst})
	}
	// The aggregates of the select list; avg becomes sum and a count.
	for i, c := range tp.cols {
		if c.agg == nil {
			continue
		}
		ar := aggRef{col: outRef{i: i}, kind: c.kind}
		if c.kind == gather.AggAvg {
			if c.rt.Name == "" {
				c.rt.Name = c.name // keep the client's column name
			}
			ar.count = tp.addHidden("?sw_count", countOf(c.agg), nil, true)
			renameAggregate(c.agg, "sum")
			p.changed = true
		}
		tp.aggs = append(tp.aggs, ar)
	}
	p.out.Distinct = distinct
	// The merge filters, sorts and removes duplicates; the shards return
	// every partial group.
	if s.HavingClause != nil || len(s.SortClause) > 0 || len(s.DistinctClause) > 0 {
		p.changed = true
	}
	s.HavingClause, s.SortClause, s.DistinctClause = nil, nil, nil
	return nil
}

// groupRef finds or adds the column of a GROUP BY item. A bare name is
// taken as an output name when some output has it and its expression is
// not that column (Postgres would first look for an input column of the
// name; see the package documentation).
func (p *scatterPlanner) groupRef(tp *topPlan, g *pg_query.Node) (outRef, error) {
	k, isPos, err := position(g)
	if err != nil {
		return outRef{}, err
	}
	if isPos {
		if k < 1 || k > len(tp.cols) {
			return outRef{}, pgError("42P10", fmt.Sprintf("GROUP BY position %d is not in select list", k))
		}
		if tp.cols[k-1].agg != nil {
			return outRef{}, pgError("42803", "aggregate functions are not allowed in GROUP BY")
		}
		return outRef{i: k - 1}, nil
	}
	for i, c := range tp.cols {
		if c.agg == nil && p.exprEqual(p.top, c.rt.Val, g) {
			return outRef{i: i}, nil
		}
	}
	if cr := g.GetColumnRef(); cr != nil && len(cr.Fields) == 1 && cr.Fields[0].GetString_() != nil {
		name := cr.Fields[0].GetString_().Sval
		for i, c := range tp.cols {
			if c.named && c.name == name && c.agg == nil {
				return outRef{i: i}, nil
			}
		}
	}
	for j, h := range tp.hidden {
		if !h.agg && p.exprEqual(p.top, h.orig, g) {
			return outRef{hidden: true, i: j}, nil
		}
	}
	return tp.addHidden("?sw_group", cloneNode(g), nil, false), nil
}

// aggregateRef finds the column of an aggregate in HAVING or ORDER BY:
// an equal select-list aggregate, or a hidden one it adds.
func (p *scatterPlanner) aggregateRef(tp *topPlan, fc *pg_query.FuncCall) outRef {
	node := &pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: fc}}
	for i, c := range tp.cols {
		if c.agg != nil && p.exprEqual(p.top, c.rt.Val, node) {
			return outRef{i: i}
		}
	}
	for j, h := range tp.hidden {
		if h.agg && strings.HasPrefix(h.name, "?sw_agg") && p.exprEqual(p.top, h.orig, node) {
			return outRef{hidden: true, i: j}
		}
	}
	_, name, _ := names(fc.Funcname)
	kind := combinable[name]
	val := cloneNode(node)
	ar := aggRef{kind: kind}
	if kind == gather.AggAvg {
		renameAggregate(val.GetFuncCall(), "sum")
	}
	ar.col = tp.addHidden("?sw_agg", val, node, true)
	if kind == gather.AggAvg {
		ar.count = tp.addHidden("?sw_count", countOf(fc), nil, true)
	}
	tp.aggs = append(tp.aggs, ar)
	return ar.col
}

// groupedRef finds an expression among the grouped columns.
func (p *scatterPlanner) groupedRef(tp *topPlan, n *pg_query.Node) (outRef, bool) {
	for _, g := range tp.group {
		e := tp.colExpr(g)
		if p.exprEqual(p.top, e, n) {
			return g, true
		}
	}
	return outRef{}, false
}

func (tp *topPlan) colExpr(r outRef) *pg_query.Node {
	if r.hidden {
		return tp.hidden[r.i].orig
	}
	return tp.cols[r.i].rt.Val
}

// aggSortRef resolves an ORDER BY item of an aggregate query.
func (p *scatterPlanner) aggSortRef(tp *topPlan, match *pg_query.Node) (outRef, error) {
	k, isPos, err := position(match)
	if err != nil {
		return outRef{}, err
	}
	if isPos {
		if k < 1 || k > len(tp.cols) {
			return outRef{}, pgError("42P10", fmt.Sprintf("ORDER BY position %d is not in select list", k))
		}
		return outRef{i: k - 1}, nil
	}
	if i, ok, err := p.byName(tp, match); err != nil {
		return outRef{}, err
	} else if ok {
		return outRef{i: i}, nil
	}
	for i, c := range tp.cols {
		if p.exprEqual(p.top, c.rt.Val, match) {
			return outRef{i: i}, nil
		}
	}
	if fc := match.GetFuncCall(); fc != nil {
		if isAggregateName(names3(fc.Funcname)) {
			return p.aggregateRef(tp, fc), nil
		}
	}
	if r, ok := p.groupedRef(tp, match); ok {
		return r, nil
	}
	return outRef{}, scatterError("ORDER BY expression of an aggregate query that is neither an output column, an aggregate nor a GROUP BY item")
}

var cmpOps = map[string]gather.CmpOp{"=": gather.OpEq, "<>": gather.OpNe, "<": gather.OpLt, "<=": gather.OpLe, ">": gather.OpGt, ">=": gather.OpGe}

// flipped is the operator with its operands swapped (5 < x is x > 5).
var flipped = map[gather.CmpOp]gather.CmpOp{gather.OpEq: gather.OpEq, gather.OpNe: gather.OpNe,
	gather.OpLt: gather.OpGt, gather.OpLe: gather.OpGe, gather.OpGt: gather.OpLt, gather.OpGe: gather.OpLe}

// havingCond plans one condition of HAVING: an aggregate or grouped
// column compared with a constant.
func (p *scatterPlanner) havingCond(tp *topPlan, n *pg_query.Node) error {
	refuse := scatterError("HAVING condition other than an aggregate or GROUP BY column compared with a constant")
	e := n.GetAExpr()
	if e == nil || e.Kind != pg_query.A_Expr_Kind_AEXPR_OP {
		return refuse
	}
	schema, opName, ok := names(e.Name)
	op, known := cmpOps[opName]
	if !ok || !known || (schema != "" && schema != "pg_catalog") {
		return refuse
	}
	operand, constant := e.Lexpr, e.Rexpr
	value, isConst := constText(constant)
	if !isConst {
		operand, constant = e.Rexpr, e.Lexpr
		if value, isConst = constText(constant); !isConst {
			return refuse
		}
		op = flipped[op]
	}
	var ref outRef
	if fc := operand.GetFuncCall(); fc != nil && isAggregateName(names3(fc.Funcname)) {
		ref = p.aggregateRef(tp, fc)
	} else if r, ok := p.groupedRef(tp, operand); ok {
		ref = r
	} else {
		return refuse
	}
	tp.having = append(tp.having, condRef{ref, op, value})
	return nil
}

func names3(list []*pg_query.Node) (string, string) {
	schema, name, _ := names(list)
	return schema, name
}

// constText is the text of a constant (possibly cast): a number, string
// or boolean; not NULL.
func constText(n *pg_query.Node) (string, bool) {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	c := n.GetAConst()
	if c == nil || c.Isnull {
		return "", false
	}
	switch v := c.Val.(type) {
	case *pg_query.A_Const_Ival:
		return strconv.FormatInt(int64(v.Ival.Ival), 10), true
	case *pg_query.A_Const_Fval:
		return v.Fval.Fval, true
	case *pg_query.A_Const_Sval:
		return v.Sval.Sval, true
	case *pg_query.A_Const_Boolval:
		return strconv.FormatBool(v.Boolval.Boolval), true
	}
	return "", false
}

// isConstant reports whether a select-list item is the same on every
// shard: a constant or bind parameter, possibly cast.
func isConstant(n *pg_query.Node) bool {
	for {
		switch x := n.Node.(type) {
		case *pg_query.Node_TypeCast:
			n = x.TypeCast.Arg
			continue
		case *pg_query.Node_AConst, *pg_query.Node_ParamRef:
			return true
		}
		return false
	}
}

func hasSublink(n *pg_query.Node) bool {
	if n == nil {
		return false
	}
	found := false
	walkMsg(n.ProtoReflect(), false, func(m protoreflect.Message) bool {
		if _, ok := m.Interface().(*pg_query.SubLink); ok {
			found = true
		}
		return !found
	})
	return found
}

// countOf is count(args) with fc's FILTER: the rows avg(args) averages.
func countOf(fc *pg_query.FuncCall) *pg_query.Node {
	c := &pg_query.FuncCall{Funcname: []*pg_query.Node{strNode("count")}, Funcformat: pg_query.CoercionForm_COERCE_EXPLICIT_CALL, Location: -1}
	for _, a := range fc.Args {
		c.Args = append(c.Args, cloneNode(a))
	}
	if fc.AggFilter != nil {
		c.AggFilter = cloneNode(fc.AggFilter)
	}
	return &pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: c}}
}

// renameAggregate changes the function an aggregate call calls, keeping
// a pg_catalog qualification.
func renameAggregate(fc *pg_query.FuncCall, name string) {
	fc.Funcname[len(fc.Funcname)-1] = strNode(name)
}

// limitVal is a LIMIT or OFFSET operand.
type limitVal struct {
	set, null bool
	n         int64
	param     int
	expr      *pg_query.Node
}

var intTypes = map[string]bool{"int2": true, "int4": true, "int8": true, "smallint": true, "integer": true, "int": true, "bigint": true}

func limitValue(n *pg_query.Node, what, negCode string) (limitVal, error) {
	if n == nil {
		return limitVal{}, nil
	}
	v := limitVal{set: true, expr: n}
	x := n
	if tc := x.GetTypeCast(); tc != nil {
		if _, t, _ := names(tc.TypeName.GetNames()); !intTypes[t] || len(tc.TypeName.GetArrayBounds()) > 0 {
			return v, scatterError(what + " with a cast to a type other than an integer")
		}
		x = tc.Arg
	}
	if pr := x.GetParamRef(); pr != nil {
		v.param = int(pr.Number)
		return v, nil
	}
	c := x.GetAConst()
	if c == nil {
		return v, scatterError(what + " other than a constant or a $n parameter")
	}
	var text string
	switch cv := c.Val.(type) {
	case nil:
		if !c.Isnull {
			return v, scatterError(what + " shardwire does not understand")
		}
		v.null = true
		return v, nil
	case *pg_query.A_Const_Ival:
		v.n = int64(cv.Ival.Ival)
	case *pg_query.A_Const_Fval:
		text = cv.Fval.Fval
	case *pg_query.A_Const_Sval:
		text = cv.Sval.Sval
	default:
		return v, scatterError(what + " that is not an integer")
	}
	if c.Isnull {
		v.null = true
		return v, nil
	}
	if text != "" {
		i, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if err != nil {
			return v, scatterError(what + " that is not an integer")
		}
		v.n = i
	}
	if v.n < 0 {
		return v, pgError(negCode, what+" must not be negative")
	}
	return v, nil
}

// operand is a LIMIT/OFFSET operand as an int8 expression for the shards.
func (v limitVal) operand() *pg_query.Node {
	if v.param > 0 {
		return int8Cast(cloneNode(v.expr))
	}
	return intConst(v.n)
}

// keepParam is NULLIF(x, x) for a LIMIT or OFFSET the shards must not
// apply: NULL (no limit, no offset), but the statement still uses the
// parameter, so the client's Bind still fits it.
func keepParam(v limitVal) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_AExpr{AExpr: &pg_query.A_Expr{Kind: pg_query.A_Expr_Kind_AEXPR_NULLIF,
		Name: []*pg_query.Node{strNode("=")}, Lexpr: v.operand(), Rexpr: v.operand(), Location: -1}}}
}

// limits plans LIMIT and OFFSET: the merge applies them; the shards get
// LIMIT limit+offset and no OFFSET, or neither when the merge combines
// groups.
func (p *scatterPlanner) limits(aggregating bool) error {
	s := p.stmt
	if s.LimitOption == pg_query.LimitOption_LIMIT_OPTION_WITH_TIES {
		return scatterError("FETCH FIRST … WITH TIES")
	}
	cnt, err := limitValue(s.LimitCount, "LIMIT", "2201W")
	if err != nil {
		return err
	}
	off, err := limitValue(s.LimitOffset, "OFFSET", "2201X")
	if err != nil {
		return err
	}
	if cnt.set && !cnt.null {
		if cnt.param > 0 {
			p.out.LimitParam = cnt.param
		} else {
			p.out.Limit = cnt.n
		}
	}
	if off.set && !off.null {
		if off.param > 0 {
			p.out.OffsetParam = off.param
		} else {
			p.out.Offset = off.n
		}
	}
	if aggregating {
		if !cnt.set && !off.set {
			return nil
		}
		p.changed = true
		s.LimitCount, s.LimitOffset, s.LimitOption = nil, nil, pg_query.LimitOption_LIMIT_OPTION_DEFAULT
		if cnt.param > 0 {
			s.LimitCount, s.LimitOption = keepParam(cnt), pg_query.LimitOption_LIMIT_OPTION_COUNT
		}
		if off.param > 0 {
			s.LimitOffset = keepParam(off)
		}
		return nil
	}
	if !off.set || off.null || (off.param == 0 && off.n == 0) {
		return nil // the shards' LIMIT is the client's
	}
	p.changed = true
	s.LimitOffset = nil
	switch {
	case !cnt.set || cnt.null:
		// No limit: every shard returns every row.
		if off.param > 0 {
			s.LimitOffset = keepParam(off)
		}
	case cnt.param == 0 && off.param == 0:
		sum := cnt.n + off.n
		if sum < cnt.n { // overflow: no shard has that many rows anyway
			sum = math.MaxInt64
		}
		s.LimitCount = intConst(sum)
	default:
		s.LimitCount = &pg_query.Node{Node: &pg_query.Node_AExpr{AExpr: &pg_query.A_Expr{Kind: pg_query.A_Expr_Kind_AEXPR_OP,
			Name: []*pg_query.Node{strNode("+")}, Lexpr: cnt.operand(), Rexpr: off.operand(), Location: -1}}}
	}
	if s.LimitOption == pg_query.LimitOption_LIMIT_OPTION_DEFAULT {
		s.LimitOption = pg_query.LimitOption_LIMIT_OPTION_COUNT
	}
	return nil
}

// finish appends the hidden columns and numbers every reference.
func (p *scatterPlanner) finish(tp *topPlan) {
	s := p.stmt
	nT, nH := len(tp.cols), len(tp.hidden)
	for _, h := range tp.hidden {
		s.TargetList = append(s.TargetList, pg_query.MakeResTargetNodeWithNameAndVal(h.name, h.val, -1))
	}
	if nH > 0 {
		p.changed = true
		p.out.Hidden = nH
		if !tp.star {
			p.out.Visible = nT
		}
	}
	col := func(r outRef) int {
		switch {
		case !tp.star && r.hidden:
			return nT + r.i
		case r.hidden:
			return -(nH - r.i)
		case tp.star && r.i > tp.firstStar:
			return -(nT - r.i + nH)
		}
		return r.i
	}
	for _, r := range tp.sort {
		p.out.Sort = append(p.out.Sort, gather.SortKey{Col: col(r.col), Desc: r.desc, NullsFirst: r.nullsFirst})
	}
	for _, r := range tp.group {
		p.out.Group = append(p.out.Group, col(r))
	}
	for _, a := range tp.aggs {
		g := gather.Agg{Col: col(a.col), Kind: a.kind}
		if a.kind == gather.AggAvg {
			g.CountCol = col(a.count)
		}
		p.out.Aggs = append(p.out.Aggs, g)
	}
	for _, h := range tp.having {
		p.out.Having = append(p.out.Having, gather.Cond{Col: col(h.col), Op: h.op, Value: h.value})
	}
}
