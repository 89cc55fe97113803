package router

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/shardwire/shardwire/shardmap"
)

// This file splits the rows of COPY table FROM STDIN between shards. The
// row reader follows PostgreSQL 15's (copyfromparse.c: CopyReadLineText,
// CopyReadAttributesText, CopyReadAttributesCSV), so that a row ends
// exactly where the server's would: the newline style is fixed by the
// first line, text format escapes with backslashes (a backslash before a
// newline makes it data), CSV newlines inside quotes are data, and \. ends
// the data (in text format after any unescaped backslash, in CSV alone on
// a line).

// CopyFormat is the data format of a COPY.
type CopyFormat uint8

// COPY formats.
const (
	CopyText CopyFormat = iota
	CopyCSV
	CopyBinary
)

func (f CopyFormat) String() string {
	switch f {
	case CopyText:
		return "text"
	case CopyCSV:
		return "csv"
	case CopyBinary:
		return "binary"
	}
	return "CopyFormat(?)"
}

// SQLSTATE codes of COPY splitting errors besides the RouteError ones.
const (
	CodeBadCopyFormat = "22P04" // bad_copy_file_format: a malformed row
	CodeProgramLimit  = "54000" // a row longer than MaxCopyRow
)

// MaxCopyRow bounds the bytes of one COPY row the splitter holds while it
// waits for the row's end (rows normally end within a CopyData message;
// PostgreSQL's own limit is 1 GiB).
const MaxCopyRow = 256 << 20

// copyFlushBytes is how many bytes of rows a shard's buffer collects
// before it is emitted.
const copyFlushBytes = 64 << 10

type copyMode uint8

const (
	copyByKey      copyMode = iota // a sharded table: each row by its key
	copyDefault                    // an unsharded table: every row to the default shard
	copyReplicated                 // a replicated table: every row to every shard
)

// CopyPlan says how the rows of a COPY table FROM STDIN are split. Its
// exported fields describe the statement; treat them as read-only.
type CopyPlan struct {
	Table     string // canonical name, as shardmap.Map.Table takes it
	Key       string // the key column ("" for unsharded and replicated tables)
	Format    CopyFormat
	Delimiter byte   // text and CSV
	Null      string // the NULL marker
	Quote     byte   // CSV
	Escape    byte   // CSV
	// Header: the first line is a header (HEADER or HEADER MATCH; text and
	// CSV). The splitter sends it to every shard ahead of its first row,
	// so each shard skips (or, with MATCH, checks) it as the client meant.
	Header bool
	// Default is the DEFAULT marker (PostgreSQL 16+), if HasDefault.
	Default    string
	HasDefault bool

	sql    string
	maxRow int // MaxCopyRow; tests lower it
	a      *Analyzer
	m      *shardmap.Map
	t      *shardmap.Table
	mode   copyMode
	cols   []string
	listed bool // the statement lists its columns
	keyIdx int
	// FORCE_NOT_NULL and FORCE_NULL (CSV): column names, or all.
	forceNotNull, forceNull       []string
	forceNotNullAll, forceNullAll bool
}

// PlanCopyIn reads a COPY … FROM STDIN statement and plans how its rows
// are split on map m. Refused (*RouteError): anything but COPY table
// [(cols)] FROM STDIN (COPY TO, FROM a file or program), options the
// server would reject or the splitter does not understand, an ENCODING
// other than UTF8, and a column list without the key column (0A000: the
// rows would get the column's default, which cannot be placed).
//
// A COPY of a sharded table without a column list needs the table's
// column order: NeedsColumns reports it, and the caller supplies it with
// SetColumns (e.g. from pg_attribute on the server); until then a
// splitter refuses the data.
func (a *Analyzer) PlanCopyIn(sql string, m *shardmap.Map) (*CopyPlan, error) {
	if m == nil {
		return nil, &RouteError{Code: CodeInternal, Msg: "shardwire: PlanCopyIn without a shard map"}
	}
	if an := a.Classify(sql); an.unroutable != "" {
		return nil, copyError("", CodeFeatureNotSupported, "cannot analyse the COPY statement: "+an.unroutable)
	}
	res, err := pg_query.Parse(sql)
	if err != nil {
		return nil, &RouteError{Code: CodeSyntaxError, Msg: "shardwire: cannot parse the COPY statement: " + err.Error(), Err: err}
	}
	if len(res.Stmts) != 1 {
		return nil, copyError("", CodeFeatureNotSupported, "a COPY to split must be the only statement of its query")
	}
	c := res.Stmts[0].Stmt.GetCopyStmt()
	switch {
	case c == nil:
		return nil, copyError("", CodeFeatureNotSupported, "not a COPY statement")
	case !c.IsFrom:
		return nil, copyError("", CodeFeatureNotSupported, "COPY … TO is not split: run it on every shard and concatenate")
	case c.Relation == nil:
		return nil, copyError("", CodeFeatureNotSupported, "COPY FROM needs a table")
	case c.IsProgram || c.Filename != "":
		return nil, copyError("", CodeFeatureNotSupported, "COPY FROM a file or program reads the server's disk and cannot be split; use FROM STDIN")
	}
	p := &CopyPlan{sql: sql, maxRow: MaxCopyRow, a: a, m: m, keyIdx: -1, Table: canonicalName(c.Relation.Schemaname, c.Relation.Relname)}
	t, listed := m.Table(p.Table)
	switch {
	case !listed:
		p.mode = copyDefault
	case t.Replicated():
		p.mode, p.t = copyReplicated, t
	default:
		p.mode, p.t, p.Key = copyByKey, t, t.Key()
	}
	for _, n := range c.Attlist {
		name := ""
		switch {
		case n.GetString_() != nil:
			name = n.GetString_().Sval
		case n.GetResTarget() != nil:
			name = n.GetResTarget().Name
		}
		if name == "" {
			return nil, copyError(p.Table, CodeFeatureNotSupported, "unreadable COPY column list")
		}
		p.cols = append(p.cols, name)
	}
	p.listed = len(p.cols) > 0
	if err := p.options(c.Options); err != nil {
		return nil, err
	}
	if p.listed {
		if err := p.setKeyIndex(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func copyError(table, code, msg string) *RouteError {
	return &RouteError{Code: code, Table: table, Msg: "shardwire: " + msg}
}

// options reads the COPY options, with the server's defaults and the
// checks that matter to the splitter (ProcessCopyOptions).
func (p *CopyPlan) options(opts []*pg_query.Node) error {
	seen := map[string]bool{}
	var delim, null, quote, escape, dflt *string
	bad := func(code, format string, args ...any) error {
		return copyError(p.Table, code, fmt.Sprintf(format, args...))
	}
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil {
			return bad(CodeFeatureNotSupported, "unreadable COPY option")
		}
		name := d.Defname
		if seen[name] {
			return bad(CodeSyntaxError, "conflicting or redundant options: %s", name)
		}
		seen[name] = true
		s, _ := defString(d)
		switch name {
		case "format":
			switch strings.ToLower(s) {
			case "text":
				p.Format = CopyText
			case "csv":
				p.Format = CopyCSV
			case "binary":
				p.Format = CopyBinary
			default:
				return bad(CodeInvalidParameter, "COPY format %q not recognized", s)
			}
		case "delimiter":
			delim = &s
		case "null":
			null = &s
		case "default":
			dflt = &s
		case "quote":
			quote = &s
		case "escape":
			escape = &s
		case "header":
			if d.Arg != nil && strings.EqualFold(s, "match") {
				p.Header = true
				break
			}
			v, ok := defBool(d)
			if !ok {
				return bad(CodeInvalidParameter, "header requires a Boolean value or \"match\"")
			}
			p.Header = v
		case "force_not_null", "force_null":
			cols, all, ok := defColumns(d)
			if !ok {
				return bad(CodeInvalidParameter, "argument to option %q must be a list of column names", name)
			}
			if name == "force_not_null" {
				p.forceNotNull, p.forceNotNullAll = cols, all
			} else {
				p.forceNull, p.forceNullAll = cols, all
			}
		case "encoding":
			switch strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(s, "-", ""), "_", "")) {
			case "utf8", "unicode":
			default:
				return bad(CodeFeatureNotSupported, "COPY ENCODING %q: shardwire splits UTF8 data only (key values must read as the server reads them)", s)
			}
		case "freeze", "force_quote", "on_error", "log_verbosity", "reject_limit":
			// No effect on how rows are read; the server checks them.
		default:
			return bad(CodeFeatureNotSupported, "COPY option %q is not supported by shardwire", name)
		}
	}
	csv := p.Format == CopyCSV
	if p.Format == CopyBinary {
		for _, o := range []string{"delimiter", "null", "default", "header", "quote", "escape", "force_not_null", "force_null"} {
			if seen[o] {
				return bad(CodeSyntaxError, "cannot specify %s in BINARY mode", strings.ToUpper(o))
			}
		}
		return nil
	}
	p.Delimiter, p.Null = '\t', `\N`
	if csv {
		p.Delimiter, p.Null, p.Quote = ',', "", '"'
	}
	if delim != nil {
		if len(*delim) != 1 {
			return bad(CodeFeatureNotSupported, "COPY delimiter must be a single one-byte character")
		}
		p.Delimiter = (*delim)[0]
	}
	if null != nil {
		p.Null = *null
	}
	if dflt != nil {
		p.Default, p.HasDefault = *dflt, true
	}
	if !csv && (quote != nil || escape != nil || seen["force_not_null"] || seen["force_null"]) {
		return bad(CodeFeatureNotSupported, "COPY QUOTE, ESCAPE, FORCE_NOT_NULL and FORCE_NULL are available only in CSV mode")
	}
	if quote != nil {
		if len(*quote) != 1 {
			return bad(CodeFeatureNotSupported, "COPY quote must be a single one-byte character")
		}
		p.Quote = (*quote)[0]
	}
	p.Escape = p.Quote
	if escape != nil {
		if len(*escape) != 1 {
			return bad(CodeFeatureNotSupported, "COPY escape must be a single one-byte character")
		}
		p.Escape = (*escape)[0]
	}
	switch {
	case p.Delimiter == '\r' || p.Delimiter == '\n':
		return bad(CodeInvalidParameter, "COPY delimiter cannot be newline or carriage return")
	case strings.ContainsAny(p.Null, "\r\n"):
		return bad(CodeInvalidParameter, "COPY null representation cannot use newline or carriage return")
	case p.HasDefault && strings.ContainsAny(p.Default, "\r\n"):
		return bad(CodeInvalidParameter, "COPY default representation cannot use newline or carriage return")
	case !csv && strings.IndexByte(`\.abcdefghijklmnopqrstuvwxyz0123456789`, p.Delimiter) >= 0:
		return bad(CodeInvalidParameter, "COPY delimiter cannot be %q", string(p.Delimiter))
	case csv && p.Delimiter == p.Quote:
		return bad(CodeInvalidParameter, "COPY delimiter and quote must be different")
	case strings.IndexByte(p.Null, p.Delimiter) >= 0:
		return bad(CodeInvalidParameter, "COPY delimiter character must not appear in the NULL specification")
	case csv && strings.IndexByte(p.Null, p.Quote) >= 0:
		return bad(CodeInvalidParameter, "CSV quote character must not appear in the NULL specification")
	}
	return nil
}

// defString is an option's argument as text.
func defString(d *pg_query.DefElem) (string, bool) {
	if d.Arg == nil {
		return "", false
	}
	switch x := d.Arg.Node.(type) {
	case *pg_query.Node_String_:
		return x.String_.Sval, true
	case *pg_query.Node_Integer:
		return strconv.Itoa(int(x.Integer.Ival)), true
	case *pg_query.Node_Float:
		return x.Float.Fval, true
	case *pg_query.Node_Boolean:
		return strconv.FormatBool(x.Boolean.Boolval), true
	}
	return "", false
}

// defBool reads a Boolean option as PostgreSQL's defGetBoolean does: no
// argument is true; 0, 1 and the words parse_bool accepts.
func defBool(d *pg_query.DefElem) (bool, bool) {
	if d.Arg == nil {
		return true, true
	}
	switch x := d.Arg.Node.(type) {
	case *pg_query.Node_Boolean:
		return x.Boolean.Boolval, true
	case *pg_query.Node_Integer:
		switch x.Integer.Ival {
		case 0:
			return false, true
		case 1:
			return true, true
		}
		return false, false
	}
	s, ok := defString(d)
	if !ok {
		return false, false
	}
	return parseBool(s)
}

// defColumns reads a FORCE_NOT_NULL or FORCE_NULL list: column names, or *.
func defColumns(d *pg_query.DefElem) ([]string, bool, bool) {
	if d.Arg == nil {
		return nil, false, false
	}
	if d.Arg.GetAStar() != nil {
		return nil, true, true
	}
	l := d.Arg.GetList()
	if l == nil {
		return nil, false, false
	}
	var cols []string
	for _, it := range l.Items {
		s := it.GetString_()
		if s == nil {
			return nil, false, false
		}
		cols = append(cols, s.Sval)
	}
	return cols, false, true
}

// SetColumns supplies the column order of a COPY without a column list:
// the table's columns as PostgreSQL takes them (pg_attribute by attnum,
// without dropped and generated columns), names as stored. Call it
// before NewSplitter. It is an error if the statement lists its own
// columns or the key is not among cols.
func (p *CopyPlan) SetColumns(cols []string) error {
	if p.listed {
		return &RouteError{Code: CodeInternal, Table: p.Table, Msg: "shardwire: the COPY statement lists its own columns"}
	}
	p.cols = append([]string(nil), cols...)
	return p.setKeyIndex()
}

func (p *CopyPlan) setKeyIndex() error {
	p.keyIdx = -1
	if p.mode != copyByKey {
		return nil
	}
	for i, c := range p.cols {
		if c == p.Key {
			p.keyIdx = i
			return nil
		}
	}
	what := "the COPY column list does not name"
	if !p.listed {
		what = "the columns given do not include"
	}
	return copyError(p.Table, CodeFeatureNotSupported, fmt.Sprintf(
		"COPY into sharded table %q: %s its key column %s, so the rows cannot be placed", p.Table, what, p.Key))
}

// Columns returns the column list (the statement's, or SetColumns'), nil
// if unknown. The caller must not modify it.
func (p *CopyPlan) Columns() []string { return p.cols }

// KeyIndex is the position of the key column among the row's fields, or
// -1 for a table without a key (unsharded, replicated) or while the
// columns are unknown.
func (p *CopyPlan) KeyIndex() int { return p.keyIdx }

// NeedsColumns reports whether the plan waits for SetColumns: a sharded
// table copied without a column list.
func (p *CopyPlan) NeedsColumns() bool { return p.mode == copyByKey && p.keyIdx < 0 }

// ShardSQL is the statement to start on each shard that gets rows: the
// client's own, since every shard's data starts with the client's header
// (HEADER line or binary signature) and the rows keep their format.
func (p *CopyPlan) ShardSQL() string { return p.sql }

func (p *CopyPlan) noColumnsError() error {
	return copyError(p.Table, CodeFeatureNotSupported, fmt.Sprintf(
		"COPY into sharded table %q without a column list: the position of its key column %s is unknown; list the columns (COPY %s (…, %s, …) FROM STDIN)",
		p.Table, p.Key, p.Table, p.Key))
}

// --- splitting ------------------------------------------------------------

// eolType is the newline style of the data, fixed by its first line.
type eolType uint8

const (
	eolUnknown eolType = iota
	eolNL
	eolCR
	eolCRNL
)

// lineState is where the line reader is within special sequences.
type lineState uint8

const (
	lsNormal    lineState = iota
	lsBackslash           // after \ (text), or \ first on a line (CSV)
	lsDot                 // after \.
	lsDotCR               // after \.\r (CRNL data)
	lsCR                  // after a line-ending \r, before knowing if \n follows
)

// scanResult is how far a scan got.
type scanResult uint8

const (
	scanMore   scanResult = iota // the row continues past the data
	scanRow                      // a complete row
	scanMarker                   // the end-of-copy marker (text and CSV) or trailer (binary)
)

// binPhase is where the binary reader is in a tuple.
type binPhase uint8

const (
	binHeader binPhase = iota
	binCount
	binLen
	binData
)

// binarySignature starts every binary COPY stream.
const binarySignature = "PGCOPY\n\xff\r\n\x00"

// CopySplitter splits the data of one COPY FROM STDIN between shards. It
// is not safe for concurrent use.
type CopySplitter struct {
	p    *CopyPlan
	rc   routeCtx
	err  error // sticky
	emit func(shard string, rows []byte) error

	fixed  int   // the rank every row goes to, or -1
	bcast  []int // replicated: the ranks every row goes to
	outs   []shardOut
	header []byte // sent to each shard ahead of its first row
	line   int    // lines (tuples) read
	done   bool   // the end marker or trailer was read
	closed bool
	carry  []byte // the start of a row that continues in the next Write
	val    []byte // scratch for a de-escaped key
	// rowHook, for tests, sees each row and the first shard (rank) it goes to.
	rowHook func(rank int, row []byte)

	// The text and CSV line reader.
	csv                        bool
	class                      [256]bool // bytes the reader must look at
	quote, esc                 byte
	hasEsc                     bool
	eol                        eolType
	ls                         lineState
	inQuote, lastWasEsc, first bool
	inHeader                   bool
	bsAt                       int  // row offset of the \ of \.
	markerEOL                  byte // the byte that ended \.
	rowEOL                     int  // bytes of the last row's line ending
	binPh                      binPhase
	binInt                     [4]byte
	binIntN                    int
	binNeed                    int // data bytes left in the field
	binFields, binField        int
	binKeyOff, binKeyLen       int
	binKeyNull, binKeySeen     bool
	binHeaderNeed              int
}

type shardOut struct {
	buf     []byte
	started bool
}

// NewSplitter returns a splitter of the plan's data for a session with
// opt: its time zone for timestamptz keys, and the hints and settings
// that Route also obeys, in the same order (a shard hint or setting sends
// every row to that shard; a key hint or setting places every row of a
// sharded table by that key).
func (p *CopyPlan) NewSplitter(opt RouteOptions) *CopySplitter {
	mi := p.a.index(p.m)
	s := &CopySplitter{p: p, rc: routeCtx{mi: mi, loc: opt.Loc}, fixed: -1, first: true,
		outs: make([]shardOut, len(mi.names)), csv: p.Format == CopyCSV}
	s.inHeader = p.Header && p.Format != CopyBinary
	s.quote, s.esc = p.Quote, p.Escape
	s.hasEsc = s.csv && s.esc != s.quote
	s.class['\r'], s.class['\n'] = true, true
	if s.csv {
		s.class[s.quote] = true
		if s.hasEsc {
			s.class[s.esc] = true
		}
	} else {
		s.class['\\'] = true
	}
	switch p.mode {
	case copyDefault:
		s.fixed = mi.def
	case copyReplicated:
		for _, n := range p.t.Shards() {
			if r := mi.rankOf(n); r >= 0 {
				s.bcast = append(s.bcast, r)
			}
		}
	}
	h := opt.Hints
	switch {
	case h.Err != nil:
		s.err = &RouteError{Code: CodeInvalidParameter, Msg: "shardwire: " + h.Err.Error(), Err: h.Err}
	case h.Shard != "":
		s.fixShard(h.Shard, "hint shard=")
	case h.HasKey:
		s.fixKey(h.Key)
	case opt.Shard != "":
		s.fixShard(opt.Shard, "shardwire.shard = ")
	case opt.HasKey:
		s.fixKey(opt.Key)
	}
	if s.err == nil && s.fixed < 0 && p.mode == copyByKey && p.keyIdx < 0 {
		s.err = p.noColumnsError()
	}
	return s
}

func (s *CopySplitter) fixShard(name, what string) {
	r, err := s.rc.mi.shardRoute(name, 0, what)
	if err != nil {
		s.err = err
		return
	}
	s.fixed, s.bcast = s.rc.mi.rankOf(r.Shards[0]), nil
}

func (s *CopySplitter) fixKey(key string) {
	if s.p.mode != copyByKey {
		return // unsharded and replicated tables keep their rules
	}
	var set shardSet
	if _, err := s.rc.addText(&set, s.p.t, key, true); err != nil {
		s.err = err
		return
	}
	s.fixed = set.first()
}

// Write takes the payload of a CopyData message. Rows may span payloads
// and a payload may hold many rows. Each complete row is buffered for its
// shard, and a shard's buffer is passed to emit when it holds 64 KiB:
// rows whole, in input order per shard, byte for byte as the client sent
// them, the first emit to each shard starting with the header. rows is
// only valid during the call. After the text end marker \. (or the binary
// trailer) the rest of the data is ignored (binary: refused), as the
// server does.
//
// Errors are *RouteError values naming the line: 22P04 for a malformed
// row, 0A000 for a NULL or DEFAULT key, the shardmap.ValueError code for
// a key its type cannot read, 23514 for a key no shard holds, and emit's
// own error as is. After an error the splitter refuses everything.
func (s *CopySplitter) Write(data []byte, emit func(shard string, rows []byte) error) error {
	if s.err != nil {
		return s.err
	}
	if s.closed {
		return &RouteError{Code: CodeInternal, Table: s.p.Table, Msg: "shardwire: COPY splitter written after Close"}
	}
	s.emit = emit
	err := s.write(data)
	s.emit = nil
	if err != nil {
		s.err = err
	}
	return err
}

// Flush emits every buffered row.
func (s *CopySplitter) Flush(emit func(shard string, rows []byte) error) error {
	if s.err != nil {
		return s.err
	}
	s.emit = emit
	err := s.flush()
	s.emit = nil
	if err != nil {
		s.err = err
	}
	return err
}

// Close ends the data (the client's CopyDone): a last text or CSV line
// without a line ending is a row, as for the server; a binary stream cut
// inside a tuple or header, a CSV quoted field open at the end and a text
// "\." without a line ending are errors. Then every buffered row is
// emitted. A shard that got no emit needs no COPY (or an empty one, for
// text and CSV).
func (s *CopySplitter) Close(emit func(shard string, rows []byte) error) error {
	if s.err != nil {
		return s.err
	}
	if s.closed {
		return nil
	}
	s.closed = true
	s.emit = emit
	err := s.close()
	if err == nil {
		err = s.flush()
	}
	s.emit = nil
	if err != nil {
		s.err = err
	}
	return err
}

func (s *CopySplitter) close() error {
	if s.done {
		return nil
	}
	if s.p.Format == CopyBinary {
		switch {
		case s.binPh == binHeader:
			return s.formatError("COPY file signature not recognized")
		case s.binPh != binCount || s.binIntN > 0:
			return s.formatError("unexpected EOF in COPY data")
		}
		return nil
	}
	res, err := s.endOfData()
	if err != nil || res == scanMore {
		return err
	}
	return s.finishLine(s.carry, res)
}

func (s *CopySplitter) flush() error {
	for r := range s.outs {
		if err := s.emitOut(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *CopySplitter) emitOut(r int) error {
	o := &s.outs[r]
	if len(o.buf) == 0 {
		return nil
	}
	if s.emit == nil {
		return &RouteError{Code: CodeInternal, Table: s.p.Table, Msg: "shardwire: COPY splitter without an emit function"}
	}
	err := s.emit(s.rc.mi.names[r], o.buf)
	o.buf = o.buf[:0]
	return err
}

func (s *CopySplitter) formatError(msg string) error {
	return s.lineError(CodeBadCopyFormat, msg, nil)
}

func (s *CopySplitter) lineError(code, msg string, cause error) error {
	return &RouteError{Code: code, Table: s.p.Table, Err: cause,
		Msg: fmt.Sprintf("shardwire: COPY %s, line %d: %s", s.p.Table, s.line+1, msg)}
}

func (s *CopySplitter) write(data []byte) error {
	i := 0
	if s.p.Format == CopyBinary && s.binPh == binHeader {
		var err error
		if i, err = s.binaryHeader(data); err != nil || s.binPh == binHeader {
			return err
		}
	}
	for i < len(data) {
		if s.done {
			if s.p.Format == CopyBinary {
				return s.formatError("received copy data after EOF marker")
			}
			return nil // the server ignores what follows \.
		}
		rowStart := i
		var end int
		var res scanResult
		var err error
		if s.p.Format == CopyBinary {
			end, res, err = s.scanTuple(data, i, rowStart)
		} else {
			end, res, err = s.scanLine(data, i, rowStart)
		}
		if err != nil {
			return err
		}
		if res == scanMore {
			if len(s.carry)+len(data)-rowStart > s.p.maxRow {
				return s.lineError(CodeProgramLimit, fmt.Sprintf("row longer than %d bytes", s.p.maxRow), nil)
			}
			s.carry = append(s.carry, data[rowStart:]...)
			return nil
		}
		row := data[rowStart:end]
		if len(s.carry) > 0 {
			s.carry = append(s.carry, row...)
			row = s.carry
		}
		if s.p.Format == CopyBinary {
			err = s.finishTuple(row, res)
		} else {
			err = s.finishLine(row, res)
		}
		if err != nil {
			return err
		}
		if cap(s.carry) > 1<<20 {
			s.carry = nil // do not keep a huge row's buffer
		}
		s.carry = s.carry[:0]
		i = end
	}
	return nil
}

// off is the offset in the current row of data[i], when the row's bytes
// in data start at rowStart.
func (s *CopySplitter) off(i, rowStart int) int { return len(s.carry) + i - rowStart }

// action is what a byte means to the line reader.
type action uint8

const (
	actNone action = iota
	actCR
	actNL
	actBackslash
)

// classify updates the CSV quote state for byte c and says what c means.
func (s *CopySplitter) classify(c byte) action {
	if !s.csv {
		switch c {
		case '\r':
			return actCR
		case '\n':
			return actNL
		case '\\':
			return actBackslash
		}
		return actNone
	}
	if s.inQuote && s.hasEsc && c == s.esc {
		s.lastWasEsc = !s.lastWasEsc
	}
	if c == s.quote && !s.lastWasEsc {
		s.inQuote = !s.inQuote
	}
	if !s.hasEsc || c != s.esc {
		s.lastWasEsc = false
	}
	first := s.first
	s.first = false
	switch {
	case c == '\r' && !s.inQuote:
		return actCR
	case c == '\n' && !s.inQuote:
		return actNL
	case c == '\\' && first:
		return actBackslash
	}
	return actNone
}

func (s *CopySplitter) crError() error {
	if s.csv {
		return s.formatError("unquoted carriage return found in data (use a quoted CSV field to represent carriage return)")
	}
	return s.formatError(`literal carriage return found in data (use "\r" to represent carriage return)`)
}

func (s *CopySplitter) nlError() error {
	if s.csv {
		return s.formatError("unquoted newline found in data (use a quoted CSV field to represent newline)")
	}
	return s.formatError(`literal newline found in data (use "\n" to represent newline)`)
}

// scanLine reads the current line from data[i:]; rowStart is where its
// bytes in data begin. It returns the end of the row (after its line
// ending), or scanMore, or scanMarker for the end-of-copy marker.
func (s *CopySplitter) scanLine(data []byte, i, rowStart int) (int, scanResult, error) {
	for i < len(data) {
		switch s.ls {
		case lsNormal:
			if !s.first || !s.csv {
				j := i
				for j < len(data) && !s.class[data[j]] {
					j++
				}
				if j > i {
					s.lastWasEsc = false
					i = j
					if i == len(data) {
						return i, scanMore, nil
					}
				}
			}
			switch s.classify(data[i]) {
			case actNone:
				i++
			case actCR:
				switch s.eol {
				case eolNL:
					return 0, 0, s.crError()
				case eolCR:
					s.rowEOL = 1
					return i + 1, scanRow, nil
				}
				s.ls = lsCR
				i++
			case actNL:
				if s.eol == eolCR || s.eol == eolCRNL {
					return 0, 0, s.nlError()
				}
				s.eol, s.rowEOL = eolNL, 1
				return i + 1, scanRow, nil
			case actBackslash:
				s.bsAt = s.off(i, rowStart)
				s.ls = lsBackslash
				i++
			}
		case lsBackslash:
			if data[i] == '.' {
				s.ls = lsDot
				i++
				continue
			}
			s.ls = lsNormal
			if !s.csv {
				i++ // text: the escaped byte is data, even a newline
			}
		case lsDot:
			c := data[i]
			if s.eol == eolCRNL {
				switch {
				case c == '\r':
					s.ls = lsDotCR
					i++
				case !s.csv && c == '\n':
					return 0, 0, s.formatError("end-of-copy marker does not match previous newline style")
				case !s.csv:
					return 0, 0, s.formatError("end-of-copy marker corrupt")
				default:
					s.notMarker(false)
				}
				continue
			}
			if c != '\r' && c != '\n' {
				if !s.csv {
					return 0, 0, s.formatError("end-of-copy marker corrupt")
				}
				s.notMarker(false)
				continue
			}
			if (s.eol == eolNL && c != '\n') || (s.eol == eolCR && c != '\r') {
				return 0, 0, s.formatError("end-of-copy marker does not match previous newline style")
			}
			s.markerEOL = c
			return i + 1, scanMarker, nil
		case lsDotCR:
			c := data[i]
			if c != '\r' && c != '\n' {
				if !s.csv {
					return 0, 0, s.formatError("end-of-copy marker corrupt")
				}
				s.notMarker(true)
				continue
			}
			if c != '\n' {
				return 0, 0, s.formatError("end-of-copy marker does not match previous newline style")
			}
			return i + 1, scanMarker, nil
		case lsCR:
			s.ls = lsNormal
			if data[i] == '\n' {
				s.eol, s.rowEOL = eolCRNL, 2
				return i + 1, scanRow, nil
			}
			if s.eol == eolCRNL {
				return 0, 0, s.crError()
			}
			s.eol, s.rowEOL = eolCR, 1
			return i, scanRow, nil
		}
	}
	return i, scanMore, nil
}

// notMarker handles a CSV line starting with \. that is data after all:
// the bytes after the backslash are read again as ordinary bytes.
func (s *CopySplitter) notMarker(cr bool) {
	s.ls = lsNormal
	s.classify('.')
	if cr && s.classify('\r') == actCR {
		s.ls = lsCR // the data is CRNL: \r must be followed by \n
	}
}

// endOfData ends the line in progress at the end of the data, as the
// server's reader does at EOF.
func (s *CopySplitter) endOfData() (scanResult, error) {
	for {
		switch s.ls {
		case lsDot, lsDotCR:
			if !s.csv {
				return 0, s.formatError("end-of-copy marker corrupt")
			}
			s.notMarker(s.ls == lsDotCR)
			continue
		case lsCR:
			s.ls = lsNormal
			if s.eol == eolCRNL {
				return 0, s.crError()
			}
			s.eol, s.rowEOL = eolCR, 1
			return scanRow, nil
		}
		break
	}
	s.ls = lsNormal
	if len(s.carry) == 0 {
		return scanMore, nil
	}
	if s.csv && s.inQuote && !s.inHeader {
		// The server reads the header line without splitting it.
		return 0, s.formatError("unterminated CSV quoted field")
	}
	s.rowEOL = 0
	return scanRow, nil
}

// finishLine places a complete line (row with its line ending) or, for
// scanMarker, the line the marker ends.
func (s *CopySplitter) finishLine(row []byte, res scanResult) error {
	content := len(row) - s.rowEOL
	if res == scanMarker {
		s.done = true
		content = s.bsAt
		if s.csv || content == 0 {
			s.line++
			return nil
		}
		// Text: "abc\." ends the data after the row "abc".
		eol := []byte{s.markerEOL}
		switch s.eol {
		case eolNL:
			eol = []byte{'\n'}
		case eolCR:
			eol = []byte{'\r'}
		case eolCRNL:
			eol = []byte{'\r', '\n'}
		}
		row = append(row[:content:content], eol...)
	}
	s.first, s.inQuote, s.lastWasEsc = true, false, false
	if s.inHeader {
		s.inHeader = false
		s.header = append(s.header[:0], row...)
		s.line++
		return nil
	}
	err := s.route(row, func() ([]byte, error) { return s.textKey(row[:content]) })
	s.line++
	return err
}

// route sends a row to its shards; key reads the row's key value.
func (s *CopySplitter) route(row []byte, key func() ([]byte, error)) error {
	if s.fixed >= 0 {
		if s.rowHook != nil {
			s.rowHook(s.fixed, row)
		}
		return s.add(s.fixed, row)
	}
	if s.bcast != nil {
		if s.rowHook != nil && len(s.bcast) > 0 {
			s.rowHook(s.bcast[0], row)
		}
		for _, r := range s.bcast {
			if err := s.add(r, row); err != nil {
				return err
			}
		}
		return nil
	}
	v, err := key()
	if err != nil {
		return err
	}
	r, err := s.place(v)
	if err != nil {
		return err
	}
	if s.rowHook != nil {
		s.rowHook(r, row)
	}
	return s.add(r, row)
}

func (s *CopySplitter) add(r int, row []byte) error {
	o := &s.outs[r]
	if !o.started {
		o.started = true
		o.buf = append(o.buf, s.header...)
	}
	o.buf = append(o.buf, row...)
	if len(o.buf) >= copyFlushBytes {
		return s.emitOut(r)
	}
	return nil
}

// place locates a text key value as Route locates a literal of the key.
func (s *CopySplitter) place(v []byte) (int, error) {
	var set shardSet
	var err error
	if s.p.Format == CopyBinary {
		shard, lerr := s.p.t.LocateBinary(shardmap.OIDUnspecified, v)
		_, err = s.rc.addShard(&set, s.p.t, shard, lerr, true)
	} else {
		_, err = s.rc.addText(&set, s.p.t, bytesString(v), true)
	}
	if err != nil {
		code := CodeInternal
		msg := err.Error()
		var re *RouteError
		if errors.As(err, &re) {
			code, msg = re.Code, strings.TrimPrefix(re.Msg, "shardwire: ")
		}
		return 0, s.lineError(code, msg, err)
	}
	r := set.first()
	if r < 0 {
		return 0, s.lineError(CodeInternal, "the key matched no shard", nil)
	}
	return r, nil
}

func (s *CopySplitter) nullKey() error {
	return s.lineError(CodeFeatureNotSupported, fmt.Sprintf(
		"null key: the key column %s of sharded table %q needs a value in every row", s.p.Key, s.p.Table), nil)
}

// textKey reads the key field of a text or CSV line (without its line
// ending) as the server's attribute reader would.
func (s *CopySplitter) textKey(line []byte) ([]byte, error) {
	p := s.p
	if s.csv {
		val, raw, quoted, ok, err := csvField(s.val[:0], line, p.keyIdx, p.Delimiter, p.Quote, p.Escape)
		if err != nil {
			return nil, s.formatError(err.Error())
		}
		if !ok {
			return nil, s.formatError(fmt.Sprintf("missing data for column %q", p.Key))
		}
		s.val = val[:0]
		null := !quoted && string(raw) == p.Null
		switch {
		case null && (p.forceNotNullAll || contains(p.forceNotNull, p.Key)):
			null, val = false, append(val[:0], p.Null...)
		case !null && (p.forceNullAll || contains(p.forceNull, p.Key)) && string(val) == p.Null:
			null = true
		}
		if null {
			return nil, s.nullKey()
		}
		if p.HasDefault && !quoted && string(raw) == p.Default {
			return nil, s.defaultKey()
		}
		return val, nil
	}
	raw, ok := textField(line, p.keyIdx, p.Delimiter)
	if !ok {
		return nil, s.formatError(fmt.Sprintf("missing data for column %q", p.Key))
	}
	if string(raw) == p.Null {
		return nil, s.nullKey()
	}
	if p.HasDefault && string(raw) == p.Default {
		return nil, s.defaultKey()
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw, nil
	}
	val, nonASCII := unescapeText(s.val[:0], raw)
	s.val = val[:0]
	if nonASCII && !utf8.Valid(val) {
		return nil, s.lineError(shardmap.CodeBadByteSequence, fmt.Sprintf(
			"invalid byte sequence for encoding \"UTF8\" in key column %s", p.Key), nil)
	}
	return val, nil
}

func (s *CopySplitter) defaultKey() error {
	return s.lineError(CodeFeatureNotSupported, fmt.Sprintf(
		"the key column %s of sharded table %q is given as DEFAULT, which the router cannot place", s.p.Key, s.p.Table), nil)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// textField returns the raw bytes of field k of a text-format line, as
// CopyReadAttributesText delimits it (a backslash escapes the next byte;
// octal and \x escapes take their digits), and false if the line has
// fewer fields.
func textField(line []byte, k int, delim byte) ([]byte, bool) {
	field, start := 0, 0
	i := 0
	for i < len(line) {
		c := line[i]
		switch {
		case c == delim:
			if field == k {
				return line[start:i], true
			}
			field++
			i++
			start = i
			continue
		case c == '\\':
			if i+1 >= len(line) {
				// A lone backslash at the end is dropped.
				if field == k {
					return line[start:i], true
				}
				return nil, false
			}
			i += 2
			switch c2 := line[i-1]; {
			case c2 >= '0' && c2 <= '7':
				for n := 0; n < 2 && i < len(line) && line[i] >= '0' && line[i] <= '7'; n++ {
					i++
				}
			case c2 == 'x':
				for n := 0; n < 2 && i < len(line) && isHexDigit(line[i]); n++ {
					i++
				}
			}
			continue
		}
		i++
	}
	if field == k {
		return line[start:], true
	}
	return nil, false
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexValue(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// unescapeText de-escapes a text-format field into dst, and reports
// whether an escape produced a NUL or non-ASCII byte (which the server
// then checks against the encoding).
func unescapeText(dst, raw []byte) ([]byte, bool) {
	nonASCII := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			if c != '\\' {
				dst = append(dst, c)
			}
			continue
		}
		i++
		c = raw[i]
		switch {
		case c >= '0' && c <= '7':
			v := c - '0'
			for n := 0; n < 2 && i+1 < len(raw) && raw[i+1] >= '0' && raw[i+1] <= '7'; n++ {
				i++
				v = v<<3 + raw[i] - '0'
			}
			c = v
			nonASCII = nonASCII || c == 0 || c >= 0x80
		case c == 'x':
			if i+1 < len(raw) && isHexDigit(raw[i+1]) {
				i++
				v := hexValue(raw[i])
				if i+1 < len(raw) && isHexDigit(raw[i+1]) {
					i++
					v = v<<4 + hexValue(raw[i])
				}
				c = v
				nonASCII = nonASCII || c == 0 || c >= 0x80
			}
		case c == 'b':
			c = '\b'
		case c == 'f':
			c = '\f'
		case c == 'n':
			c = '\n'
		case c == 'r':
			c = '\r'
		case c == 't':
			c = '\t'
		case c == 'v':
			c = '\v'
		}
		dst = append(dst, c)
	}
	return dst, nonASCII
}

// csvField reads field k of a CSV line (without its line ending) as
// CopyReadAttributesCSV does: its value (into dst), its raw bytes for the
// NULL comparison, and whether it had a quote; ok is false if the line
// has fewer fields.
func csvField(dst, line []byte, k int, delim, quote, esc byte) (val, raw []byte, quoted, ok bool, err error) {
	i := 0
	for field := 0; ; field++ {
		start, end := i, i
		sawQuote, foundDelim := false, false
		out := dst[:0]
		keep := field == k
	scan:
		for {
			for { // not in quotes
				end = i
				if i >= len(line) {
					break scan
				}
				c := line[i]
				i++
				if c == delim {
					foundDelim = true
					break scan
				}
				if c == quote {
					sawQuote = true
					break
				}
				if keep {
					out = append(out, c)
				}
			}
			for { // in quotes
				end = i
				if i >= len(line) {
					return nil, nil, false, false, errors.New("unterminated CSV quoted field")
				}
				c := line[i]
				i++
				if c == esc && i < len(line) && (line[i] == esc || line[i] == quote) {
					if keep {
						out = append(out, line[i])
					}
					i++
					continue
				}
				if c == quote {
					break
				}
				if keep {
					out = append(out, c)
				}
			}
		}
		if keep {
			return out, line[start:end], sawQuote, true, nil
		}
		if !foundDelim {
			return nil, nil, false, false, nil
		}
	}
}

// --- binary format --------------------------------------------------------

// binaryHeader reads the signature, flags and header extension into
// s.header and returns the offset after what it used.
func (s *CopySplitter) binaryHeader(data []byte) (int, error) {
	const fixed = len(binarySignature) + 8
	i := 0
	for i < len(data) && s.binPh == binHeader {
		if len(s.header) < fixed {
			n := min(fixed-len(s.header), len(data)-i)
			s.header = append(s.header, data[i:i+n]...)
			i += n
			if len(s.header) < fixed {
				break
			}
			if string(s.header[:len(binarySignature)]) != binarySignature {
				return 0, s.formatError("COPY file signature not recognized")
			}
			flags := binary.BigEndian.Uint32(s.header[11:])
			if flags&(1<<16) != 0 {
				return 0, s.formatError("invalid COPY file header (WITH OIDS)")
			}
			if flags>>17 != 0 {
				return 0, s.formatError("unrecognized critical flags in COPY file header")
			}
			ext := int32(binary.BigEndian.Uint32(s.header[15:]))
			if ext < 0 || ext > MaxCopyRow {
				return 0, s.formatError("invalid COPY file header (wrong length)")
			}
			s.binHeaderNeed = int(ext)
		}
		n := min(s.binHeaderNeed, len(data)-i)
		s.header = append(s.header, data[i:i+n]...)
		s.binHeaderNeed -= n
		i += n
		if s.binHeaderNeed == 0 {
			s.binPh = binCount
		}
	}
	return i, nil
}

// readInt collects an n-byte big-endian integer across calls; ok is false
// until it is complete.
func (s *CopySplitter) readInt(data []byte, i *int, n int) (int32, bool) {
	for s.binIntN < n && *i < len(data) {
		s.binInt[s.binIntN] = data[*i]
		s.binIntN++
		*i++
	}
	if s.binIntN < n {
		return 0, false
	}
	s.binIntN = 0
	if n == 2 {
		return int32(int16(binary.BigEndian.Uint16(s.binInt[:]))), true
	}
	return int32(binary.BigEndian.Uint32(s.binInt[:])), true
}

// scanTuple reads a binary tuple: a field count, then per field a length
// (-1 for NULL) and its bytes. A count of -1 is the trailer.
func (s *CopySplitter) scanTuple(data []byte, i, rowStart int) (int, scanResult, error) {
	for i < len(data) {
		switch s.binPh {
		case binCount:
			n, ok := s.readInt(data, &i, 2)
			if !ok {
				return i, scanMore, nil
			}
			if n == -1 {
				return i, scanMarker, nil
			}
			if cols := len(s.p.cols); (cols > 0 && int(n) != cols) || n < 0 {
				return 0, 0, s.formatError(fmt.Sprintf("row field count is %d, expected %d", n, cols))
			}
			s.binFields, s.binField, s.binKeySeen, s.binKeyNull = int(n), 0, false, false
			if n == 0 {
				return i, scanRow, nil
			}
			s.binPh = binLen
		case binLen:
			n, ok := s.readInt(data, &i, 4)
			if !ok {
				return i, scanMore, nil
			}
			if n < -1 {
				return 0, 0, s.formatError("invalid field size")
			}
			if s.binField == s.p.keyIdx {
				s.binKeySeen, s.binKeyNull = true, n == -1
				s.binKeyOff, s.binKeyLen = s.off(i, rowStart), int(max(n, 0))
			}
			if n <= 0 {
				if s.nextField() {
					return i, scanRow, nil
				}
				continue
			}
			s.binNeed, s.binPh = int(n), binData
		case binData:
			n := min(s.binNeed, len(data)-i)
			i += n
			s.binNeed -= n
			if s.binNeed == 0 && s.nextField() {
				return i, scanRow, nil
			}
		}
	}
	return i, scanMore, nil
}

// nextField moves past a field and reports whether the tuple is complete.
func (s *CopySplitter) nextField() bool {
	s.binField++
	if s.binField == s.binFields {
		s.binPh = binCount
		return true
	}
	s.binPh = binLen
	return false
}

func (s *CopySplitter) finishTuple(row []byte, res scanResult) error {
	if res == scanMarker {
		s.done = true
		return nil
	}
	err := s.route(row, func() ([]byte, error) {
		switch {
		case !s.binKeySeen:
			return nil, s.formatError(fmt.Sprintf("missing data for column %q", s.p.Key))
		case s.binKeyNull:
			return nil, s.nullKey()
		}
		return row[s.binKeyOff : s.binKeyOff+s.binKeyLen], nil
	})
	s.line++
	return err
}
