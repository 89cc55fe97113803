package gather

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// aggSpec is one combined column.
type aggSpec struct {
	kind     AggKind
	col      int
	countCol int     // AggAvg
	in, out  colType // the shards' partial values; the combined value
	cnt      colType // AggAvg: the count column
}

// acc accumulates one aggregate of one group.
type acc struct {
	set  bool    // some non-NULL partial was combined
	i    int64   // count, integer sum, bool
	f    float64 // float sum
	d    *decimal
	raw  []byte // min, max: the best value as sent
	best value  // min, max: raw decoded
	n    int64  // avg: the count
}

// group is one group being combined: the first row seen gives the values
// of the columns that are not aggregates (grouped columns, and columns
// that depend on them).
type group struct {
	row  []byte
	accs []acc
}

// havingCond is a compiled HAVING condition.
type havingCond struct {
	col int
	op  CmpOp
	t   colType // the combined column
	k   kind    // how the column and the constant compare
	v   value   // the constant
}

func (m *Merger) compileAggs() error {
	p := &m.plan
	m.aggAt = make([]int, len(m.cols))
	for i := range m.aggAt {
		m.aggAt[i] = -1
	}
	grouped := make([]bool, len(m.cols))
	for _, g := range p.Group {
		if err := m.checkCol(g, "GROUP BY"); err != nil {
			return err
		}
		if !m.in[g].keyed() {
			return &UnsupportedError{What: "GROUP BY on " + m.describe(g, m.in[g])}
		}
		grouped[g] = true
	}
	for _, a := range p.Aggs {
		if err := m.checkCol(a.Col, "aggregate"); err != nil {
			return err
		}
		if grouped[a.Col] || m.aggAt[a.Col] >= 0 {
			return fmt.Errorf("gather: plan: column %d is combined twice or also grouped", a.Col)
		}
		s := aggSpec{kind: a.Kind, col: a.Col, countCol: a.CountCol, in: m.in[a.Col], out: m.in[a.Col]}
		t := s.in
		integer := t.kind == kInt && t.oid != oidOID
		switch a.Kind {
		case AggCount:
			if !integer {
				return &UnsupportedError{What: "count combined from " + m.describe(a.Col, t)}
			}
		case AggSum:
			if !integer && t.kind != kFloat && t.kind != kNumeric {
				return &UnsupportedError{What: "sum of " + m.describe(a.Col, t)}
			}
		case AggMin, AggMax:
			if !t.ordered() {
				return &UnsupportedError{What: "min or max of " + m.describe(a.Col, t)}
			}
		case AggBoolAnd, AggBoolOr:
			if t.kind != kBool {
				return &UnsupportedError{What: "bool_and or bool_or of " + m.describe(a.Col, t)}
			}
		case AggAvg:
			if err := m.checkCol(a.CountCol, "avg count"); err != nil {
				return err
			}
			if a.CountCol == a.Col || grouped[a.CountCol] {
				return fmt.Errorf("gather: plan: avg count column %d is its sum or grouped", a.CountCol)
			}
			if c := m.in[a.CountCol]; c.kind != kInt || c.oid == oidOID {
				return &UnsupportedError{What: "avg with its count in " + m.describe(a.CountCol, c)}
			}
			s.cnt = m.in[a.CountCol]
			switch {
			case integer || t.kind == kNumeric:
				s.out = colType{oid: oidNumeric, kind: kNumeric, binary: t.binary}
			case t.kind == kFloat:
				s.out = colType{oid: oidFloat8, kind: kFloat, width: 8, binary: t.binary}
			default:
				return &UnsupportedError{What: "avg of " + m.describe(a.Col, t)}
			}
		default:
			return fmt.Errorf("gather: plan: aggregate kind %d", a.Kind)
		}
		m.aggAt[a.Col] = len(m.aggs)
		m.out[a.Col] = s.out
		m.aggs = append(m.aggs, s)
	}
	// An avg's count column is combined as a count too, in case HAVING or
	// ORDER BY look at it.
	for _, a := range p.Aggs {
		if a.Kind == AggAvg && m.aggAt[a.CountCol] < 0 {
			t := m.in[a.CountCol]
			m.aggAt[a.CountCol] = len(m.aggs)
			m.aggs = append(m.aggs, aggSpec{kind: AggCount, col: a.CountCol, in: t, out: t})
		}
	}
	for _, c := range p.Having {
		h, err := m.compileHaving(c)
		if err != nil {
			return err
		}
		m.having = append(m.having, h)
	}
	return nil
}

func (m *Merger) compileHaving(c Cond) (havingCond, error) {
	if err := m.checkCol(c.Col, "HAVING"); err != nil {
		return havingCond{}, err
	}
	if c.Op < OpEq || c.Op > OpGe {
		return havingCond{}, fmt.Errorf("gather: plan: HAVING operator %d", c.Op)
	}
	t := m.out[c.Col]
	h := havingCond{col: c.Col, op: c.Op, t: t, k: t.kind}
	bad := func() (havingCond, error) {
		return havingCond{}, &UnsupportedError{What: fmt.Sprintf("HAVING comparing %s with %q", m.describe(c.Col, t), c.Value)}
	}
	s := c.Value
	var ok bool
	switch t.kind {
	case kInt, kNumeric:
		// An integer column meets a constant like 1.5 as numeric would.
		d, err := parseDecimal([]byte(s), true)
		if err != nil {
			return bad()
		}
		h.v.d, h.k, ok = d, kNumeric, true
	case kFloat:
		h.v.f, ok = parseFloatConst(s)
	case kBool:
		var b bool
		b, ok = parseBoolConst(s)
		if b {
			h.v.i = 1
		}
	case kText:
		h.v.b, ok = []byte(s), true
	case kBpchar:
		h.v.b, ok = bytes.TrimRight([]byte(s), " "), true
	case kDate:
		h.v.i, ok = parseDate([]byte(trimSpace(s)))
	case kTimestamp:
		s = trimSpace(s)
		h.v.i, ok = parseTimestamp([]byte(s), t.tz)
		if !ok && !t.tz {
			// A date alone is midnight; with a time zone it would be the
			// session's midnight, which the merge does not know.
			var days int64
			if days, ok = parseDate([]byte(s)); ok && days > dateNoBegin && days < dateNoEnd {
				h.v.i = days * secondsPerDay * microsPerSecond
			} else {
				ok = false
			}
		}
	case kUUID:
		h.v.b, ok = parseUUIDConst(s, t.binary)
	}
	if !ok {
		return bad()
	}
	return h, nil
}

func parseFloatConst(s string) (float64, bool) {
	s = trimSpace(s)
	switch lower(s) {
	case "nan":
		return math.NaN(), true
	case "infinity", "+infinity", "inf", "+inf":
		return math.Inf(1), true
	case "-infinity", "-inf":
		return math.Inf(-1), true
	}
	return parseFloat([]byte(s), 64)
}

// parseBoolConst accepts what boolin accepts: a prefix of true, false,
// yes, no, or on, off, 1, 0, in any case.
func parseBoolConst(s string) (bool, bool) {
	s = lower(trimSpace(s))
	switch s {
	case "1", "on":
		return true, true
	case "0", "of", "off":
		return false, true
	}
	for _, w := range []struct {
		word string
		v    bool
	}{{"true", true}, {"yes", true}, {"false", false}, {"no", false}} {
		if s != "" && strings.HasPrefix(w.word, s) {
			return w.v, true
		}
	}
	return false, false
}

// parseUUIDConst accepts what uuid_in accepts (hex digits in any case, in
// groups of four separated by optional hyphens, optionally in braces) and
// returns the value in the column's format.
func parseUUIDConst(s string, bin bool) ([]byte, bool) {
	s = trimSpace(s)
	if len(s) >= 2 && s[0] == '{' && s[len(s)-1] == '}' {
		s = s[1 : len(s)-1]
	}
	var raw [16]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' && n > 0 && n%4 == 0 && n < 32 && i+1 < len(s) && s[i+1] != '-' {
			continue
		}
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return nil, false
		}
		if n >= 32 {
			return nil, false
		}
		raw[n/2] |= v << (4 * (1 - n%2))
		n++
	}
	if n != 32 {
		return nil, false
	}
	if bin {
		return raw[:], true
	}
	const hexDigits = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, b := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hexDigits[b>>4], hexDigits[b&15])
	}
	return out, true
}

// runAgg combines the groups of every source, then applies HAVING,
// DISTINCT, ORDER BY, OFFSET and LIMIT to the combined rows.
func (m *Merger) runAgg(ctx context.Context, sources []Source, o *output) error {
	fs := make([]field, len(m.cols))
	var mem arena
	groups := make(map[string]*group)
	var order []*group
	var key []byte
	err := m.eachRow(ctx, sources, fs, func(i int, row []byte) error {
		key = key[:0]
		for _, g := range m.plan.Group {
			var err error
			if key, err = appendKey(key, m.in[g], fs[g].bytesOf(row), fs[g].null()); err != nil {
				return &SourceError{Source: i, Err: fmt.Errorf("column %q: %w", m.cols[g].Name, err)}
			}
		}
		g := groups[string(key)]
		if g == nil {
			g = &group{row: mem.bytes(row), accs: slab(&mem.accs, len(m.aggs))}
			groups[string(key)] = g
			order = append(order, g)
		}
		for j := range m.aggs {
			if err := m.aggs[j].add(&g.accs[j], row, fs); err != nil {
				var sqlErr *SQLError
				if errors.As(err, &sqlErr) {
					return err
				}
				return &SourceError{Source: i, Err: fmt.Errorf("column %q: %w", m.cols[m.aggs[j].col].Name, err)}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(m.plan.Group) == 0 && len(order) == 0 {
		// Every server answers an aggregate without GROUP BY with one
		// row, even over no rows; a merge without any cannot know
		// what the constant columns would have held.
		return errors.New("gather: aggregate without GROUP BY: no shard returned its row")
	}

	type outRow struct {
		body []byte
		keys []sortVal
	}
	var out []outRow
	var seen map[string]struct{}
	if m.plan.Distinct {
		seen = make(map[string]struct{})
	}
	for gi, g := range order {
		if gi%checkEvery == checkEvery-1 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		body, err := m.combine(&mem, g, fs)
		if err != nil {
			return err
		}
		ofs := fs
		if err := splitRow(body, len(ofs), ofs); err != nil {
			return fmt.Errorf("gather: combined row: %w", err)
		}
		keep, err := m.keep(body, ofs)
		if err != nil {
			return err
		}
		if !keep {
			continue
		}
		if seen != nil {
			if key, err = m.rowKey(key[:0], body, ofs, m.visible, m.out); err != nil {
				return fmt.Errorf("gather: combined row: %w", err)
			}
			if _, dup := seen[string(key)]; dup {
				continue
			}
			seen[string(key)] = struct{}{}
		}
		r := outRow{body: body}
		if len(m.sort) > 0 {
			// The byte values of the keys point into body, which stays.
			r.keys = slab(&mem.keys, len(m.sort))
			for i := range m.sort {
				s := &m.sort[i]
				f := ofs[s.col]
				if r.keys[i].null = f.null(); !f.null() {
					if err := decodeInto(&r.keys[i].v, s.t, f.bytesOf(body)); err != nil {
						return fmt.Errorf("gather: combined row: %w", err)
					}
				}
			}
		}
		out = append(out, r)
	}
	if len(m.sort) > 0 {
		slices.SortStableFunc(out, func(a, b outRow) int { return m.cmpKeys(a.keys, b.keys) })
	}
	var buf []byte
	for _, r := range out {
		if o.skipOne() {
			continue
		}
		if err := splitRow(r.body, len(fs), fs); err != nil {
			return fmt.Errorf("gather: combined row: %w", err)
		}
		buf = m.project(buf, r.body, fs)
		if err := o.put(buf); err != nil {
			return err
		}
	}
	return nil
}

// combine builds the full combined row of a group, in mem; fs is scratch
// space for the group's first row's fields.
func (m *Merger) combine(mem *arena, g *group, fs []field) ([]byte, error) {
	if err := splitRow(g.row, len(fs), fs); err != nil {
		return nil, fmt.Errorf("gather: group row: %w", err)
	}
	body := mem.scratch[:0]
	body = binary.BigEndian.AppendUint16(body, uint16(len(m.cols)))
	for c, f := range fs {
		if a := m.aggAt[c]; a >= 0 {
			var err error
			if body, err = m.aggs[a].result(body, &g.accs[a]); err != nil {
				return nil, err
			}
			continue
		}
		if f.null() {
			body = appendNull(body)
		} else {
			body = append(appendLen(body, f.n), f.bytesOf(g.row)...)
		}
	}
	mem.scratch = body
	return mem.bytes(body), nil
}

// arena hands out memory for the groups in chunks, so that many small
// groups do not mean many small allocations. What it hands out lives as
// long as the arena.
type arena struct {
	buf     []byte
	accs    []acc
	keys    []sortVal
	scratch []byte
}

const arenaChunk = 64 << 10

// bytes returns a copy of b.
func (a *arena) bytes(b []byte) []byte {
	if cap(a.buf)-len(a.buf) < len(b) {
		a.buf = make([]byte, 0, max(arenaChunk, len(b)))
	}
	at := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[at:len(a.buf):len(a.buf)]
}

// slab returns n zero values from *pool, refilling it when short.
func slab[T any](pool *[]T, n int) []T {
	if cap(*pool)-len(*pool) < n {
		*pool = make([]T, 0, max(arenaChunk/64, n))
	}
	at := len(*pool)
	*pool = (*pool)[:at+n]
	return (*pool)[at : at+n : at+n]
}

// keep evaluates HAVING on a combined row.
func (m *Merger) keep(body []byte, fs []field) (bool, error) {
	for i := range m.having {
		h := &m.having[i]
		f := fs[h.col]
		if f.null() {
			return false, nil // NULL compared is unknown
		}
		v, err := decode(h.t, f.bytesOf(body))
		if err != nil {
			return false, fmt.Errorf("gather: combined row: column %q: %w", m.cols[h.col].Name, err)
		}
		if h.t.kind == kInt {
			v.d = newDecimalInt(v.i)
		}
		c := compare(h.k, &v, &h.v)
		var ok bool
		switch h.op {
		case OpEq:
			ok = c == 0
		case OpNe:
			ok = c != 0
		case OpLt:
			ok = c < 0
		case OpLe:
			ok = c <= 0
		case OpGt:
			ok = c > 0
		case OpGe:
			ok = c >= 0
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// add combines one shard's partial aggregate into a.
func (s *aggSpec) add(a *acc, row []byte, fs []field) error {
	f := fs[s.col]
	switch s.kind {
	case AggCount:
		if f.null() {
			return errors.New("NULL count")
		}
		v, ok := decodeInt(s.in, f.bytesOf(row))
		if !ok {
			return fmt.Errorf("invalid count %s", quote(f.bytesOf(row)))
		}
		var err error
		a.i, err = addInt(a.i, v, s.out)
		a.set = true
		return err
	case AggAvg:
		cf := fs[s.countCol]
		if cf.null() {
			return errors.New("NULL count for avg")
		}
		n, ok := decodeInt(s.cnt, cf.bytesOf(row))
		if !ok || n < 0 {
			return fmt.Errorf("invalid count %s for avg", quote(cf.bytesOf(row)))
		}
		var err error
		if a.n, err = addInt(a.n, n, colType{kind: kInt, width: 8}); err != nil {
			return err
		}
	}
	if f.null() {
		return nil
	}
	raw := f.bytesOf(row)
	v, err := decode(s.in, raw)
	if err != nil {
		return err
	}
	first := !a.set
	a.set = true
	switch s.kind {
	case AggSum:
		switch {
		case s.in.kind == kInt && first:
			a.i = v.i
		case s.in.kind == kInt:
			a.i, err = addInt(a.i, v.i, s.out)
		case s.in.kind == kFloat && first:
			a.f = v.f
		case s.in.kind == kFloat:
			a.f, err = addFloat(a.f, v.f, s.in.width)
		case first:
			a.d = v.d
		default:
			a.d = a.d.add(v.d)
		}
	case AggAvg:
		switch {
		case s.in.kind == kFloat && first:
			a.f = v.f
		case s.in.kind == kFloat:
			// float8_combine adds the sums in float8 arithmetic.
			a.f, err = addFloat(a.f, v.f, 8)
		case s.in.kind == kInt && first:
			a.i = v.i
		case s.in.kind == kInt && a.d == nil:
			// In int64 until it would overflow, then exactly.
			if sum, ok := addInt64(a.i, v.i); ok {
				a.i = sum
			} else {
				a.d = newDecimalInt(a.i).add(newDecimalInt(v.i))
			}
		case s.in.kind == kInt:
			a.d = a.d.add(newDecimalInt(v.i))
		case first:
			a.d = v.d
		default:
			a.d = a.d.add(v.d)
		}
	case AggMin, AggMax:
		c := 0
		if !first {
			c = compare(s.in.kind, &v, &a.best)
		}
		if first || (s.kind == AggMin && c < 0) || (s.kind == AggMax && c > 0) {
			a.raw = append(a.raw[:0], raw...)
			a.best, err = decode(s.in, a.raw) // v may point into the row
		}
	case AggBoolAnd:
		if first {
			a.i = v.i
		} else {
			a.i &= v.i
		}
	case AggBoolOr:
		if first {
			a.i = v.i
		} else {
			a.i |= v.i
		}
	}
	return err
}

// result appends the combined value of a as a field.
func (s *aggSpec) result(dst []byte, a *acc) ([]byte, error) {
	if s.kind == AggCount {
		return appendIntField(dst, s.out, a.i), nil
	}
	if !a.set || (s.kind == AggAvg && a.n == 0) {
		return appendNull(dst), nil
	}
	switch s.kind {
	case AggSum:
		switch s.in.kind {
		case kInt:
			return appendIntField(dst, s.out, a.i), nil
		case kFloat:
			return appendFloatField(dst, s.out, a.f), nil
		}
		return appendNumericField(dst, s.out, a.d)
	case AggAvg:
		if s.out.kind == kFloat {
			return appendFloatField(dst, s.out, a.f/float64(a.n)), nil
		}
		if a.d == nil && a.n < maxFastCount { // an integer sum that fitted in int64
			var buf [64]byte
			neg, digits, scale := avgInt64(a.i, a.n, buf[:0])
			dst, at := beginField(dst)
			if !s.out.binary {
				return endField(appendDigitsText(dst, neg, digits, scale), at), nil
			}
			dst, err := appendDigitsBinary(dst, neg, digits, scale, int32(scale))
			return endField(dst, at), err
		}
		d := a.d
		if d == nil {
			d = newDecimalInt(a.i)
		}
		return appendNumericField(dst, s.out, d.avg(a.n))
	case AggMin, AggMax:
		return append(appendLen(dst, len(a.raw)), a.raw...), nil
	}
	return appendBoolField(dst, s.out, a.i != 0), nil // bool_and, bool_or
}

// addInt adds like int2pl, int4pl and int8pl: a result outside the type's
// range is an error.
func addInt(a, b int64, t colType) (int64, error) {
	s, ok := addInt64(a, b)
	lo, hi := intRange(t)
	if !ok || s < lo || s > hi {
		switch t.width {
		case 2:
			return 0, errSmallintRange
		case 4:
			return 0, errIntegerRange
		}
		return 0, errBigintRange
	}
	return s, nil
}

// addInt64 adds, reporting false on overflow.
func addInt64(a, b int64) (int64, bool) {
	s := a + b
	return s, (b >= 0) == (s >= a)
}

// addFloat adds like float4pl and float8pl: float4 sums round to float4,
// and overflowing to infinity from finite values is an error.
func addFloat(a, b float64, width int) (float64, error) {
	s := a + b
	if width == 4 {
		s = float64(float32(s))
	}
	if math.IsInf(s, 0) && !math.IsInf(a, 0) && !math.IsInf(b, 0) {
		return 0, errFloatOverflow
	}
	return s, nil
}
