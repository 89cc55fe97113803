package router

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/shardwire/shardwire/shardmap"
)

// InsertPart is the share of a multi-row INSERT … VALUES that goes to one
// shard.
type InsertPart struct {
	Shard string
	// SQL is the INSERT with only this shard's rows: the original text
	// with the other rows cut out (column list, ON CONFLICT and RETURNING
	// kept, literals byte for byte), or the original text itself when
	// every row goes to one shard.
	SQL string
	// Rows are the original row numbers (0-based) in this part, in order:
	// RETURNING rows come back in this order per shard, so the caller can
	// put them back in the client's order. nil when the statement has no
	// VALUES list the router could read (a one-shard INSERT … SELECT).
	Rows []int
	// Params, for the extended protocol, are the original $n (1-based)
	// that the part's $1..$k stand for, in order: build the part's Bind
	// (and Parse parameter types) from them, e.g. with Bind. Params is nil
	// for a simple query (SplitInsert given no Params).
	Params []int
}

// Bind returns the part's bind parameters, picked from the original Bind
// by Params: values, format codes (none or one stay as they are, since
// they apply to all) and Parse types.
func (p *InsertPart) Bind(orig *BindParams) BindParams {
	var b BindParams
	if orig == nil {
		return b
	}
	b.Values = make([][]byte, len(p.Params))
	if len(orig.Formats) <= 1 {
		b.Formats = slices.Clone(orig.Formats)
	} else {
		b.Formats = make([]int16, len(p.Params))
	}
	if len(orig.Types) > 0 {
		b.Types = make([]uint32, len(p.Params))
	}
	for i, n := range p.Params {
		j := n - 1
		if j >= 0 && j < len(orig.Values) {
			b.Values[i] = orig.Values[j]
		}
		if len(orig.Formats) > 1 && j >= 0 && j < len(orig.Formats) {
			b.Formats[i] = orig.Formats[j]
		}
		if j >= 0 && j < len(orig.Types) {
			b.Types[i] = orig.Types[j]
		}
	}
	return b
}

// SplitInsert splits a multi-row INSERT INTO t (cols) VALUES (…), (…)
// into one INSERT per shard of its rows. Each row lands exactly where
// Route sends a single-row INSERT with that row's key: the value is read
// and placed by the same code (literals, negated numbers, casts to the
// key's type, $n in text or binary format).
//
// When Route finds one shard (every row on it, a hint, a session shard or
// key), the result is one part with the original SQL. Otherwise parts are
// in the order of their first row. Refused, with Route's *RouteError or a
// 0A000 one: what Route refuses (no usable key in some row: DEFAULT, NULL,
// an expression, INSERT … SELECT; ON CONFLICT DO UPDATE SET key = … that
// may move a row), and, across shards, a WITH clause, a write to a
// replicated table (it runs on every shard whole), a VALUES list followed by
// ORDER BY, LIMIT or OFFSET, a row that reads a sharded or unsharded table,
// several statements, and any text whose rows the router cannot delimit.
func (a *Analyzer) SplitInsert(sql string, params Params, m *shardmap.Map, opt RouteOptions) ([]InsertPart, error) {
	if m == nil {
		return nil, &RouteError{Code: CodeInternal, Msg: "shardwire: SplitInsert without a shard map"}
	}
	var s Scratch
	an := a.ClassifyWith(&s, sql)
	lits := s.lits
	r, err := a.Route(an, sql, lits, params, m, opt)
	if err != nil {
		return nil, err
	}
	lay, layErr := layoutInsert(sql)
	if len(r.Shards) == 1 || (r.AnyShard && len(r.Shards) > 0) {
		part := InsertPart{Shard: r.Shards[0], SQL: sql}
		if layErr == nil {
			part.Rows = seq(0, len(lay.rows))
		}
		if params != nil {
			part.Params = seq(1, maxParam(sql)+1)
		}
		return []InsertPart{part}, nil
	}
	if r.Replicated {
		return nil, splitError(r.Table, fmt.Sprintf(
			"INSERT into replicated table %q runs whole on every shard; it is not split", r.Table))
	}
	if len(r.Shards) == 0 {
		return nil, &RouteError{Code: CodeInternal, Msg: "shardwire: SplitInsert: empty route"}
	}
	ki := an.keys
	if ki == nil || len(ki.stmts) != 1 || ki.stmts[0].kind != kindInsert {
		return nil, splitError("", "only a single INSERT … VALUES can be split across shards")
	}
	st := &ki.stmts[0]
	mi := a.index(m)
	var target *keyRel
	var t *shardmap.Table
	for i := range st.rels {
		rel := &st.rels[i]
		if rel.insert && target == nil {
			target = rel
			t, _ = m.Table(rel.table)
			continue
		}
		if rel.system {
			continue
		}
		if o, listed := m.Table(rel.table); listed && o.Replicated() && !rel.written {
			continue // a replicated table reads the same on every shard
		}
		return nil, splitError(rel.table, fmt.Sprintf(
			"an INSERT whose rows go to several shards cannot also read table %q: each shard would see only its rows", rel.table))
	}
	if target == nil || t == nil || t.Replicated() {
		return nil, splitError("", "only an INSERT into a sharded table can be split across shards")
	}
	key := t.Key()
	for _, set := range target.sets {
		if set.name == key && set.val != setUnchanged {
			return nil, splitError(t.Name(), fmt.Sprintf(
				"ON CONFLICT DO UPDATE SET %s = … of sharded table %q cannot be split across shards", key, t.Name()))
		}
	}
	col, ok := keyColumn(key, target, st)
	if !ok || col.cond < 0 || int(col.cond) >= len(ki.conds) || ki.conds[col.cond].op != condValues {
		return nil, splitError(t.Name(), fmt.Sprintf("INSERT into %q: no key value per row", t.Name()))
	}
	if layErr != nil {
		return nil, splitError(t.Name(), fmt.Sprintf("INSERT into %q spans %s and cannot be split: %v",
			t.Name(), strings.Join(r.Shards, ", "), layErr))
	}
	if params != nil {
		for _, pt := range lay.params {
			if _, _, _, ok := params.Param(pt.n); !ok {
				// The server would refuse the Bind; a part's Bind must
				// not turn the missing value into NULL.
				return nil, &RouteError{Code: CodeProtocolViolation, Table: t.Name(), Msg: fmt.Sprintf(
					"shardwire: the statement uses %s but the Bind supplies no such parameter", sql[pt.start:pt.end])}
			}
		}
	}
	c := ki.conds[col.cond]
	vals := ki.vals[c.lo:c.hi]
	if len(vals) != len(lay.rows) {
		return nil, splitError(t.Name(), fmt.Sprintf("INSERT into %q: %d rows in the text, %d key values in the statement",
			t.Name(), len(lay.rows), len(vals)))
	}
	rc := routeCtx{mi: mi, an: an, ki: ki, sql: sql, lits: lits, params: params, loc: opt.Loc}
	rowRank := make([]int, len(vals))
	for i, v := range vals {
		if !lay.holds(i, v, lits) {
			return nil, splitError(t.Name(), fmt.Sprintf("INSERT into %q: row %d's key is not where the parser put it", t.Name(), i+1))
		}
		var set shardSet
		usable, err := rc.addValue(&set, t, v, true)
		if err != nil {
			return nil, err
		}
		if !usable || set.count() != 1 {
			return nil, splitError(t.Name(), fmt.Sprintf("INSERT into %q: row %d has no usable value for the key %s", t.Name(), i+1, key))
		}
		rowRank[i] = set.first()
	}
	// Group the rows by shard, parts in the order of their first row.
	var parts []InsertPart
	partOf := map[int]int{}
	for i, rk := range rowRank {
		j, ok := partOf[rk]
		if !ok {
			j = len(parts)
			partOf[rk] = j
			parts = append(parts, InsertPart{Shard: mi.names[rk]})
		}
		parts[j].Rows = append(parts[j].Rows, i)
	}
	if len(parts) == 1 {
		// Route saw several shards but the rows agree (cannot happen with
		// one map; kept for safety): the original text.
		parts[0].SQL = sql
		if params != nil {
			parts[0].Params = seq(1, maxParam(sql)+1)
		}
		return parts, nil
	}
	for i := range parts {
		parts[i].SQL, parts[i].Params = lay.partSQL(sql, parts[i].Rows, params != nil)
	}
	return parts, nil
}

// CodeProtocolViolation is a Bind that does not match its statement.
const CodeProtocolViolation = "08P01"

func splitError(table, msg string) error {
	return &RouteError{Code: CodeFeatureNotSupported, Table: table, Msg: "shardwire: " + msg}
}

// seq returns lo, lo+1, …, hi-1.
func seq(lo, hi int) []int {
	if hi < lo {
		hi = lo
	}
	s := make([]int, hi-lo)
	for i := range s {
		s[i] = lo + i
	}
	return s
}

// maxParam is the highest $n in sql.
func maxParam(sql string) int {
	var lx Lexer
	lx.Reset(sql)
	n := 0
	for t := lx.Next(); t.Kind != TokEOF; t = lx.Next() {
		if t.Kind == TokParam {
			if v, ok := paramNumber(sql[t.Start:t.End]); ok && v > n {
				n = v
			}
		}
	}
	return n
}

// paramNumber reads $n.
func paramNumber(tok string) (int, bool) {
	if len(tok) < 2 || tok[0] != '$' {
		return 0, false
	}
	v, err := strconv.Atoi(tok[1:])
	if err != nil || v < 1 || v > 1<<20 {
		return 0, false
	}
	return v, true
}

// span is sql[start:end].
type span struct{ start, end int }

// paramTok is a $n token.
type paramTok struct {
	span
	n   int
	row int // index of the VALUES row it is in, or -1
}

// insertLayout is where the rows of INSERT INTO t (cols) [OVERRIDING …
// VALUE] VALUES (…), … [ON CONFLICT …] [RETURNING …] are in its text.
type insertLayout struct {
	rows   []span // each row's "(…)"
	params []paramTok
}

// layoutInsert finds the VALUES rows of an INSERT with the lexer. It runs
// on text the parser accepted, so it only has to recognise the shape, and
// it refuses any other shape rather than guess.
func layoutInsert(sql string) (insertLayout, error) {
	var lay insertLayout
	var lx Lexer
	lx.Reset(sql)
	depth := 0
	row := -1 // the row being read, while depth > 0 in the VALUES list
	next := func() Token {
		for {
			t := lx.Next()
			switch t.Kind {
			case TokComment:
				continue
			case TokParam:
				n, ok := paramNumber(sql[t.Start:t.End])
				if !ok {
					n = -1
				}
				r := -1
				if depth > 0 {
					r = row
				}
				lay.params = append(lay.params, paramTok{span: span{t.Start, t.End}, n: n, row: r})
			}
			return t
		}
	}
	isWord := func(t Token, w string) bool { return t.Kind == TokIdent && eqFold(sql[t.Start:t.End], w) }
	isPunct := func(t Token, p string) bool { return t.Kind == TokPunct && sql[t.Start:t.End] == p }
	name := func(t Token) bool { return t.Kind == TokIdent || t.Kind == TokQuotedIdent }
	// skipGroup reads to the ")" matching the "(" just read and returns
	// the offset after it.
	skipGroup := func() (int, error) {
		depth = 1
		for {
			t := next()
			switch {
			case t.Kind == TokEOF:
				return 0, fmt.Errorf("unbalanced parentheses")
			case isPunct(t, "("):
				depth++
			case isPunct(t, ")"):
				depth--
				if depth == 0 {
					return t.End, nil
				}
			}
		}
	}

	t := next()
	switch {
	case isWord(t, "with"):
		return lay, fmt.Errorf("it has a WITH clause")
	case !isWord(t, "insert"):
		return lay, fmt.Errorf("not an INSERT")
	}
	if t = next(); !isWord(t, "into") {
		return lay, fmt.Errorf("unexpected %q after INSERT", sql[t.Start:t.End])
	}
	// The target: name[.name[.name]] [AS alias].
	if t = next(); !name(t) {
		return lay, fmt.Errorf("no table name")
	}
	for t = next(); isPunct(t, "."); t = next() {
		if t = next(); !name(t) {
			return lay, fmt.Errorf("bad table name")
		}
	}
	if isWord(t, "as") {
		if t = next(); !name(t) {
			return lay, fmt.Errorf("bad alias")
		}
		t = next()
	}
	if !isPunct(t, "(") {
		return lay, fmt.Errorf("no column list")
	}
	if _, err := skipGroup(); err != nil {
		return lay, err
	}
	t = next()
	if isWord(t, "overriding") {
		if t = next(); !isWord(t, "system") && !isWord(t, "user") {
			return lay, fmt.Errorf("bad OVERRIDING clause")
		}
		if t = next(); !isWord(t, "value") {
			return lay, fmt.Errorf("bad OVERRIDING clause")
		}
		t = next()
	}
	switch {
	case isWord(t, "values"):
	case isWord(t, "default"):
		return lay, fmt.Errorf("DEFAULT VALUES")
	default:
		return lay, fmt.Errorf("not INSERT … VALUES (INSERT … SELECT is not split)")
	}
	for {
		t = next()
		if !isPunct(t, "(") {
			return lay, fmt.Errorf("unexpected %q in the VALUES list", sql[t.Start:t.End])
		}
		row = len(lay.rows)
		end, err := skipGroup()
		if err != nil {
			return lay, err
		}
		lay.rows = append(lay.rows, span{t.Start, end})
		row = -1
		if t = next(); !isPunct(t, ",") {
			break
		}
	}
	// What may follow the rows: ON CONFLICT, RETURNING, a semicolon.
	switch {
	case t.Kind == TokEOF, isWord(t, "on"), isWord(t, "returning"):
	case isPunct(t, ";"):
	default:
		return lay, fmt.Errorf("%q after the VALUES list", strings.ToUpper(sql[t.Start:t.End]))
	}
	// Read the rest for its parameters and to find a second statement.
	for t.Kind != TokEOF {
		if isPunct(t, ";") {
			if t = next(); t.Kind != TokEOF {
				return lay, fmt.Errorf("several statements")
			}
			break
		}
		t = next()
	}
	return lay, nil
}

// holds reports whether row i of the layout holds key value v: its literal
// or a $n token with its number.
func (lay *insertLayout) holds(i int, v keyValue, lits []Literal) bool {
	r := lay.rows[i]
	if v.lit >= 0 {
		if int(v.lit) >= len(lits) {
			return false
		}
		l := lits[v.lit]
		return l.Start > r.start && l.End < r.end
	}
	for _, p := range lay.params {
		if p.row == i && p.n == int(v.param) {
			return true
		}
	}
	return false
}

// partSQL builds the INSERT of the given rows: the text before the first
// row, the rows, and the text after the last, with $n renumbered 1..k if
// renumber is set (params lists the original numbers).
func (lay *insertLayout) partSQL(sql string, rows []int, renumber bool) (string, []int) {
	first, last := lay.rows[0], lay.rows[len(lay.rows)-1]
	segs := make([]span, 0, len(rows)+2)
	segs = append(segs, span{0, first.start})
	for _, r := range rows {
		segs = append(segs, lay.rows[r])
	}
	segs = append(segs, span{last.end, len(sql)})

	var used []int
	if renumber {
		used = []int{}
		for _, p := range lay.params {
			if p.n > 0 && inSegs(p.span, segs) && !slices.Contains(used, p.n) {
				used = append(used, p.n)
			}
		}
		slices.Sort(used)
	}
	var b strings.Builder
	n := 0
	for _, s := range segs {
		n += s.end - s.start + 2
	}
	b.Grow(n)
	pi := 0
	for i, s := range segs {
		if i > 1 && i < len(segs)-1 {
			b.WriteString(", ")
		}
		pos := s.start
		if renumber {
			for ; pi < len(lay.params) && lay.params[pi].start < s.end; pi++ {
				p := lay.params[pi]
				if p.start < s.start || p.n <= 0 {
					continue
				}
				k, _ := slices.BinarySearch(used, p.n)
				b.WriteString(sql[pos:p.start])
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(k + 1))
				pos = p.end
			}
		}
		b.WriteString(sql[pos:s.end])
	}
	return b.String(), used
}

func inSegs(p span, segs []span) bool {
	for _, s := range segs {
		if p.start >= s.start && p.end <= s.end {
			return true
		}
	}
	return false
}
