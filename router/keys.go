package router

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// This file finds, on a cache miss, where each statement fixes a column of
// a relation to constant values: the key references that Route evaluates
// against a shard map. The result depends only on the shape: values are
// recorded as "literal i" or "$n", never read.

// castKind is the type an explicit cast gives a value ('42'::bigint,
// DATE '2026-01-01', CAST($1 AS uuid)). Route accepts a cast only to the key's
// own type family, since a cast to another type may change the value
// ('2026-01-01 10:00'::date is midnight).
type castKind uint8

const (
	castNone castKind = iota
	castInt           // smallint, integer, bigint
	castText          // text, varchar
	castUUID
	castDate
	castTimestamp
	castTimestamptz
	castOther
)

var castNames = map[string]castKind{
	"int2": castInt, "int4": castInt, "int8": castInt, "smallint": castInt, "integer": castInt, "int": castInt, "bigint": castInt,
	"text": castText, "varchar": castText,
	"uuid": castUUID, "date": castDate,
	"timestamp": castTimestamp, "timestamptz": castTimestamptz,
}

// keyValue is one value a column is fixed to.
type keyValue struct {
	lit   int32    // index in the statement's literal list, or -1 for a parameter
	param int32    // $n (1-based) when lit < 0
	neg   bool     // a negated number literal (-5): its literal is the digits
	array bool     // an array whose elements are the values: = ANY('{1,2}'), = ANY($1)
	cast  castKind // explicit cast on the value (on the elements for arrays)
}

// condOp is the kind of a key condition node.
type condOp uint8

const (
	condValues condOp = iota // the column equals one of vals[lo:hi] (none: no row matches)
	condAnd                  // every child holds: the intersection of their shard sets
	condOr                   // some child holds: the union
)

// keyCond is a node of a key condition; lo:hi index vals (condValues) or
// kids (condAnd, condOr) of the keyInfo.
type keyCond struct {
	op     condOp
	lo, hi int32
}

// keyCol is a column of a relation occurrence and the condition that fixes it.
type keyCol struct {
	name string
	cond int32
}

// Values of keySet.val besides an index into vals.
const (
	setUnusable  = -1 // not a constant: the new value is unknown
	setUnchanged = -2 // SET k = k, or ON CONFLICT … SET k = EXCLUDED.k
)

// keySet is a column that UPDATE (or INSERT … ON CONFLICT DO UPDATE) assigns.
type keySet struct {
	name string
	val  int32
}

// keyRel is one occurrence of a relation in a statement.
type keyRel struct {
	table   string // canonical name, as shardmap.Map.Table takes it
	system  bool   // in pg_catalog, information_schema, pg_temp, or an unqualified pg_* name
	written bool   // inserted into, updated, deleted from, copied into, or changed by DDL
	insert  bool   // the target of INSERT: cols hold the per-row values
	cols    []keyCol
	sets    []keySet
	// shared indexes keyStmt.shared: the conditions of the unqualified
	// column names of the query level that names the relation, which hold
	// for each of its tables; -1 if none. cols take precedence.
	shared int32
}

// stmtKind says how a statement uses its tables, for messages.
type stmtKind uint8

const (
	kindSelect stmtKind = iota
	kindInsert
	kindUpdate
	kindDelete
	kindMerge
	kindCopy
	kindOther // DDL and utility statements
)

// keyStmt is the key analysis of one statement of a Query string.
type keyStmt struct {
	kind   stmtKind
	rels   []keyRel
	shared [][]keyCol
}

// keyInfo is the key analysis of a shape. It is immutable once built.
type keyInfo struct {
	stmts []keyStmt
	conds []keyCond
	kids  []int32
	vals  []keyValue
}

func (k *keyInfo) cost() int64 {
	if k == nil {
		return 0
	}
	n := int64(64 + 12*len(k.conds) + 4*len(k.kids) + 16*len(k.vals))
	for _, s := range k.stmts {
		n += 32
		for _, cols := range s.shared {
			for _, c := range cols {
				n += 24 + int64(len(c.name))
			}
		}
		for _, r := range s.rels {
			n += 96 + int64(len(r.table))
			for _, c := range r.cols {
				n += 24 + int64(len(c.name))
			}
			for _, c := range r.sets {
				n += 24 + int64(len(c.name))
			}
		}
	}
	return n
}

// String renders the analysis for tests and logs: one line per statement,
// "kind: rel{col=cond …}" with values as ?i (literal i), -?i, $n, and
// [array] and ::cast marks.
func (k *keyInfo) String() string {
	if k == nil {
		return "<none>"
	}
	var b strings.Builder
	for i, s := range k.stmts {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString([...]string{"select", "insert", "update", "delete", "merge", "copy", "other"}[s.kind])
		b.WriteByte(':')
		for _, r := range s.rels {
			b.WriteByte(' ')
			b.WriteString(r.table)
			if r.written {
				b.WriteByte('*')
			}
			if r.system {
				b.WriteString("(sys)")
			}
			cols := r.cols
			if r.shared >= 0 {
				cols = append(cols[:len(cols):len(cols)], s.shared[r.shared]...)
			}
			if len(cols) == 0 && len(r.sets) == 0 {
				continue
			}
			b.WriteByte('{')
			var seen []string
			for _, c := range cols {
				if slices.Contains(seen, c.name) {
					continue
				}
				if len(seen) > 0 {
					b.WriteByte(' ')
				}
				seen = append(seen, c.name)
				b.WriteString(c.name)
				b.WriteByte('=')
				k.writeCond(&b, c.cond)
			}
			for j, c := range r.sets {
				if j > 0 || len(seen) > 0 {
					b.WriteByte(' ')
				}
				b.WriteString("set ")
				b.WriteString(c.name)
				b.WriteByte('=')
				switch c.val {
				case setUnusable:
					b.WriteByte('?')
				case setUnchanged:
					b.WriteString("same")
				default:
					k.writeValue(&b, k.vals[c.val])
				}
			}
			b.WriteByte('}')
		}
	}
	return b.String()
}

func (k *keyInfo) writeCond(b *strings.Builder, i int32) {
	c := k.conds[i]
	switch c.op {
	case condValues:
		if c.hi-c.lo == 1 {
			k.writeValue(b, k.vals[c.lo])
			return
		}
		b.WriteByte('(')
		for j := c.lo; j < c.hi; j++ {
			if j > c.lo {
				b.WriteByte('|')
			}
			k.writeValue(b, k.vals[j])
		}
		b.WriteByte(')')
	case condAnd, condOr:
		sep := "&"
		if c.op == condOr {
			sep = "|"
		}
		b.WriteByte('(')
		for j := c.lo; j < c.hi; j++ {
			if j > c.lo {
				b.WriteString(sep)
			}
			k.writeCond(b, k.kids[j])
		}
		b.WriteByte(')')
	}
}

var castLabels = [...]string{"", "::int", "::text", "::uuid", "::date", "::timestamp", "::timestamptz", "::other"}

func (k *keyInfo) writeValue(b *strings.Builder, v keyValue) {
	if v.lit >= 0 {
		if v.neg {
			b.WriteByte('-')
		}
		b.WriteByte('?')
		b.WriteString(strconv.Itoa(int(v.lit)))
	} else {
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(int(v.param)))
	}
	if v.array {
		b.WriteString("[]")
	}
	b.WriteString(castLabels[v.cast])
}

// --- building -------------------------------------------------------------

// fop is the kind of a formula node: the boolean structure of a WHERE or
// ON clause as far as it can fix a column.
type fop uint8

const (
	fAnd fop = iota
	fOr
	fVal // a = one of vals
	fEq  // a = b, two columns
)

// fnode is a formula node. A nil *fnode is a predicate that fixes nothing.
type fnode struct {
	op   fop
	kids []*fnode
	a, b colRef
	vals []keyValue
}

// colRef is a column reference resolved to the scope and FROM item it
// names; item -1 is an unqualified name, resolved by Postgres only against
// the real columns, which we do not know.
type colRef struct {
	sc   *kscope
	item int
	name string
}

// fromItem is an entry of a FROM list: a table (rel >= 0) or anything else
// a column can be qualified with (subquery, function, CTE reference).
type fromItem struct {
	alias  string // what qualified references use: the alias, else the relation name
	schema string // the schema of an unaliased relation ("" otherwise)
	rel    int    // index into the statement's rels, or -1
}

// outerJoin is a LEFT or RIGHT join: its ON clause fixes columns only for
// rows of its nullable side.
type outerJoin struct {
	nullable []int // FROM item indices
	on       []*fnode
}

// kscope is one query level: its FROM items, its AND-context formula (WHERE
// and the ON clauses of inner joins) and its outer joins; or, with ctes set,
// the names a WITH clause introduces.
type kscope struct {
	parent *kscope
	ctes   []string
	items  []fromItem
	where  []*fnode
	outer  []outerJoin
	owner  []int     // rel indices whose columns this scope fixes
	prep   *prepared // built by prepare, once the scope is complete
}

// cnode is a key condition under construction.
type cnode struct {
	op   condOp
	kids []*cnode
	vals []keyValue
}

// keyWalker builds a keyInfo from parse trees.
type keyWalker struct {
	sql    string
	lits   []Literal
	info   keyInfo
	rels   []keyRel   // of the current statement
	shared [][]keyCol // of the current statement
	scopes []*kscope  // of the current statement, in creation order
	noExec int        // inside EXPLAIN without ANALYZE
	write  int        // inside a statement whose bare relation names are written (DDL)
	budget int        // work units left for resolution (fixBudget)

	// visiting and visitingCol mark the classes fix is working on, to stop
	// at cycles of equalities.
	visiting    map[rootKey]int
	visitingCol map[colRef]int
}

func newKeyWalker(sql string, lits []Literal) *keyWalker {
	return &keyWalker{sql: sql, lits: lits, budget: fixBudget, visiting: map[rootKey]int{}, visitingCol: map[colRef]int{}}
}

// statement analyses one top-level statement.
func (kw *keyWalker) statement(n *pg_query.Node) {
	kw.rels, kw.shared, kw.scopes = nil, nil, nil
	kind := kw.stmt(n, nil)
	kw.resolve()
	kw.info.stmts = append(kw.info.stmts, keyStmt{kind: kind, rels: kw.rels, shared: kw.shared})
}

func (kw *keyWalker) stmt(n *pg_query.Node, parent *kscope) stmtKind {
	if n == nil {
		return kindOther
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		kw.selectStmt(x.SelectStmt, parent)
		return kindSelect
	case *pg_query.Node_InsertStmt:
		kw.insertStmt(x.InsertStmt, parent)
		return kindInsert
	case *pg_query.Node_UpdateStmt:
		kw.updateStmt(x.UpdateStmt, parent)
		return kindUpdate
	case *pg_query.Node_DeleteStmt:
		kw.deleteStmt(x.DeleteStmt, parent)
		return kindDelete
	case *pg_query.Node_MergeStmt:
		kw.mergeStmt(x.MergeStmt, parent)
		return kindMerge
	case *pg_query.Node_ExplainStmt:
		if explainAnalyze(x.ExplainStmt) {
			return kw.stmt(x.ExplainStmt.Query, parent)
		}
		kw.noExec++
		k := kw.stmt(x.ExplainStmt.Query, parent)
		kw.noExec--
		return k
	case *pg_query.Node_CopyStmt:
		c := x.CopyStmt
		if c.Relation != nil {
			kw.addRel(c.Relation, c.IsFrom)
		}
		if c.Query != nil {
			kw.stmt(c.Query, parent)
		}
		return kindCopy
	case *pg_query.Node_DropStmt:
		kw.dropStmt(x.DropStmt)
		return kindOther
	}
	// DDL and utility statements: the relations they name are changed
	// (ALTER TABLE, TRUNCATE, LOCK, CREATE INDEX …); queries inside them
	// (CREATE TABLE AS, DECLARE) are analysed as queries.
	kw.write++
	kw.generic(n.ProtoReflect(), parent)
	kw.write--
	return kindOther
}

// dropStmt records the tables DROP TABLE/VIEW names (as name lists, not
// RangeVars).
func (kw *keyWalker) dropStmt(d *pg_query.DropStmt) {
	switch d.RemoveType {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW,
		pg_query.ObjectType_OBJECT_MATVIEW, pg_query.ObjectType_OBJECT_FOREIGN_TABLE:
	default:
		return
	}
	for _, o := range d.Objects {
		l := o.GetList()
		if l == nil {
			continue
		}
		schema, name, ok := names(l.Items)
		if ok {
			kw.addRelName(schema, name, true)
		}
	}
}

// generic visits a subtree the walker has no special knowledge of, finding
// the queries and relations inside.
func (kw *keyWalker) generic(m protoreflect.Message, sc *kscope) {
	if !m.IsValid() {
		return
	}
	switch x := m.Interface().(type) {
	case *pg_query.SelectStmt:
		kw.selectStmt(x, sc)
		return
	case *pg_query.InsertStmt:
		kw.insertStmt(x, sc)
		return
	case *pg_query.UpdateStmt:
		kw.updateStmt(x, sc)
		return
	case *pg_query.DeleteStmt:
		kw.deleteStmt(x, sc)
		return
	case *pg_query.MergeStmt:
		kw.mergeStmt(x, sc)
		return
	case *pg_query.RangeVar:
		if x.Schemaname != "" || !sc.isCTE(x.Relname) {
			kw.addRel(x, kw.write > 0)
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					kw.generic(l.Get(i).Message(), sc)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			kw.generic(v.Message(), sc)
		}
		return true
	})
}

func (kw *keyWalker) genericNode(n *pg_query.Node, sc *kscope) {
	if n != nil {
		kw.generic(n.ProtoReflect(), sc)
	}
}

func (kw *keyWalker) genericList(ns []*pg_query.Node, sc *kscope) {
	for _, n := range ns {
		kw.genericNode(n, sc)
	}
}

// addRel records an occurrence of a relation and returns its index.
func (kw *keyWalker) addRel(rv *pg_query.RangeVar, written bool) int {
	return kw.addRelName(rv.Schemaname, rv.Relname, written)
}

func (kw *keyWalker) addRelName(schema, name string, written bool) int {
	if kw.noExec > 0 {
		written = false
	}
	r := keyRel{table: canonicalName(schema, name), written: written, shared: -1}
	switch {
	case schema == "pg_catalog", schema == "information_schema", strings.HasPrefix(schema, "pg_temp"), schema == "pg_toast":
		r.system = true
	case schema == "" && strings.HasPrefix(name, "pg_"):
		r.system = true
	}
	kw.rels = append(kw.rels, r)
	return len(kw.rels) - 1
}

// canonicalName is the name shardmap.Map.Table takes: schema public is
// dropped, names are as the parser folded them.
func canonicalName(schema, name string) string {
	if schema == "" || schema == "public" {
		return name
	}
	return schema + "." + name
}

func (kw *keyWalker) newScope(parent *kscope) *kscope {
	sc := &kscope{parent: parent}
	kw.scopes = append(kw.scopes, sc)
	return sc
}

// isCTE reports whether an unqualified relation name refers to a CTE
// visible from sc.
func (sc *kscope) isCTE(name string) bool {
	for s := sc; s != nil; s = s.parent {
		for _, c := range s.ctes {
			if c == name {
				return true
			}
		}
	}
	return false
}

// with analyses a WITH clause and returns the scope its CTEs are visible
// in. Without RECURSIVE, a CTE sees only the CTEs before it.
func (kw *keyWalker) with(w *pg_query.WithClause, parent *kscope) *kscope {
	if w == nil {
		return parent
	}
	if w.Recursive {
		sc := &kscope{parent: parent}
		for _, c := range w.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				sc.ctes = append(sc.ctes, cte.Ctename)
			}
		}
		for _, c := range w.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				kw.stmt(cte.Ctequery, sc)
			}
		}
		return sc
	}
	sc := parent
	for _, c := range w.Ctes {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			continue
		}
		kw.stmt(cte.Ctequery, sc)
		sc = &kscope{parent: sc, ctes: []string{cte.Ctename}}
	}
	return sc
}

func (kw *keyWalker) selectStmt(sel *pg_query.SelectStmt, parent *kscope) {
	if sel == nil {
		return
	}
	outer := kw.with(sel.WithClause, parent)
	if sel.Op != pg_query.SetOperation_SETOP_NONE {
		kw.selectStmt(sel.Larg, outer)
		kw.selectStmt(sel.Rarg, outer)
		kw.genericList(sel.SortClause, outer)
		kw.genericNode(sel.LimitCount, outer)
		kw.genericNode(sel.LimitOffset, outer)
		return
	}
	sc := kw.newScope(outer)
	for _, f := range sel.FromClause {
		kw.fromItem(f, sc)
	}
	kw.where(sel.WhereClause, sc)
	for _, l := range sel.ValuesLists {
		kw.genericNode(l, sc)
	}
	kw.genericList(sel.TargetList, sc)
	kw.genericList(sel.DistinctClause, sc)
	kw.genericList(sel.GroupClause, sc)
	kw.genericNode(sel.HavingClause, sc)
	kw.genericList(sel.WindowClause, sc)
	kw.genericList(sel.SortClause, sc)
	kw.genericNode(sel.LimitCount, sc)
	kw.genericNode(sel.LimitOffset, sc)
	if sel.IntoClause != nil && sel.IntoClause.Rel != nil {
		kw.addRel(sel.IntoClause.Rel, true) // SELECT INTO creates the table
	}
}

// tableItem adds a relation named in a FROM clause (or as a DML target)
// to sc.
func (kw *keyWalker) tableItem(rv *pg_query.RangeVar, sc *kscope, written bool) int {
	it := fromItem{alias: rv.Relname, schema: rv.Schemaname, rel: -1}
	if rv.Alias != nil && rv.Alias.Aliasname != "" {
		it.alias, it.schema = rv.Alias.Aliasname, ""
	}
	if rv.Schemaname != "" || !sc.isCTE(rv.Relname) {
		it.rel = kw.addRel(rv, written)
		sc.owner = append(sc.owner, it.rel)
	}
	sc.items = append(sc.items, it)
	return len(sc.items) - 1
}

// fromItem adds a FROM list entry to sc and returns the indices of the
// items it added.
func (kw *keyWalker) fromItem(n *pg_query.Node, sc *kscope) []int {
	if n == nil {
		return nil
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_RangeVar:
		return []int{kw.tableItem(x.RangeVar, sc, false)}
	case *pg_query.Node_RangeSubselect:
		kw.genericNode(x.RangeSubselect.Subquery, sc)
		return []int{kw.otherItem(x.RangeSubselect.Alias, sc)}
	case *pg_query.Node_RangeFunction:
		kw.genericList(x.RangeFunction.Functions, sc)
		return []int{kw.otherItem(x.RangeFunction.Alias, sc)}
	case *pg_query.Node_RangeTableSample:
		ts := x.RangeTableSample
		kw.genericList(ts.Args, sc)
		kw.genericNode(ts.Repeatable, sc)
		if rv := ts.Relation.GetRangeVar(); rv != nil {
			return []int{kw.tableItem(rv, sc, false)}
		}
		return kw.fromItem(ts.Relation, sc)
	case *pg_query.Node_JoinExpr:
		return kw.join(x.JoinExpr, sc)
	}
	kw.genericNode(n, sc)
	return []int{kw.otherItem(nil, sc)}
}

func (kw *keyWalker) otherItem(a *pg_query.Alias, sc *kscope) int {
	it := fromItem{rel: -1}
	if a != nil {
		it.alias = a.Aliasname
	}
	sc.items = append(sc.items, it)
	return len(sc.items) - 1
}

func (kw *keyWalker) join(j *pg_query.JoinExpr, sc *kscope) []int {
	left := kw.fromItem(j.Larg, sc)
	right := kw.fromItem(j.Rarg, sc)
	var on []*fnode
	if j.Quals != nil {
		if f := kw.formula(j.Quals, sc); f != nil {
			on = append(on, f)
		}
		kw.genericNode(j.Quals, sc)
	}
	// USING (k): left.k = right.k. A side made of several items names the
	// merged column, which an unqualified reference also names.
	side := func(items []int, name string) colRef {
		if len(items) == 1 {
			return colRef{sc, items[0], name}
		}
		return colRef{sc, -1, name}
	}
	for _, u := range j.UsingClause {
		if s := u.GetString_(); s != nil {
			on = append(on, &fnode{op: fEq, a: side(left, s.Sval), b: side(right, s.Sval)})
		}
	}
	switch j.Jointype {
	case pg_query.JoinType_JOIN_INNER:
		sc.where = append(sc.where, on...)
	case pg_query.JoinType_JOIN_LEFT:
		sc.outer = append(sc.outer, outerJoin{nullable: right, on: on})
	case pg_query.JoinType_JOIN_RIGHT:
		sc.outer = append(sc.outer, outerJoin{nullable: left, on: on})
	}
	all := append(left[:len(left):len(left)], right...)
	if j.Alias != nil && j.Alias.Aliasname != "" {
		all = append(all, kw.otherItem(j.Alias, sc))
	}
	return all
}

func (kw *keyWalker) insertStmt(ins *pg_query.InsertStmt, parent *kscope) {
	if ins == nil || ins.Relation == nil {
		return
	}
	outer := kw.with(ins.WithClause, parent)
	sc := kw.newScope(outer)
	item := kw.tableItem(ins.Relation, sc, true)
	rel := sc.items[item].rel
	sc.owner = sc.owner[:0] // an INSERT's WHERE-less scope fixes nothing; cols come from VALUES
	if rel >= 0 {
		kw.rels[rel].insert = true
	}
	sel := ins.SelectStmt.GetSelectStmt()
	switch {
	case sel == nil:
		// DEFAULT VALUES: no key value.
	case len(sel.ValuesLists) > 0 && sel.Op == pg_query.SetOperation_SETOP_NONE && sel.WithClause == nil && len(ins.Cols) > 0:
		if rel >= 0 {
			kw.insertValues(rel, ins.Cols, sel.ValuesLists)
		}
		for _, l := range sel.ValuesLists {
			kw.genericNode(l, sc)
		}
	default:
		// INSERT … SELECT (or VALUES without a column list): the key's
		// position is unknown to us; the query is analysed as a query.
		kw.genericNode(ins.SelectStmt, outer)
	}
	if oc := ins.OnConflictClause; oc != nil {
		if oc.Action == pg_query.OnConflictAction_ONCONFLICT_UPDATE && rel >= 0 {
			kw.rels[rel].sets = kw.sets(oc.TargetList, sc, item, true)
		}
		kw.genericList(oc.TargetList, sc)
		kw.genericNode(oc.WhereClause, sc)
		if oc.Infer != nil {
			kw.genericNode(oc.Infer.WhereClause, sc)
		}
	}
	kw.genericList(ins.ReturningList, sc)
}

// insertValues records, per column of the list, the values of all rows if
// every row gives a constant or parameter there.
func (kw *keyWalker) insertValues(rel int, cols, rows []*pg_query.Node) {
	for i, c := range cols {
		rt := c.GetResTarget()
		if rt == nil || rt.Name == "" || len(rt.Indirection) > 0 {
			continue
		}
		vals := make([]keyValue, 0, len(rows))
		ok := true
		for _, row := range rows {
			l := row.GetList()
			if l == nil || i >= len(l.Items) {
				ok = false
				break
			}
			v, usable, null := kw.value(l.Items[i])
			if !usable || null || v.array {
				ok = false
				break
			}
			vals = append(vals, v)
		}
		if ok {
			kw.rels[rel].cols = append(kw.rels[rel].cols, keyCol{name: rt.Name, cond: kw.emit(&cnode{op: condValues, vals: vals})})
		}
	}
}

// sets records the columns a SET list assigns and their new values.
// excluded allows EXCLUDED.k for column k (ON CONFLICT DO UPDATE).
func (kw *keyWalker) sets(list []*pg_query.Node, sc *kscope, item int, excluded bool) []keySet {
	var out []keySet
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil || rt.Name == "" {
			continue
		}
		s := keySet{name: rt.Name, val: setUnusable}
		val := rt.Val
		if ma := val.GetMultiAssignRef(); ma != nil {
			val = nil
			if row := ma.Source.GetRowExpr(); row != nil && ma.Colno >= 1 && int(ma.Colno) <= len(row.Args) {
				val = row.Args[ma.Colno-1]
			}
		}
		if len(rt.Indirection) == 0 && val != nil {
			if v, usable, null := kw.value(val); usable && !null && !v.array {
				kw.info.vals = append(kw.info.vals, v)
				s.val = int32(len(kw.info.vals) - 1)
			} else if cr := val.GetColumnRef(); cr != nil {
				// k = k, or k = EXCLUDED.k: the key does not change.
				if c, ok := kw.column(cr, sc); ok && c.name == rt.Name && c.sc == sc && (c.item == -1 || c.item == item) {
					s.val = setUnchanged
				} else if excluded && len(cr.Fields) == 2 && fieldName(cr.Fields[0]) == "excluded" && fieldName(cr.Fields[1]) == rt.Name {
					s.val = setUnchanged
				}
			}
		}
		out = append(out, s)
	}
	return out
}

func fieldName(n *pg_query.Node) string {
	if s := n.GetString_(); s != nil {
		return s.Sval
	}
	return ""
}

func (kw *keyWalker) updateStmt(up *pg_query.UpdateStmt, parent *kscope) {
	if up == nil || up.Relation == nil {
		return
	}
	outer := kw.with(up.WithClause, parent)
	sc := kw.newScope(outer)
	item := kw.tableItem(up.Relation, sc, true)
	for _, f := range up.FromClause {
		kw.fromItem(f, sc)
	}
	kw.where(up.WhereClause, sc)
	if rel := sc.items[item].rel; rel >= 0 {
		kw.rels[rel].sets = kw.sets(up.TargetList, sc, item, false)
	}
	kw.genericList(up.TargetList, sc)
	kw.genericList(up.ReturningList, sc)
}

// where records a WHERE clause's key conditions in sc and walks it for
// the rest (subqueries, functions); nil is no clause.
func (kw *keyWalker) where(clause *pg_query.Node, sc *kscope) {
	if clause == nil {
		return
	}
	if f := kw.formula(clause, sc); f != nil {
		sc.where = append(sc.where, f)
	}
	kw.genericNode(clause, sc)
}

func (kw *keyWalker) deleteStmt(del *pg_query.DeleteStmt, parent *kscope) {
	if del == nil || del.Relation == nil {
		return
	}
	outer := kw.with(del.WithClause, parent)
	sc := kw.newScope(outer)
	kw.tableItem(del.Relation, sc, true)
	for _, f := range del.UsingClause {
		kw.fromItem(f, sc)
	}
	kw.where(del.WhereClause, sc)
	kw.genericList(del.ReturningList, sc)
}

// mergeStmt records MERGE's target without key values: its WHEN clauses
// may insert rows whose key comes from the source.
func (kw *keyWalker) mergeStmt(mg *pg_query.MergeStmt, parent *kscope) {
	if mg == nil || mg.Relation == nil {
		return
	}
	outer := kw.with(mg.WithClause, parent)
	sc := kw.newScope(outer)
	kw.tableItem(mg.Relation, sc, true)
	sc.owner = sc.owner[:0]
	src := kw.newScope(outer)
	kw.fromItem(mg.SourceRelation, src)
	src.owner = src.owner[:0]
	kw.genericNode(mg.JoinCondition, sc)
	kw.genericList(mg.MergeWhenClauses, sc)
	kw.genericList(mg.ReturningList, sc)
}

// --- formulas -------------------------------------------------------------

// formula turns a boolean expression into what it says about columns, or
// nil if it fixes nothing.
func (kw *keyWalker) formula(n *pg_query.Node, sc *kscope) *fnode {
	switch x := n.Node.(type) {
	case *pg_query.Node_BoolExpr:
		b := x.BoolExpr
		switch b.Boolop {
		case pg_query.BoolExprType_AND_EXPR:
			var kids []*fnode
			for _, a := range b.Args {
				if f := kw.formula(a, sc); f != nil {
					kids = append(kids, f)
				}
			}
			return mkAnd(kids)
		case pg_query.BoolExprType_OR_EXPR:
			kids := make([]*fnode, 0, len(b.Args))
			for _, a := range b.Args {
				f := kw.formula(a, sc)
				if f == nil {
					return nil // a branch that fixes nothing lets any value through
				}
				kids = append(kids, f)
			}
			return &fnode{op: fOr, kids: kids}
		}
		return nil // NOT fixes nothing
	case *pg_query.Node_AExpr:
		e := x.AExpr
		if !isEqOp(e.Name) {
			return nil
		}
		switch e.Kind {
		case pg_query.A_Expr_Kind_AEXPR_OP, pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT:
			return kw.equality(e.Lexpr, e.Rexpr, sc, e.Kind == pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT)
		case pg_query.A_Expr_Kind_AEXPR_IN:
			l := e.Rexpr.GetList()
			if l == nil {
				return nil
			}
			if cr := e.Lexpr.GetColumnRef(); cr != nil {
				c, ok := kw.column(cr, sc)
				if !ok {
					return nil
				}
				vals := make([]keyValue, 0, len(l.Items))
				for _, it := range l.Items {
					v, usable, null := kw.value(it)
					switch {
					case null:
						continue // k IN (1, NULL): NULL matches nothing
					case !usable || v.array:
						return nil
					}
					vals = append(vals, v)
				}
				return &fnode{op: fVal, a: c, vals: vals}
			}
			kids := make([]*fnode, 0, len(l.Items))
			for _, it := range l.Items {
				f := kw.equality(e.Lexpr, it, sc, false)
				if f == nil {
					return nil
				}
				kids = append(kids, f)
			}
			return &fnode{op: fOr, kids: kids}
		case pg_query.A_Expr_Kind_AEXPR_OP_ANY:
			cr := e.Lexpr.GetColumnRef()
			if cr == nil {
				return nil
			}
			c, ok := kw.column(cr, sc)
			if !ok {
				return nil
			}
			if arr := e.Rexpr.GetAArrayExpr(); arr != nil {
				vals := make([]keyValue, 0, len(arr.Elements))
				for _, it := range arr.Elements {
					v, usable, null := kw.value(it)
					switch {
					case null:
						continue
					case !usable || v.array:
						return nil
					}
					vals = append(vals, v)
				}
				return &fnode{op: fVal, a: c, vals: vals}
			}
			v, usable, null := kw.arrayValue(e.Rexpr)
			if !usable || null {
				return nil
			}
			return &fnode{op: fVal, a: c, vals: []keyValue{v}}
		}
	}
	return nil
}

// isEqOp reports whether an operator name is = (bare or OPERATOR(pg_catalog.=)).
func isEqOp(name []*pg_query.Node) bool {
	schema, op, ok := names(name)
	return ok && op == "=" && (schema == "" || schema == "pg_catalog")
}

// equality is l = r: a column and a value, two columns, or two rows of the
// same length compared element by element.
func (kw *keyWalker) equality(l, r *pg_query.Node, sc *kscope, notDistinct bool) *fnode {
	if l == nil || r == nil {
		return nil
	}
	lr, rr := l.GetRowExpr(), r.GetRowExpr()
	if lr != nil || rr != nil {
		if lr == nil || rr == nil || len(lr.Args) != len(rr.Args) {
			return nil
		}
		var kids []*fnode
		for i := range lr.Args {
			if f := kw.equality(lr.Args[i], rr.Args[i], sc, notDistinct); f != nil {
				kids = append(kids, f)
			}
		}
		return mkAnd(kids)
	}
	if cr := r.GetColumnRef(); cr != nil && l.GetColumnRef() == nil {
		l, r = r, l // 42 = k
	}
	cr := l.GetColumnRef()
	if cr == nil {
		return nil
	}
	c, ok := kw.column(cr, sc)
	if !ok {
		return nil
	}
	if cr2 := r.GetColumnRef(); cr2 != nil {
		c2, ok := kw.column(cr2, sc)
		if !ok {
			return nil
		}
		return &fnode{op: fEq, a: c, b: c2}
	}
	v, usable, null := kw.value(r)
	switch {
	case null && !notDistinct:
		return &fnode{op: fVal, a: c} // k = NULL matches no row
	case null, !usable, v.array:
		return nil
	}
	return &fnode{op: fVal, a: c, vals: []keyValue{v}}
}

func mkAnd(kids []*fnode) *fnode {
	switch len(kids) {
	case 0:
		return nil
	case 1:
		return kids[0]
	}
	return &fnode{op: fAnd, kids: kids}
}

// column resolves a column reference in sc: an unqualified name, or one
// qualified by an alias (or relation name) of sc or of an enclosing query.
func (kw *keyWalker) column(cr *pg_query.ColumnRef, sc *kscope) (colRef, bool) {
	parts := make([]string, 0, 3)
	for _, f := range cr.Fields {
		s := f.GetString_()
		if s == nil {
			return colRef{}, false // A_Star
		}
		parts = append(parts, s.Sval)
	}
	switch len(parts) {
	case 1:
		return colRef{sc, -1, parts[0]}, true
	case 2, 3:
		schema, rel, col := "", parts[0], parts[1]
		if len(parts) == 3 {
			schema, rel, col = parts[0], parts[1], parts[2]
		}
		for s := sc; s != nil; s = s.parent {
			for i := len(s.items) - 1; i >= 0; i-- {
				it := s.items[i]
				if it.alias != rel {
					continue
				}
				if schema != "" && it.schema != schema && !(schema == "public" && it.schema == "") {
					continue
				}
				return colRef{s, i, col}, true
			}
		}
	}
	return colRef{}, false
}

// value reads a constant: literal i (possibly negated), $n, either under
// one cast. null reports a NULL constant.
func (kw *keyWalker) value(n *pg_query.Node) (v keyValue, usable, null bool) {
	if n == nil {
		return v, false, false
	}
	if tc := n.GetTypeCast(); tc != nil {
		if tc.Arg == nil || tc.Arg.GetTypeCast() != nil {
			return v, false, false
		}
		v, usable, null = kw.value(tc.Arg)
		ck, array := castOf(tc.TypeName)
		v.cast, v.array = ck, array
		return v, usable, null
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_AConst:
		if x.AConst.Isnull {
			return v, false, true
		}
		i, neg, ok := kw.literalAt(x.AConst.Location)
		if !ok {
			return v, false, false
		}
		return keyValue{lit: int32(i), neg: neg}, true, false
	case *pg_query.Node_ParamRef:
		if x.ParamRef.Number < 1 {
			return v, false, false
		}
		return keyValue{lit: -1, param: x.ParamRef.Number}, true, false
	}
	return v, false, false
}

// arrayValue reads the array operand of = ANY(…): a string literal or $n,
// optionally cast to an array type.
func (kw *keyWalker) arrayValue(n *pg_query.Node) (v keyValue, usable, null bool) {
	v, usable, null = kw.value(n)
	if !usable || null {
		return v, false, null
	}
	if n.GetTypeCast() != nil && !v.array {
		return v, false, false // cast to a scalar type
	}
	if v.lit >= 0 && (v.neg || kw.lits[v.lit].Kind == LitNumber) {
		return v, false, false
	}
	v.array = true
	return v, true, false
}

// castOf classifies a cast's target type.
func castOf(tn *pg_query.TypeName) (castKind, bool) {
	if tn == nil || tn.Setof || tn.PctType {
		return castOther, false
	}
	schema, name, ok := names(tn.Names)
	if !ok || (schema != "" && schema != "pg_catalog") {
		return castOther, false
	}
	array := len(tn.ArrayBounds) > 0
	if name == "varchar" || name == "bpchar" {
		// varchar(n) and char(n) truncate or pad the value: only a plain
		// varchar is the text it casts.
		if name == "bpchar" || len(tn.Typmods) > 0 {
			return castOther, array
		}
	}
	if len(tn.Typmods) > 0 && (name == "timestamp" || name == "timestamptz") {
		return castOther, array // timestamp(0) rounds
	}
	if k, ok := castNames[name]; ok {
		return k, array
	}
	return castOther, array
}

// literalAt maps a parse-tree constant's location to the index of its
// literal. For a negated number the parser reports the minus sign, the
// lexer the digits.
func (kw *keyWalker) literalAt(loc int32) (int, bool, bool) {
	p := int(loc)
	i := sort.Search(len(kw.lits), func(i int) bool { return kw.lits[i].Start >= p })
	if i < len(kw.lits) && kw.lits[i].Start == p {
		return i, false, true
	}
	if p < 0 || p >= len(kw.sql) || kw.sql[p] != '-' || i >= len(kw.lits) || kw.lits[i].Kind != LitNumber {
		return 0, false, false
	}
	var lx Lexer
	lx.Reset(kw.sql[p:])
	t := lx.Next()
	if t.Kind != TokOp || t.End != 1 {
		return 0, false, false
	}
	for t = lx.Next(); t.Kind == TokComment; t = lx.Next() {
	}
	if t.Kind != TokNumber || p+t.Start != kw.lits[i].Start {
		return 0, false, false
	}
	return i, true, true
}

// --- resolution -----------------------------------------------------------

// Limits on the work of resolving one analysis. Resolution costs about the
// size of the formulas per class of equal columns, but a pathological
// statement (thousands of FROM items and unqualified names) must not make
// a cache miss slow: when the budget runs out, the remaining columns are
// left unfixed, so their tables are refused rather than misrouted.
const (
	maxFixDepth = 8       // equalities followed through outer joins and enclosing queries
	fixBudget   = 1 << 20 // work units per analysis
)

// prepared is what resolution derives once per scope: its top-level
// conjuncts and the classes of columns their equalities join.
type prepared struct {
	conj    []*fnode           // the AND-context conjuncts (WHERE, inner-join ON)
	ojConj  [][]*fnode         // the conjuncts of each outer join's ON
	id      map[colRef]int     // union-find node of each column in conj
	parent  []int              //
	members [][]colRef         // by root
	refs    map[colRef]bool    // every column any formula of the scope mentions
	names   map[int][]string   // per FROM item, the names its qualified references use
	unqual  []string           // the unqualified names used
	ojNames [][]string         // per outer join, the unqualified names its ON uses
	ojOf    map[int][]int      // per FROM item, the outer joins it is on the nullable side of
	atoms   map[int][]*fnode   // the value conjuncts of conj, by class
	complex []*fnode           // the other conjuncts of conj but equalities (ORs)
	memo    map[memoKey]*cnode // fix results of classes, by their roots
}

type memoKey struct {
	item   int
	r1, r2 int
	name   string // when a member is not in the union-find
}

func (p *prepared) find(i int) int {
	for p.parent[i] != i {
		p.parent[i] = p.parent[p.parent[i]]
		i = p.parent[i]
	}
	return i
}

// root returns the class of c, or -1 if no top-level equality or value
// mentions it.
func (p *prepared) root(c colRef) int {
	i, ok := p.id[c]
	if !ok {
		return -1
	}
	return p.find(i)
}

// prepare builds sc's prepared state once.
func (sc *kscope) prepare() *prepared {
	if sc.prep != nil {
		return sc.prep
	}
	p := &prepared{id: map[colRef]int{}, refs: map[colRef]bool{}, names: map[int][]string{}, memo: map[memoKey]*cnode{},
		atoms: map[int][]*fnode{}}
	sc.prep = p
	p.conj = conjuncts(sc.where)
	for _, oj := range sc.outer {
		p.ojConj = append(p.ojConj, conjuncts(oj.on))
	}
	node := func(c colRef) int {
		if i, ok := p.id[c]; ok {
			return i
		}
		p.id[c] = len(p.parent)
		p.parent = append(p.parent, len(p.parent))
		return len(p.parent) - 1
	}
	for _, f := range p.conj {
		switch f.op {
		case fVal:
			node(f.a)
		case fEq:
			a, b := p.find(node(f.a)), p.find(node(f.b))
			if a != b {
				p.parent[a] = b
			}
		}
	}
	p.members = make([][]colRef, len(p.parent))
	for c, i := range p.id {
		r := p.find(i)
		p.members[r] = append(p.members[r], c)
	}
	for _, f := range p.conj {
		switch f.op {
		case fVal:
			r := p.root(f.a)
			p.atoms[r] = append(p.atoms[r], f)
		case fEq:
		default:
			p.complex = append(p.complex, f)
		}
	}
	seen := map[colRef]bool{}
	var visit func(f *fnode)
	var onNames *[]string // collecting an outer join's unqualified names
	mention := func(c colRef) {
		p.refs[c] = true
		if c.sc != sc {
			return
		}
		if onNames != nil && c.item < 0 && !slices.Contains(*onNames, c.name) {
			*onNames = append(*onNames, c.name)
		}
		if seen[c] {
			return
		}
		seen[c] = true
		if c.item < 0 {
			p.unqual = append(p.unqual, c.name)
		} else {
			p.names[c.item] = append(p.names[c.item], c.name)
		}
	}
	visit = func(f *fnode) {
		switch f.op {
		case fVal:
			mention(f.a)
		case fEq:
			mention(f.a)
			mention(f.b)
		default:
			for _, k := range f.kids {
				visit(k)
			}
		}
	}
	for _, f := range sc.where {
		visit(f)
	}
	p.ojNames = make([][]string, len(sc.outer))
	p.ojOf = map[int][]int{}
	for i, oj := range sc.outer {
		for _, item := range oj.nullable {
			p.ojOf[item] = append(p.ojOf[item], i)
		}
		onNames = &p.ojNames[i]
		for _, f := range oj.on {
			visit(f)
		}
	}
	return p
}

// nullable reports whether FROM item is on the nullable side of an outer
// join of sc.
func (sc *kscope) nullable(item int) bool { return len(sc.prepare().ojOf[item]) > 0 }

// class is a set of columns known equal in the rows that matter: the
// union-find classes roots of its scope, and extra columns outside them.
// A qualified member k of the scope brings in the unqualified name k: if
// the member is a real column of its item, an unqualified reference to
// that name in the same scope is that column, a USING column equal to it,
// or an error.
type class struct {
	sc    *kscope
	p     *prepared
	roots map[int]bool
	order []int // roots in the order added
	extra []colRef
}

func newClass(sc *kscope) *class {
	return &class{sc: sc, p: sc.prepare(), roots: map[int]bool{}}
}

func (c *class) copy() *class {
	d := &class{sc: c.sc, p: c.p, roots: make(map[int]bool, len(c.roots)), order: append([]int(nil), c.order...),
		extra: append([]colRef(nil), c.extra...)}
	for r := range c.roots {
		d.roots[r] = true
	}
	return d
}

// add puts x and the unqualified names of its qualified members into c.
func (kw *keyWalker) add(c *class, x colRef) {
	work := []colRef{x}
	for len(work) > 0 && kw.budget > 0 {
		x := work[len(work)-1]
		work = work[:len(work)-1]
		kw.budget--
		alias := func(m colRef) {
			if m.item >= 0 && m.sc == c.sc {
				work = append(work, colRef{m.sc, -1, m.name})
			}
		}
		if r := c.p.root(x); r >= 0 {
			if c.roots[r] {
				continue
			}
			c.roots[r] = true
			c.order = append(c.order, r)
			kw.budget -= len(c.p.members[r])
			for _, m := range c.p.members[r] {
				alias(m)
			}
			continue
		}
		if !kw.hasExtra(c, x) {
			c.extra = append(c.extra, x)
			alias(x)
		}
	}
}

func (kw *keyWalker) hasExtra(c *class, x colRef) bool {
	kw.budget -= len(c.extra)
	for _, e := range c.extra {
		if e == x {
			return true
		}
	}
	return false
}

// has reports whether x is in c.
func (kw *keyWalker) has(c *class, x colRef) bool {
	kw.budget--
	if kw.budget <= 0 {
		return false
	}
	if r := c.p.root(x); r >= 0 {
		return c.roots[r]
	}
	return kw.hasExtra(c, x)
}

// each calls fn for every member of c until fn returns false.
func (kw *keyWalker) each(c *class, fn func(colRef) bool) {
	for _, r := range c.order {
		kw.budget -= len(c.p.members[r])
		for _, m := range c.p.members[r] {
			if !fn(m) {
				return
			}
		}
	}
	for _, m := range c.extra {
		if !fn(m) {
			return
		}
	}
}

// closeOver adds to c the columns the equalities among fs make equal to
// it and returns those it added through an equality.
func (kw *keyWalker) closeOver(c *class, fs []*fnode) []colRef {
	var added []colRef
	for changed := true; changed && kw.budget > 0; {
		changed = false
		for _, e := range fs {
			if e.op != fEq {
				continue
			}
			ina, inb := kw.has(c, e.a), kw.has(c, e.b)
			switch {
			case ina && !inb:
				kw.add(c, e.b)
				added = append(added, e.b)
				changed = true
			case inb && !ina:
				kw.add(c, e.a)
				added = append(added, e.a)
				changed = true
			}
		}
	}
	return added
}

// resolve computes, for every table occurrence of the statement, the
// conditions its columns are fixed by: those of the names it is qualified
// with (and, on the nullable side of an outer join, the unqualified names
// of its ON clause) per table, and those of the other unqualified names
// once per query level, shared by its tables. An unqualified name in a
// query level that names table T is T's column, if T has such a column.
func (kw *keyWalker) resolve() {
	for _, sc := range kw.scopes {
		if len(sc.owner) == 0 {
			continue
		}
		p := sc.prepare()
		emitted := map[*cnode]int32{}
		col := func(item int, name string) (keyCol, bool) {
			kw.budget--
			c := kw.fixTarget(sc, item, name)
			if c == nil {
				return keyCol{}, false
			}
			ci, ok := emitted[c]
			if !ok {
				ci = kw.emit(c)
				emitted[c] = ci
			}
			return keyCol{name: name, cond: ci}, true
		}
		shared := int32(-1)
		var cols []keyCol
		for _, name := range p.unqual {
			if kw.budget <= 0 {
				break
			}
			if c, ok := col(-1, name); ok {
				cols = append(cols, c)
			}
		}
		if len(cols) > 0 {
			kw.shared = append(kw.shared, cols)
			shared = int32(len(kw.shared) - 1)
		}
		for _, rel := range sc.owner {
			item := slices.IndexFunc(sc.items, func(it fromItem) bool { return it.rel == rel })
			if item < 0 {
				continue
			}
			kw.rels[rel].shared = shared
			names := p.names[item]
			for _, i := range p.ojOf[item] {
				names = append(names[:len(names):len(names)], p.ojNames[i]...)
			}
			var done []string
			for _, name := range names {
				if kw.budget <= 0 || slices.Contains(done, name) {
					continue
				}
				done = append(done, name)
				if c, ok := col(item, name); ok {
					kw.rels[rel].cols = append(kw.rels[rel].cols, c)
				}
			}
		}
	}
}

// fixTarget is fix for column name of FROM item item (-1: the unqualified
// name alone), memoised by the classes the column and its unqualified name
// belong to. The item matters only if the column is in no class (it
// appears in no top-level equality or value) and the item is on the
// nullable side of an outer join; the name only if the column or name
// appears in no class but elsewhere in the formulas.
func (kw *keyWalker) fixTarget(sc *kscope, item int, name string) *cnode {
	p := sc.prepare()
	alias := colRef{sc, -1, name}
	t := []colRef{alias}
	key := memoKey{item: -1, r1: -1, r2: p.root(alias)}
	if item >= 0 {
		target := colRef{sc, item, name}
		t = append(t, target)
		key.r1 = p.root(target)
		if key.r1 < 0 && sc.nullable(item) {
			key.item = item
		}
		if key.r1 < 0 && p.refs[target] {
			key.name = name
		}
	}
	if key.r2 < 0 && p.refs[alias] {
		key.name = name
	}
	if c, ok := p.memo[key]; ok {
		return c
	}
	c := kw.fix(sc, t, 0)
	p.memo[key] = c
	return c
}

// conjuncts flattens the top-level ANDs of a formula list.
func conjuncts(fs []*fnode) []*fnode {
	var out []*fnode
	for _, f := range fs {
		if f.op == fAnd {
			out = append(out, conjuncts(f.kids)...)
		} else {
			out = append(out, f)
		}
	}
	return out
}

// fix returns the condition that holds for the columns equal to t in every
// row of sc that the statement reads or changes, or nil.
func (kw *keyWalker) fix(sc *kscope, t []colRef, depth int) *cnode {
	if depth > maxFixDepth || kw.budget <= 0 {
		return nil
	}
	c := newClass(sc)
	for _, x := range t {
		kw.add(c, x)
	}
	// Mark the class as being fixed, to cut cycles of equalities.
	for _, r := range c.order {
		kw.visiting[rootKey{sc, r}]++
	}
	for _, x := range c.extra {
		kw.visitingCol[x]++
	}
	defer func() {
		for _, r := range c.order {
			kw.visiting[rootKey{sc, r}]--
		}
		for _, x := range c.extra {
			kw.visitingCol[x]--
		}
	}()
	var parts []*cnode
	if x := kw.impliedTop(c); x != nil {
		parts = append(parts, x)
	}
	// An outer join's ON clause holds for the rows of its nullable side
	// that are joined; columns it equates with the other side get their
	// conditions.
	for _, i := range kw.outerJoinsOf(c) {
		on := c.p.ojConj[i]
		cj := c.copy()
		added := kw.closeOver(cj, on)
		if x := kw.implied(on, cj); x != nil {
			parts = append(parts, x)
		}
		for _, y := range added {
			if x := kw.fixFrom(y, depth); x != nil {
				parts = append(parts, x)
			}
		}
	}
	// Correlated references: k = outer.col gives k outer.col's condition.
	var outer []colRef
	kw.each(c, func(m colRef) bool {
		if m.sc != sc {
			outer = append(outer, m)
		}
		return kw.budget > 0
	})
	for _, m := range outer {
		if x := kw.fixFrom(m, depth); x != nil {
			parts = append(parts, x)
		}
	}
	return cAnd(parts)
}

// rootKey names a class of a scope, for cycle detection.
type rootKey struct {
	sc   *kscope
	root int
}

// fixFrom is fix of the single column x, unless its class is already being
// fixed further up (a cycle of equalities).
func (kw *keyWalker) fixFrom(x colRef, depth int) *cnode {
	p := x.sc.prepare()
	if r := p.root(x); r >= 0 {
		if kw.visiting[rootKey{x.sc, r}] > 0 {
			return nil
		}
	} else if kw.visitingCol[x] > 0 {
		return nil
	}
	return kw.fix(x.sc, []colRef{x}, depth+1)
}

// outerJoinsOf lists, in order, the outer joins of c's scope on whose
// nullable side a member of c is.
func (kw *keyWalker) outerJoinsOf(c *class) []int {
	var ojs []int
	kw.each(c, func(m colRef) bool {
		if m.sc == c.sc && m.item >= 0 {
			for _, i := range c.p.ojOf[m.item] {
				if !slices.Contains(ojs, i) {
					ojs = append(ojs, i)
				}
			}
		}
		return kw.budget > 0
	})
	slices.Sort(ojs)
	return ojs
}

// impliedTop is what the scope's AND-context says about the columns of c:
// the value conjuncts of its classes, and the ORs.
func (kw *keyWalker) impliedTop(c *class) *cnode {
	var parts []*cnode
	for _, r := range c.order {
		kw.budget -= len(c.p.atoms[r])
		for _, f := range c.p.atoms[r] {
			parts = append(parts, &cnode{op: condValues, vals: f.vals})
		}
	}
	for _, f := range c.p.complex {
		if x := kw.impliedBy(f, c); x != nil {
			parts = append(parts, x)
		}
	}
	return cAnd(parts)
}

// implied is what the conjunction fs says about the columns of c.
func (kw *keyWalker) implied(fs []*fnode, c *class) *cnode {
	var parts []*cnode
	for _, f := range fs {
		if x := kw.impliedBy(f, c); x != nil {
			parts = append(parts, x)
		}
	}
	return cAnd(parts)
}

func (kw *keyWalker) impliedBy(f *fnode, c *class) *cnode {
	kw.budget--
	if kw.budget <= 0 {
		return nil
	}
	switch f.op {
	case fVal:
		if kw.has(c, f.a) {
			return &cnode{op: condValues, vals: f.vals}
		}
	case fAnd:
		local := c.copy()
		kw.closeOver(local, f.kids)
		return kw.implied(f.kids, local)
	case fOr:
		kids := make([]*cnode, 0, len(f.kids))
		for _, k := range f.kids {
			x := kw.impliedBy(k, c)
			if x == nil {
				return nil
			}
			kids = append(kids, x)
		}
		return cOr(kids)
	}
	return nil
}

func cAnd(parts []*cnode) *cnode {
	switch len(parts) {
	case 0:
		return nil
	case 1:
		return parts[0]
	}
	return &cnode{op: condAnd, kids: parts}
}

// cOr merges alternatives that are all plain value lists into one list.
func cOr(kids []*cnode) *cnode {
	if len(kids) == 1 {
		return kids[0]
	}
	n := 0
	for _, k := range kids {
		if k.op != condValues {
			return &cnode{op: condOr, kids: kids}
		}
		n += len(k.vals)
	}
	vals := make([]keyValue, 0, n)
	for _, k := range kids {
		vals = append(vals, k.vals...)
	}
	return &cnode{op: condValues, vals: vals}
}

// emit flattens a condition into the keyInfo and returns its index.
func (kw *keyWalker) emit(c *cnode) int32 {
	k := &kw.info
	switch c.op {
	case condValues:
		lo := int32(len(k.vals))
		k.vals = append(k.vals, c.vals...)
		k.conds = append(k.conds, keyCond{op: condValues, lo: lo, hi: int32(len(k.vals))})
	default:
		ids := make([]int32, len(c.kids))
		for i, kid := range c.kids {
			ids[i] = kw.emit(kid)
		}
		lo := int32(len(k.kids))
		k.kids = append(k.kids, ids...)
		k.conds = append(k.conds, keyCond{op: c.op, lo: lo, hi: int32(len(k.kids))})
	}
	return int32(len(k.conds) - 1)
}
