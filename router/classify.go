package router

import (
	"fmt"
	"hash/maphash"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Class is a statement's routing class.
type Class uint8

// Classes. Anything not known to be a read must go to a primary:
// ClassUnknown (the zero value) is treated exactly like ClassWrite.
const (
	ClassUnknown Class = iota // could not be analysed (parse error, empty)
	ClassRead                 // cannot write: a replica may run it
	ClassWrite                // may write, lock or change server state
)

func (c Class) String() string {
	switch c {
	case ClassRead:
		return "read"
	case ClassWrite:
		return "write"
	}
	return "unknown"
}

// IsRead reports whether a replica may run the statement.
func (c Class) IsRead() bool { return c == ClassRead }

// Table is a relation a statement names.
type Table struct {
	Schema  string // "" when not qualified
	Name    string
	Written bool // the target of INSERT, UPDATE, DELETE, MERGE or COPY FROM
}

// String returns schema.name or name.
func (t Table) String() string {
	if t.Schema == "" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

// Analysis is what the parser learned about a statement shape. It is
// immutable and shared by every statement with that shape: callers must not
// modify it or its slices.
type Analysis struct {
	Shape      string
	Class      Class
	Reason     string // why the statement is not a read ("" for reads)
	Statements int    // statements in the Query string
	// Tables are the relations named, schema-qualified as written, each once,
	// in order of appearance; CTE names are left out.
	Tables []Table
	// Functions are the functions called, qualified as written, each once.
	Functions []string
	Err       error // the parse error for ClassUnknown

	// keys are where each statement fixes columns to values, for Route;
	// nil when the statement was not parsed.
	keys *keyInfo
	// litKinds are the kinds of the literals keys was built from: the
	// parse tree, and so keys, depend on them (-5 is a constant, - '5' an
	// expression; B'0' a bit string), while the shape does not keep them.
	litKinds []LiteralKind
	// literals is the number of literals (placeholders) in Shape.
	literals int
	// unroutable is why Route cannot decide for a statement that was not
	// parsed although it may be valid SQL ("" if parsed, or not SQL).
	unroutable string
	tooLong    bool // not parsed because of the text's length
}

// cost estimates the bytes an Analysis holds in the cache.
func (a *Analysis) cost() int64 {
	n := int64(entryOverhead + len(a.Shape) + len(a.Reason) + len(a.litKinds))
	for _, t := range a.Tables {
		n += int64(len(t.Schema)+len(t.Name)) + 40
	}
	for _, f := range a.Functions {
		n += int64(len(f)) + 16
	}
	return n + a.keys.cost()
}

// DefaultCacheBytes is the shape cache budget when Config.CacheBytes is 0.
const DefaultCacheBytes = 16 << 20

// Config configures an Analyzer.
type Config struct {
	// ReadOnlyFunctions extends the built-in list of functions a read may
	// call (routing.read_only_functions). "name" allows the function in any
	// schema; "schema.name" allows only calls qualified with that schema.
	ReadOnlyFunctions []string
	// CacheBytes bounds the shape cache (estimated bytes); 0 means
	// DefaultCacheBytes.
	CacheBytes int64
}

// Analyzer classifies statements for read/write routing, caching the
// analysis of each statement shape. It is safe for concurrent use. Its
// configuration is fixed: on a reload, build a new Analyzer (its cache
// starts empty).
type Analyzer struct {
	funcs  functionSet
	cache  *shapeCache
	seed   maphash.Seed
	misses atomic.Uint64

	// maps caches what Route derives from the last two shard maps.
	maps    [2]atomic.Pointer[mapIndex]
	mapTurn atomic.Uint32
}

// NewAnalyzer returns an Analyzer for cfg.
func NewAnalyzer(cfg Config) *Analyzer {
	budget := cfg.CacheBytes
	if budget <= 0 {
		budget = DefaultCacheBytes
	}
	return &Analyzer{
		funcs: newFunctionSet(cfg.ReadOnlyFunctions),
		cache: newShapeCache(budget),
		seed:  maphash.MakeSeed(),
	}
}

// Scratch holds the buffers ClassifyWith normalises into. A session can
// keep one and reuse it for every statement; it is not safe for concurrent
// use.
type Scratch struct {
	shape []byte
	lits  []Literal
}

// Literals returns the literals of the statement last classified with s, in
// order; they index into that statement's text. The slice is reused by the
// next call.
func (s *Scratch) Literals() []Literal { return s.lits }

// Shape returns the shape of the statement last classified with s; the
// bytes are reused by the next call.
func (s *Scratch) Shape() []byte { return s.shape }

var scratchPool = sync.Pool{New: func() any { return new(Scratch) }}

// maxPooledScratch keeps a huge statement's buffers out of the pool.
const maxPooledScratch = 64 << 10

// Classify returns the analysis of sql (one or more statements), from the
// cache when its shape was seen before. A Query string is a read only if
// every statement in it is.
func (a *Analyzer) Classify(sql string) *Analysis {
	s := scratchPool.Get().(*Scratch)
	an := a.ClassifyWith(s, sql)
	if cap(s.shape) <= maxPooledScratch && cap(s.lits) <= maxPooledScratch/24 {
		scratchPool.Put(s)
	}
	return an
}

// ClassifyWith is Classify using caller-owned buffers, which then also
// hold the statement's shape and literals.
func (a *Analyzer) ClassifyWith(s *Scratch, sql string) *Analysis {
	var odd bool
	s.shape, s.lits, odd = appendNormalize(s.shape[:0], s.lits[:0], sql)
	if odd {
		// Not SQL (an unterminated literal, identifier or comment, or a raw
		// $?), and its shape may equal a valid statement's: answer without
		// the cache or the parser (PostgreSQL's scanner is slow on some
		// unterminated input, e.g. a long run of "/*").
		a.misses.Add(1)
		return &Analysis{Shape: string(s.shape), Class: ClassUnknown,
			Reason: "not valid SQL: unterminated literal, identifier or comment, or a stray $?"}
	}
	h := maphash.Bytes(a.seed, s.shape)
	if an := a.cache.get(h, s.shape); an != nil {
		if an.keys == nil || (sameKinds(an.litKinds, s.lits) && !refusedText(sql, s.lits)) {
			return an
		}
		// Same shape, other literal kinds, or a text PostgreSQL refuses:
		// analyse this text on its own (uncached, the resident entry
		// stays).
		a.misses.Add(1)
		return a.analyze(string(s.shape), sql, s.lits)
	}
	a.misses.Add(1)
	an := a.analyze(string(s.shape), sql, s.lits)
	if !cacheable(an, len(s.lits)) {
		return an
	}
	return a.cache.add(h, an)
}

// refusedText reports a text PostgreSQL refuses however its shape parses:
// invalid UTF-8, or an escape that makes a NUL byte or invalid UTF-8
// (E'\00', E'\xff', U&'\0000'). Such a text must not borrow the cached
// analysis of a valid statement of its shape: routed by key it would go to
// one shard, analysed on its own to the default one (both refuse it).
func refusedText(sql string, lits []Literal) bool {
	if !utf8.ValidString(sql) {
		return true
	}
	for _, l := range lits {
		if l.Kind != LitEscape && l.Kind != LitUnicode {
			continue
		}
		v, err := l.Value(sql)
		if err != nil || strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
			return true
		}
	}
	return false
}

// sameKinds reports whether lits have the kinds an analysis was built from.
func sameKinds(kinds []LiteralKind, lits []Literal) bool {
	if len(kinds) != len(lits) {
		return false
	}
	for i, l := range lits {
		if kinds[i] != l.Kind {
			return false
		}
	}
	return true
}

// cacheable reports whether an holds for every statement of its shape.
// Statements of one shape differ only in their literals, but the kind of a
// literal can decide whether the text parses (DATE '2026-01-01' and DATE 5
// share a shape), and so can the length of the literals (the parse size
// limit). Caching such a failure would make valid statements of the shape
// unroutable, or route them to the default shard.
func cacheable(an *Analysis, literals int) bool {
	switch {
	case an.keys != nil:
		return true
	case an.tooLong:
		return false // comments and literals make the text long, not the shape
	}
	return an.Err == nil || literals == 0
}

// Stats returns the cache's counters. Hits are not counted (a shared
// counter on the hot path would make every session contend for it); the
// caller knows how many lookups it made.
func (a *Analyzer) Stats() CacheStats {
	st := a.cache.stats()
	st.Misses = a.misses.Load()
	return st
}

// analyze runs the PostgreSQL parser on sql. It is called on a cache
// miss; the result is stored under shape, so it must not depend on the
// values of sql's literals, only on what the shape keeps.
func (a *Analyzer) analyze(shape, sql string, lits []Literal) (an *Analysis) {
	an = &Analysis{Shape: shape, literals: len(lits)}
	defer func() {
		if r := recover(); r != nil { // defensive: never let one statement take a session down
			reason := fmt.Sprintf("analysis failed: %v", r)
			an = &Analysis{Shape: shape, Class: ClassUnknown, Reason: reason, literals: len(lits), unroutable: reason}
		}
	}()
	if len(sql) > maxParseBytes {
		an.Class = ClassUnknown
		an.Reason = fmt.Sprintf("statement of %d bytes is too long to analyse (limit %d)", len(sql), maxParseBytes)
		an.unroutable, an.tooLong = an.Reason, true
		return an
	}
	if risk, chain := nestingRisk(shape); risk > maxNestingRisk || chain > maxDottedChain {
		an.Class = ClassUnknown
		an.Reason = fmt.Sprintf("statement too complex to analyse safely: %d operators, joins and set operations (limit %d), names of %d dotted parts (limit %d)",
			risk, maxNestingRisk, chain, maxDottedChain)
		an.unroutable = an.Reason
		return an
	}
	res, err := pg_query.Parse(sql)
	if err != nil {
		an.Class = ClassUnknown
		an.Err = fmt.Errorf("parse: %w", err)
		an.Reason = "cannot parse: " + err.Error()
		return an
	}
	if len(res.Stmts) == 0 {
		an.Class = ClassUnknown
		an.Reason = "no statement"
		return an
	}
	w := walker{funcs: &a.funcs}
	kw := newKeyWalker(sql, lits)
	for _, raw := range res.Stmts {
		w.statement(raw.Stmt)
		kw.statement(raw.Stmt)
	}
	an.keys = &kw.info
	an.litKinds = make([]LiteralKind, len(lits))
	for i, l := range lits {
		an.litKinds[i] = l.Kind
	}
	an.Statements = len(res.Stmts)
	an.Tables = w.result()
	an.Functions = w.functions
	if w.reason != "" {
		an.Class = ClassWrite
		an.Reason = w.reason
	} else {
		an.Class = ClassRead
	}
	return an
}

// Limits on what is handed to the parser. pg_query's C code turns the
// parse tree into protobuf recursively, without PostgreSQL's stack depth
// check: a left-deep chain of about 23,000 binary operators (1 + 1 + …),
// casts, joins or UNIONs overflows an 8 MiB thread stack and kills the
// process (measured with v6.2.5), and a thread with a 2 MiB stack would
// fail near 6,000. Right-nested forms (parentheses, function calls, CASE,
// unary operators) stop at the grammar's own stack limit with an error.
// nestingRisk counts the tokens that can deepen a tree without nesting
// brackets, which bounds that depth; above maxNestingRisk the statement is
// not parsed and is routed as a write. Protobuf decoding in Go refuses
// trees deeper than 10,000 anyway. The grammar also joins a dotted setting
// name (SET a.b.c…) by copying it once per part, quadratic in the number
// of parts, hence maxDottedChain; and parse time grows with length (about
// 2 µs per select-list item), hence maxParseBytes.
const (
	maxNestingRisk = 3000
	maxDottedChain = 64
	maxParseBytes  = 256 << 10
)

// nestingRisk counts operators, casts and the keywords of left-associative
// binary constructs in a shape, and finds its longest run of dots.
func nestingRisk(shape string) (risk, longestChain int) {
	var lx Lexer
	lx.Reset(shape)
	chain, afterDot := 0, false
	for t := lx.Next(); t.Kind != TokEOF; t = lx.Next() {
		dot := t.Kind == TokPunct && t.End-t.Start == 1 && shape[t.Start] == '.'
		switch {
		case dot:
			chain++
			longestChain = max(longestChain, chain)
		case !afterDot:
			chain = 0 // a name starts (or anything else)
		}
		afterDot = dot
		switch t.Kind {
		case TokOp:
			risk++
		case TokPunct:
			if t.End-t.Start == 2 && shape[t.Start] == ':' && shape[t.Start+1] == ':' {
				risk++
			}
		case TokIdent:
			if riskKeywords[shape[t.Start:t.End]] {
				risk++
			}
		}
	}
	return risk, longestChain
}

// riskKeywords are (lower-case, as in shapes) keywords of left-associative
// binary constructs.
var riskKeywords = map[string]bool{
	"join": true, "union": true, "intersect": true, "except": true, "collate": true, "at": true,
	"like": true, "ilike": true, "similar": true, "between": true, "in": true, "is": true,
	"isnull": true, "notnull": true, "overlaps": true, "not": true,
}

// walker visits a parse tree, recording what makes it a write, the tables
// and the functions.
type walker struct {
	funcs     *functionSet
	reason    string // first reason the statement is a write
	noExec    int    // >0 inside EXPLAIN without ANALYZE: nothing runs
	tables    []Table
	locs      []int32 // where each table was first named
	ctes      []string
	functions []string
}

func (w *walker) write(reason string) {
	if w.noExec == 0 && w.reason == "" {
		w.reason = reason
	}
}

// statement classifies one top-level statement.
func (w *walker) statement(n *pg_query.Node) {
	if n == nil {
		w.write("empty statement node")
		return
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		w.walk(n.ProtoReflect())
	case *pg_query.Node_VariableShowStmt:
		// SHOW reads a setting.
	case *pg_query.Node_ExplainStmt:
		// Without ANALYZE, EXPLAIN only plans. An ANALYZE option with any
		// value counts as ANALYZE: EXPLAIN (ANALYZE 'off') and (ANALYZE 'on')
		// have the same shape, so the value must not decide.
		if explainAnalyze(x.ExplainStmt) {
			w.statement(x.ExplainStmt.Query)
		} else {
			w.noExec++
			w.statement(x.ExplainStmt.Query)
			w.noExec--
		}
	case *pg_query.Node_CopyStmt:
		c := x.CopyStmt
		switch {
		case c.IsFrom:
			w.write("COPY FROM")
			w.table(c.Relation, true)
		case c.IsProgram || c.Filename != "":
			w.write("COPY TO a server file or program")
		}
		w.walk(n.ProtoReflect())
	default:
		w.write(statementReason(n))
		w.walk(n.ProtoReflect())
	}
}

func explainAnalyze(e *pg_query.ExplainStmt) bool {
	for _, o := range e.Options {
		if d := o.GetDefElem(); d != nil && d.Defname == "analyze" {
			return true
		}
	}
	return false
}

// statementReason names a statement type that is not a read.
func statementReason(n *pg_query.Node) string {
	switch n.Node.(type) {
	case *pg_query.Node_InsertStmt:
		return "INSERT"
	case *pg_query.Node_UpdateStmt:
		return "UPDATE"
	case *pg_query.Node_DeleteStmt:
		return "DELETE"
	case *pg_query.Node_MergeStmt:
		return "MERGE"
	}
	m := n.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0)); fd != nil && fd.Message() != nil {
		return "statement " + string(fd.Message().Name())
	}
	return "unknown statement"
}

var lockReasons = map[pg_query.LockClauseStrength]string{
	pg_query.LockClauseStrength_LCS_FORKEYSHARE:                "SELECT ... FOR KEY SHARE",
	pg_query.LockClauseStrength_LCS_FORSHARE:                   "SELECT ... FOR SHARE",
	pg_query.LockClauseStrength_LCS_FORNOKEYUPDATE:             "SELECT ... FOR NO KEY UPDATE",
	pg_query.LockClauseStrength_LCS_FORUPDATE:                  "SELECT ... FOR UPDATE",
	pg_query.LockClauseStrength_LCS_NONE:                       "SELECT ... FOR (locking clause)",
	pg_query.LockClauseStrength_LOCK_CLAUSE_STRENGTH_UNDEFINED: "SELECT ... FOR (locking clause)",
}

// walk visits m and everything below it.
func (w *walker) walk(m protoreflect.Message) {
	if !m.IsValid() {
		return
	}
	switch x := m.Interface().(type) {
	case *pg_query.SelectStmt:
		if x.IntoClause != nil {
			w.write("SELECT INTO")
		}
		for _, lc := range x.LockingClause {
			reason := "SELECT ... FOR (locking clause)"
			if l := lc.GetLockingClause(); l != nil {
				if r, ok := lockReasons[l.Strength]; ok {
					reason = r
				}
			}
			w.write(reason)
		}
	case *pg_query.InsertStmt:
		w.write("INSERT")
		w.table(x.Relation, true)
	case *pg_query.UpdateStmt:
		w.write("UPDATE")
		w.table(x.Relation, true)
	case *pg_query.DeleteStmt:
		w.write("DELETE")
		w.table(x.Relation, true)
	case *pg_query.MergeStmt:
		w.write("MERGE")
		w.table(x.Relation, true)
	case *pg_query.FuncCall:
		w.call(x.Funcname)
	case *pg_query.A_Expr:
		if x.Kind >= pg_query.A_Expr_Kind_AEXPR_OP && x.Kind <= pg_query.A_Expr_Kind_AEXPR_SIMILAR {
			w.operator(x.Name)
		}
	case *pg_query.RangeVar:
		w.table(x, false)
	case *pg_query.CommonTableExpr:
		w.ctes = append(w.ctes, x.Ctename)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					w.walk(l.Get(i).Message())
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			w.walk(v.Message())
		}
		return true
	})
}

// names returns the String parts of a qualified name list.
func names(list []*pg_query.Node) (schema, name string, ok bool) {
	parts := make([]string, 0, 3)
	for _, n := range list {
		s := n.GetString_()
		if s == nil {
			return "", "", false
		}
		parts = append(parts, s.Sval)
	}
	switch len(parts) {
	case 1:
		return "", parts[0], true
	case 2:
		return parts[0], parts[1], true
	case 3: // catalog.schema.name: the catalog must be the current database
		return parts[1], parts[2], true
	}
	return "", "", false
}

func (w *walker) call(funcname []*pg_query.Node) {
	schema, name, ok := names(funcname)
	if !ok {
		w.write("call of an unrecognised function name")
		return
	}
	full := name
	if schema != "" {
		full = schema + "." + name
	}
	found := false
	for _, f := range w.functions {
		if f == full {
			found = true
			break
		}
	}
	if !found {
		w.functions = append(w.functions, full)
	}
	if !w.funcs.readOnly(schema, name) {
		w.write("calls " + full + "(), which is not in the read-only function list")
	}
}

func (w *walker) operator(name []*pg_query.Node) {
	schema, op, ok := names(name)
	if !ok || (schema != "" && schema != "pg_catalog") {
		w.write("uses an operator outside pg_catalog")
		return
	}
	if _, ok := builtinOperators[op]; !ok {
		w.write("uses operator " + op + ", which is not a built-in operator")
	}
}

func (w *walker) table(rv *pg_query.RangeVar, written bool) {
	if rv == nil || rv.Relname == "" {
		return
	}
	if w.noExec > 0 {
		written = false
	}
	for i := range w.tables {
		t := &w.tables[i]
		if t.Schema == rv.Schemaname && t.Name == rv.Relname {
			t.Written = t.Written || written
			return
		}
	}
	w.tables = append(w.tables, Table{Schema: rv.Schemaname, Name: rv.Relname, Written: written})
	w.locs = append(w.locs, rv.Location)
}

// result returns the tables without the references to CTEs (unqualified
// names equal to a CTE's name; a CTE hides a table of that name within
// its WITH, which this does not scope precisely).
func (w *walker) result() []Table {
	// The tree is not visited in text order: sort by position.
	sort.Stable(byLocation{w.tables, w.locs})
	if len(w.ctes) == 0 {
		return w.tables
	}
	out := w.tables[:0]
	for _, t := range w.tables {
		cte := false
		if t.Schema == "" {
			for _, c := range w.ctes {
				if c == t.Name {
					cte = true
					break
				}
			}
		}
		if !cte {
			out = append(out, t)
		}
	}
	return out
}

type byLocation struct {
	t   []Table
	loc []int32
}

func (b byLocation) Len() int           { return len(b.t) }
func (b byLocation) Less(i, j int) bool { return b.loc[i] < b.loc[j] }
func (b byLocation) Swap(i, j int) {
	b.t[i], b.t[j] = b.t[j], b.t[i]
	b.loc[i], b.loc[j] = b.loc[j], b.loc[i]
}
