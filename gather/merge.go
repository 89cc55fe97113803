package gather

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Source yields one shard's rows as DataRow bodies: the message without
// its type byte and length, that is an int16 column count, then per column
// an int32 length (-1 for NULL) and that many bytes. Next returns io.EOF
// after the last row. The returned slice stays valid until the next call of
// Next on the same Source; the merge does not modify it.
type Source interface {
	Next() ([]byte, error)
}

// Merger merges the rows of several sources by a Plan. It is immutable
// once built, so one Merger may serve several Runs, also concurrently.
type Merger struct {
	plan    Plan
	cols    []Column
	in      []colType // the columns as the shards return them
	out     []colType // the columns after combining (AggAvg changes the type)
	visible int
	client  []Column

	sort []sortSpec
	// ties: Distinct over a sorted merge whose sort keys are all visible,
	// so that duplicates are in the same run of equal sort keys and only
	// that run needs remembering. covers: the sort keys are every visible
	// column, so a row duplicates the last one exactly when its sort keys
	// are equal.
	ties, covers bool

	// Aggregation.
	aggs   []aggSpec
	aggAt  []int // per column: index into aggs, or -1
	having []havingCond
}

// sortSpec is one ORDER BY key with the type of its column.
type sortSpec struct {
	col              int
	desc, nullsFirst bool
	t                colType
}

// NewMerger checks the plan against the columns the shards return and
// prepares the merge. A plan needing what the merge cannot do right (order
// or combine values of a type it does not know, say) gives an
// *UnsupportedError naming the construct; a plan that does not fit the
// columns (a column number out of range, say) gives another error.
func NewMerger(p Plan, cols []Column) (*Merger, error) {
	p, err := resolvePlan(p, len(cols))
	if err != nil {
		return nil, err
	}
	m := &Merger{plan: p, cols: slices.Clone(cols), visible: p.Visible}
	m.in = make([]colType, len(cols))
	for i, c := range cols {
		t, err := newColType(c)
		if err != nil {
			return nil, err
		}
		m.in[i] = t
	}
	m.out = slices.Clone(m.in)
	if p.Aggregating() {
		if err := m.compileAggs(); err != nil {
			return nil, err
		}
	} else if len(p.Having) > 0 {
		return nil, errors.New("gather: plan has HAVING without aggregation")
	}
	for _, k := range p.Sort {
		if err := m.checkCol(k.Col, "ORDER BY"); err != nil {
			return nil, err
		}
		t := m.out[k.Col]
		if !t.ordered() {
			return nil, &UnsupportedError{What: "ORDER BY on " + m.describe(k.Col, t)}
		}
		m.sort = append(m.sort, sortSpec{col: k.Col, desc: k.Desc, nullsFirst: k.NullsFirst, t: t})
	}
	if p.Distinct {
		for c := 0; c < m.visible; c++ {
			if !m.out[c].keyed() {
				return nil, &UnsupportedError{What: "DISTINCT on " + m.describe(c, m.out[c])}
			}
		}
		if !p.Aggregating() && len(m.sort) > 0 {
			m.ties = true
			sorted := make([]bool, m.visible)
			for _, s := range m.sort {
				if s.col >= m.visible {
					m.ties = false // hidden sort keys: duplicates may lie apart
					break
				}
				sorted[s.col] = true
			}
			m.covers = m.ties && !slices.Contains(sorted, false)
		}
	}
	m.client = make([]Column, m.visible)
	for i := range m.client {
		m.client[i] = m.cols[i]
		if m.out[i].oid != m.in[i].oid {
			m.client[i].TypeOID = m.out[i].oid
			m.client[i].TypeModifier = -1
			m.client[i].TypeSize = -1
			if m.out[i].kind == kFloat {
				m.client[i].TypeSize = 8
			}
		}
	}
	return m, nil
}

// resolvePlan returns a copy of p, sharing nothing with it, with negative
// column numbers (counted from the end) made positive and Visible worked
// out from Hidden.
func resolvePlan(p Plan, n int) (Plan, error) {
	if p.Hidden < 0 || p.Hidden > n || p.Visible < 0 || p.Visible > n {
		return p, fmt.Errorf("gather: plan shows %d and hides %d of %d columns", p.Visible, p.Hidden, n)
	}
	switch {
	case p.Visible == 0:
		p.Visible = n - p.Hidden
	case p.Hidden > 0 && p.Visible+p.Hidden != n:
		return p, fmt.Errorf("gather: plan shows %d and hides %d of %d columns", p.Visible, p.Hidden, n)
	}
	abs := func(c int) int {
		if c < 0 {
			return c + n // still negative when out of range: checkCol refuses it
		}
		return c
	}
	p.Sort = slices.Clone(p.Sort)
	for i := range p.Sort {
		p.Sort[i].Col = abs(p.Sort[i].Col)
	}
	p.Group = slices.Clone(p.Group)
	for i := range p.Group {
		p.Group[i] = abs(p.Group[i])
	}
	p.Aggs = slices.Clone(p.Aggs)
	for i := range p.Aggs {
		p.Aggs[i].Col = abs(p.Aggs[i].Col)
		if p.Aggs[i].Kind == AggAvg {
			p.Aggs[i].CountCol = abs(p.Aggs[i].CountCol)
		}
	}
	p.Having = slices.Clone(p.Having)
	for i := range p.Having {
		p.Having[i].Col = abs(p.Having[i].Col)
	}
	return p, nil
}

func (m *Merger) checkCol(c int, what string) error {
	if c < 0 || c >= len(m.cols) {
		return fmt.Errorf("gather: plan: %s column %d of %d", what, c, len(m.cols))
	}
	return nil
}

// describe names a column and its type for an UnsupportedError.
func (m *Merger) describe(c int, t colType) string {
	return fmt.Sprintf("type %s (column %q)", typeName(t.oid), m.cols[c].Name)
}

// ClientColumns returns the columns the client sees: the visible ones, with
// the type avg returns for AggAvg columns (numeric for integer and numeric
// sums, double precision for float sums). Names and formats are kept.
func (m *Merger) ClientColumns() []Column { return slices.Clone(m.client) }

// Run merges the sources and calls emit with each output row, a DataRow
// body of the visible columns, which is valid only during the call. It
// returns the number of rows emitted, for the CommandComplete tag.
//
// limit and offset are the values in force for this execution (Plan.Limit
// and Plan.Offset, or the bind parameters LimitParam and OffsetParam
// name); a limit of -1 means none (LIMIT NULL or ALL), one below -1 and a
// negative offset are the errors Postgres gives (SQLSTATE 2201W, 2201X).
// Run stops reading once the limit is reached, on the first error, or when
// ctx is done; the caller then drains or cancels what the shards still
// send. An error of emit is returned as it is; an error of a source, or a
// malformed row, as a *SourceError; combined values out of their type's
// range as an *SQLError.
func (m *Merger) Run(ctx context.Context, sources []Source, limit, offset int64, emit func(row []byte) error) (int64, error) {
	if offset < 0 {
		return 0, &SQLError{Code: "2201X", Message: "OFFSET must not be negative"}
	}
	if limit < -1 {
		return 0, &SQLError{Code: "2201W", Message: "LIMIT must not be negative"}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	o := &output{skip: offset, limit: limit, emit: emit}
	if limit == 0 {
		return 0, nil
	}
	var err error
	switch {
	case m.plan.Aggregating():
		err = m.runAgg(ctx, sources, o)
	case len(m.sort) > 0:
		err = m.runSorted(ctx, sources, o)
	default:
		err = m.runConcat(ctx, sources, o)
	}
	if errors.Is(err, errLimit) {
		err = nil
	}
	return o.n, err
}

// errLimit stops a merge when the limit is reached.
var errLimit = errors.New("gather: limit reached")

// output applies OFFSET and LIMIT and counts the rows emitted.
type output struct {
	skip, limit, n int64
	emit           func([]byte) error
}

// skipOne reports whether OFFSET swallows the next row.
func (o *output) skipOne() bool {
	if o.skip > 0 {
		o.skip--
		return true
	}
	return false
}

func (o *output) put(row []byte) error {
	if err := o.emit(row); err != nil {
		return err
	}
	o.n++
	if o.limit >= 0 && o.n >= o.limit {
		return errLimit
	}
	return nil
}

// checkEvery is how many rows pass between looks at the context.
const checkEvery = 1024

// project returns the visible part of row, in buf when it must be copied.
// The visible columns lead, so their encoding is a prefix of the body.
func (m *Merger) project(buf, row []byte, fs []field) []byte {
	if m.visible == len(fs) {
		return row
	}
	buf = binary.BigEndian.AppendUint16(buf[:0], uint16(m.visible))
	if m.visible == 0 {
		return buf
	}
	return append(buf, row[2:fs[m.visible-1].end()]...)
}

// rowKey appends the key of the first n columns of a row (see appendKey).
func (m *Merger) rowKey(dst, row []byte, fs []field, n int, types []colType) ([]byte, error) {
	for c := 0; c < n; c++ {
		var err error
		dst, err = appendKey(dst, types[c], fs[c].bytesOf(row), fs[c].null())
		if err != nil {
			return dst, fmt.Errorf("column %q: %w", m.cols[c].Name, err)
		}
	}
	return dst, nil
}

// next reads a row of source i into fs.
func (m *Merger) next(src Source, i int, fs []field) ([]byte, error) {
	row, err := src.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, &SourceError{Source: i, Err: err}
	}
	if err := splitRow(row, len(fs), fs); err != nil {
		return nil, &SourceError{Source: i, Err: err}
	}
	return row, nil
}

// runConcat emits the sources one after the other.
func (m *Merger) runConcat(ctx context.Context, sources []Source, o *output) error {
	fs := make([]field, len(m.cols))
	var seen map[string]struct{}
	if m.plan.Distinct {
		seen = make(map[string]struct{})
	}
	var key, buf []byte
	return m.eachRow(ctx, sources, fs, func(i int, row []byte) error {
		if seen != nil {
			var err error
			if key, err = m.rowKey(key[:0], row, fs, m.visible, m.in); err != nil {
				return &SourceError{Source: i, Err: err}
			}
			if _, dup := seen[string(key)]; dup {
				return nil
			}
			seen[string(key)] = struct{}{}
		}
		if o.skipOne() {
			return nil
		}
		buf = m.project(buf, row, fs)
		return o.put(buf)
	})
}

// eachRow calls fn with every row of the sources, in source order, its
// fields decoded into fs, and looks at ctx every checkEvery rows. An error
// of a source or of fn ends the walk.
func (m *Merger) eachRow(ctx context.Context, sources []Source, fs []field, fn func(source int, row []byte) error) error {
	rows := 0
	for i, src := range sources {
		for {
			row, err := m.next(src, i, fs)
			if err == io.EOF {
				break
			} else if err != nil {
				return err
			}
			if rows++; rows%checkEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := fn(i, row); err != nil {
				return err
			}
		}
	}
	return nil
}

// sortVal is the decoded value of a sort key.
type sortVal struct {
	null bool
	v    value
}

// cmpKeys compares the sort keys of two rows in ORDER BY order. NULLs go
// where NullsFirst says, whatever the direction.
func (m *Merger) cmpKeys(a, b []sortVal) int {
	for i := range m.sort {
		s := &m.sort[i]
		x, y := &a[i], &b[i]
		if x.null || y.null {
			if x.null == y.null {
				continue
			}
			if x.null != s.nullsFirst {
				return 1
			}
			return -1
		}
		c := compare(s.t.kind, &x.v, &y.v)
		if c != 0 {
			if s.desc {
				return -c
			}
			return c
		}
	}
	return 0
}

// decodeKeys decodes the sort keys of a row into keys. Byte values are
// copied into *store, so that they outlive the row.
func (m *Merger) decodeKeys(keys []sortVal, row []byte, fs []field, store *[]byte) error {
	need := 0
	for i := range m.sort {
		if k := m.sort[i].t.kind; k == kText || k == kBpchar || k == kUUID {
			need += max(fs[m.sort[i].col].n, 0)
		}
	}
	if cap(*store) < need {
		*store = make([]byte, 0, 2*need)
	}
	buf := (*store)[:0]
	for i := range m.sort {
		s := &m.sort[i]
		f := fs[s.col]
		k := &keys[i]
		if f.null() {
			k.null = true
			continue
		}
		k.null = false
		if err := decodeInto(&k.v, s.t, f.bytesOf(row)); err != nil {
			return fmt.Errorf("column %q: %w", m.cols[s.col].Name, err)
		}
		if k.v.b != nil {
			at := len(buf)
			buf = append(buf, k.v.b...) // within capacity: no reallocation
			k.v.b = buf[at:len(buf):len(buf)]
		}
	}
	*store = buf
	return nil
}

// cursor is the current row of one source in a sorted merge.
type cursor struct {
	idx        int
	src        Source
	row        []byte
	fs         []field
	keys, prev []sortVal
	kb, pb     []byte // storage of the byte values of keys and prev
	started    bool
}

// advance reads the cursor's next row; false at the end. A row ordered
// before the previous one is an error: merging it would give a wrong
// order silently.
func (c *cursor) advance(m *Merger) (bool, error) {
	row, err := m.next(c.src, c.idx, c.fs)
	if err == io.EOF {
		return false, nil
	} else if err != nil {
		return false, err
	}
	c.row = row
	c.keys, c.prev = c.prev, c.keys
	c.kb, c.pb = c.pb, c.kb
	if err := m.decodeKeys(c.keys, row, c.fs, &c.kb); err != nil {
		return false, &SourceError{Source: c.idx, Err: err}
	}
	if c.started && m.cmpKeys(c.keys, c.prev) < 0 {
		return false, &SourceError{Source: c.idx, Err: ErrNotSorted}
	}
	c.started = true
	return true, nil
}

// cursorHeap is a binary min-heap of cursors by sort keys, then by source
// index, so that rows with equal keys come in source order.
type cursorHeap struct {
	m *Merger
	c []*cursor
}

func (h *cursorHeap) less(a, b *cursor) bool {
	c := h.m.cmpKeys(a.keys, b.keys)
	return c < 0 || (c == 0 && a.idx < b.idx)
}

func (h *cursorHeap) down(i int) {
	n := len(h.c)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && h.less(h.c[r], h.c[l]) {
			j = r
		}
		if !h.less(h.c[j], h.c[i]) {
			return
		}
		h.c[i], h.c[j] = h.c[j], h.c[i]
		i = j
	}
}

// runSorted merges sources that are each in ORDER BY order, holding one
// row of each.
func (m *Merger) runSorted(ctx context.Context, sources []Source, o *output) error {
	h := &cursorHeap{m: m}
	for i, src := range sources {
		c := &cursor{
			idx:  i,
			src:  src,
			fs:   make([]field, len(m.cols)),
			keys: make([]sortVal, len(m.sort)),
			prev: make([]sortVal, len(m.sort)),
		}
		ok, err := c.advance(m)
		if err != nil {
			return err
		}
		if ok {
			h.c = append(h.c, c)
		}
	}
	for i := len(h.c)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	var d *sortedDistinct
	if m.plan.Distinct {
		d = newSortedDistinct(m)
	}
	var buf []byte
	rows := 0
	for len(h.c) > 0 {
		c := h.c[0]
		if rows++; rows%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		dup := false
		if d != nil {
			var err error
			if dup, err = d.dup(c); err != nil {
				return err
			}
		}
		if !dup && !o.skipOne() {
			buf = m.project(buf, c.row, c.fs)
			if err := o.put(buf); err != nil {
				return err
			}
		}
		ok, err := c.advance(m)
		if err != nil {
			return err
		}
		if !ok {
			last := len(h.c) - 1
			h.c[0] = h.c[last]
			h.c = h.c[:last]
		}
		h.down(0)
	}
	return nil
}

// sortedDistinct finds duplicate rows in a sorted merge. With every sort
// key visible, duplicates have equal sort keys, so only the rows of the
// current run of equal keys are remembered (none when the sort keys are
// every visible column: then a row is a duplicate exactly when its keys
// equal the last row's). Otherwise every distinct row is.
type sortedDistinct struct {
	m         *Merger
	seen      map[string]struct{}
	key, tie  []byte
	last      []byte // tie key of the current run
	startedAt bool
}

func newSortedDistinct(m *Merger) *sortedDistinct {
	return &sortedDistinct{m: m, seen: make(map[string]struct{})}
}

func (d *sortedDistinct) dup(c *cursor) (bool, error) {
	m := d.m
	if m.ties {
		d.tie = d.tie[:0]
		for i, s := range m.sort {
			if c.keys[i].null {
				d.tie = append(d.tie, 0)
			} else {
				d.tie = appendValueKey(d.tie, s.t.kind, &c.keys[i].v)
			}
		}
		same := d.startedAt && string(d.tie) == string(d.last)
		d.startedAt = true
		if !same {
			d.last = append(d.last[:0], d.tie...)
			clear(d.seen)
		}
		if m.covers {
			return same, nil
		}
	}
	var err error
	if d.key, err = m.rowKey(d.key[:0], c.row, c.fs, m.visible, m.in); err != nil {
		return false, &SourceError{Source: c.idx, Err: err}
	}
	if _, ok := d.seen[string(d.key)]; ok {
		return true, nil
	}
	d.seen[string(d.key)] = struct{}{}
	return false, nil
}
