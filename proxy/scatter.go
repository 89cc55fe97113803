package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/shardwire/shardwire/gather"
	"github.com/shardwire/shardwire/router"
)

// multiStmt is a statement whose route spans several shards, and what the
// session knows of it.
type multiStmt struct {
	route router.Route
	sql   string
	cmd   router.Command
	read  bool
	hints router.Hints
	// Extended protocol: the Parse's parameter types (int16 count + OIDs)
	// and the Bind after the statement name (formats, values, result
	// formats); nil for a simple Query.
	paramTypes []byte
	bind       []byte
	params     router.Params
	portal     string
	describe   bool // the client asked to Describe the portal
}

// canFanOut reports why a multi-shard statement cannot run now ("" if it
// can): it must start and end outside a transaction block on a pooled
// session. A read may also run in a pipeline whose earlier statements hold
// a connection in an implicit transaction (several Executes before one
// Sync, as pgx batches send): their answers go first (settle), then the
// read runs on its own connections.
func (s *session) canFanOut(read bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.txnMode:
		return "in pool_mode: session"
	case s.pinned != "":
		return "on a session pinned to one server connection (" + s.pinned + ")"
	case len(s.deferred) > 0 || len(s.txLegs) > 0 || (s.txStatus != 'I' && s.txStatus != 0):
		return "inside a transaction block"
	case s.server != nil && !read:
		return "in a pipeline with other statements (an implicit transaction)"
	}
	return ""
}

// multiRefusal is the error for a statement that spans shards and cannot
// run across them.
func multiRefusal(r router.Route, why string) error {
	what := "the statement"
	if r.Table != "" {
		what = "the statement on " + r.Table
	}
	return &clientError{code: codeFeatureNotSupported, msg: fmt.Sprintf(
		"shardwire: %s needs shards %s: %s", what, strings.Join(r.Shards, ", "), why)}
}

// runMulti runs a statement that spans shards and answers the client. For
// a simple Query (m.bind == nil) it ends with ReadyForQuery; in the
// extended protocol the client's Sync does.
func (s *session) runMulti(m *multiStmt) error {
	r := m.route
	if why := s.canFanOut(m.read && !r.Replicated); why != "" {
		return multiRefusal(r, "cross-shard statements "+why+" are not supported yet; run it outside the transaction, or on each shard with /* shardwire: shard=NAME */")
	}
	if s.attached() {
		if err := s.settle(); err != nil {
			return err
		}
	}
	write := !m.read
	switch {
	case r.Replicated:
		return s.runEverywhere(m, false)
	case write && m.cmd == router.CmdInsert:
		parts, err := s.srv.analyzer.SplitInsert(m.sql, m.params, s.srv.ShardMap(), s.routeOptionsWith(m.hints))
		if err != nil {
			return routeErr(err)
		}
		return s.runInsertParts(m, parts)
	case write && (m.cmd == router.CmdUpdate || m.cmd == router.CmdDelete):
		if s.srv.config().Routing.CrossShardWrites != "allow" {
			return multiRefusal(r, "writes across shards are refused (routing.cross_shard_writes: refuse); add the key to the WHERE clause, or set routing.cross_shard_writes: allow")
		}
		return s.runEverywhere(m, true)
	}
	// Everything else must be a SELECT the planner can merge; it names
	// what it refuses (EXPLAIN, SELECT INTO, FOR UPDATE, …).
	sc, err := s.srv.analyzer.PlanScatter(m.sql, s.srv.ShardMap())
	if err != nil {
		return routeErr(err)
	}
	if write {
		return multiRefusal(r, "a statement that writes (it calls a function that is not read-only) cannot run across shards")
	}
	return s.runScatter(m, sc)
}

// routeErr turns a router error into the client's error.
func routeErr(err error) error {
	var re *router.RouteError
	if errors.As(err, &re) {
		return &clientError{code: re.Code, msg: re.Msg}
	}
	return err
}

// statementMsgs returns the messages that run sql on a server: a Query, or
// for the extended protocol the unnamed Parse, Bind, Describe, Execute and
// Sync (a Describe always, since the merge needs the columns).
func (m *multiStmt) statementMsgs(sql string, bind []byte) []byte {
	if m.bind == nil {
		return appendQuery(nil, sql)
	}
	buf, start := beginFrame(nil, 'P')
	buf = append(buf, 0)
	buf = append(buf, sql...)
	buf = append(buf, 0)
	buf = append(buf, m.paramTypes...)
	buf = finishFrame(buf, start)
	buf, start = beginFrame(buf, 'B')
	buf = append(buf, 0, 0) // unnamed portal and statement
	buf = append(buf, bind...)
	buf = finishFrame(buf, start)
	buf = append(buf, 'D', 0, 0, 0, 6, 'P', 0)
	buf = append(buf, 'E', 0, 0, 0, 9, 0, 0, 0, 0, 0)
	buf = append(buf, 'S', 0, 0, 0, 4)
	return buf
}

// finishMulti ends a fanout's answer: the error (if any) or the
// CommandComplete, then ReadyForQuery for a simple Query. Connections go
// back to their pools.
func (s *session) finishMulti(f *fanout, m *multiStmt, tag string, failure error) error {
	f.drain()
	defer f.release()
	if failure == nil {
		if l, err := f.lostErr(); err != nil {
			failure = l.lostError(err)
		}
	}
	var errBody []byte
	if failure == nil {
		errBody = f.failed()
	}
	switch {
	case failure != nil:
		ce := asClientError(failure)
		if ce == nil {
			ce = &clientError{code: codeInternalError, msg: failure.Error()}
		}
		s.srv.metrics.Error(ce.code)
		f.out = appendError(f.out, "ERROR", ce.code, ce.msg)
	case errBody != nil:
		code, _ := errorFields(errBody)
		s.srv.metrics.Error(code)
		f.out = appendFrame(f.out, 'E', downgradeFatal(errBody))
	default:
		f.out = appendFrame(f.out, 'C', append([]byte(tag), 0))
	}
	if m.bind == nil {
		f.out = appendReady(f.out, 'I')
	} else if failure != nil || errBody != nil {
		s.clientSkip = true
	}
	return f.flush()
}

// runScatter runs a read on every shard of its route and merges the rows.
func (s *session) runScatter(m *multiStmt, sc router.Scatter) error {
	limit, offset, err := scatterLimits(sc.Plan, m.params)
	if err != nil {
		return err
	}
	bind := m.bind
	if bind != nil && sc.Plan.Hidden > 0 {
		if bind, err = widenResultFormats(bind, sc.Plan.Hidden); err != nil {
			return err
		}
	}
	f, err := s.acquireFanout(m.route.Shards, true)
	if err != nil {
		return err
	}
	msgs := m.statementMsgs(sc.SQL, bind)
	f.send(func(int) []byte { return msgs })
	desc, err := f.head()
	if err != nil || f.failed() != nil {
		return s.finishMulti(f, m, "", nil)
	}
	if desc == nil {
		// No rows to merge (no RowDescription): add up the tags.
		if m.describe {
			f.out = append(f.out, 'n', 0, 0, 0, 4)
		}
		return s.finishMulti(f, m, sumLegTags(f), nil)
	}
	var rd pgproto3.RowDescription
	if err := rd.Decode(desc); err != nil {
		return s.finishMulti(f, m, "", &clientError{code: codeProtocolViolation, msg: "malformed RowDescription from a server: " + err.Error()})
	}
	cols := make([]gather.Column, len(rd.Fields))
	for i, fd := range rd.Fields {
		cols[i] = gather.Column{Name: string(fd.Name), TableOID: fd.TableOID, TableAttributeNumber: fd.TableAttributeNumber,
			TypeOID: fd.DataTypeOID, TypeSize: fd.DataTypeSize, TypeModifier: fd.TypeModifier, Format: fd.Format}
	}
	merger, err := gather.NewMerger(sc.Plan, cols)
	if err != nil {
		return s.finishMulti(f, m, "", mergeErr(err))
	}
	if m.bind == nil || m.describe {
		f.out = gather.AppendRowDescription(f.out, merger.ClientColumns())
	}
	sources := make([]gather.Source, len(f.legs))
	for i, l := range f.legs {
		sources[i] = source{f: f, l: l}
	}
	var clientGone error
	n, err := merger.Run(context.Background(), sources, limit, offset, func(row []byte) error {
		if err := f.emit('D', row); err != nil {
			clientGone = err
			return err
		}
		return nil
	})
	if clientGone != nil {
		f.discard(errClientGone)
		return errClientGone
	}
	if err != nil && !errors.Is(err, errLegFailed) {
		if _, lost := f.lostErr(); lost == nil {
			return s.finishMulti(f, m, "", mergeErr(err))
		}
	}
	return s.finishMulti(f, m, "SELECT "+strconv.FormatInt(n, 10), nil)
}

// mergeErr turns a gather error into the client's error.
func mergeErr(err error) error {
	var ue *gather.UnsupportedError
	if errors.As(err, &ue) {
		return &clientError{code: codeFeatureNotSupported, msg: "shardwire: merging results across shards: " + ue.Error()}
	}
	var se interface{ SQLState() string }
	if errors.As(err, &se) {
		return &clientError{code: se.SQLState(), msg: err.Error()}
	}
	return &clientError{code: codeInternalError, msg: "shardwire: merging results across shards: " + err.Error()}
}

// runEverywhere runs a write on every shard of its route: a replicated
// table's (sum false: every shard reports the same rows, the first one's
// answer is the client's) or one without a usable key (sum: the row counts
// add up, RETURNING rows are concatenated). Each shard commits on its own:
// if one fails, the others have still committed, and the error says so.
func (s *session) runEverywhere(m *multiStmt, sum bool) error {
	f, err := s.acquireFanout(m.route.Shards, false)
	if err != nil {
		return err
	}
	msgs := m.statementMsgs(m.sql, m.bind)
	f.send(func(int) []byte { return msgs })
	desc, err := f.head()
	if err == nil && desc == nil && f.failed() == nil && m.describe {
		f.out = append(f.out, 'n', 0, 0, 0, 4) // NoData: no RETURNING
	}
	if err == nil && desc != nil && f.failed() == nil {
		if m.bind == nil || m.describe {
			f.out = appendFrame(f.out, 'T', desc)
		}
		for i, l := range f.legs {
			if i > 0 && !sum {
				break
			}
			src := source{f: f, l: l}
			for {
				row, err := src.Next()
				if err != nil {
					break
				}
				if err := f.emit('D', row); err != nil {
					f.discard(errClientGone)
					return errClientGone
				}
			}
		}
	}
	f.drain()
	if errBody, partial := f.partialFailure("the statement failed on some shards but committed on %s"); errBody != nil {
		return s.finishMulti(f, m, "", partial)
	}
	tag := ""
	if len(f.legs) > 0 {
		tag = string(f.legs[0].tag)
	}
	if sum {
		tag = sumLegTags(f)
	}
	return s.finishMulti(f, m, tag, nil)
}

func codeOf(errBody []byte) string {
	code, _ := errorFields(errBody)
	return code
}

func sumLegTags(f *fanout) string {
	tags := make([][]byte, 0, len(f.legs))
	for _, l := range f.legs {
		tags = append(tags, l.tag)
	}
	return sumTags(tags)
}

// scatterLimits resolves the plan's LIMIT and OFFSET, taking them from
// the bind parameters where the statement has $n.
func scatterLimits(p gather.Plan, params router.Params) (limit, offset int64, err error) {
	limit, offset = p.Limit, p.Offset
	if p.LimitParam > 0 {
		null := false
		if limit, null, err = intParam(params, p.LimitParam); err != nil {
			return 0, 0, err
		}
		if null {
			limit = -1
		} else if limit < 0 {
			return 0, 0, &clientError{code: "2201W", msg: "LIMIT must not be negative"}
		}
	}
	if p.OffsetParam > 0 {
		null := false
		if offset, null, err = intParam(params, p.OffsetParam); err != nil {
			return 0, 0, err
		}
		if null {
			offset = 0
		} else if offset < 0 {
			return 0, 0, &clientError{code: "2201X", msg: "OFFSET must not be negative"}
		}
	}
	return limit, offset, nil
}

// intParam reads an integer bind parameter ($n); null reports NULL.
func intParam(params router.Params, n int) (v int64, null bool, err error) {
	if params == nil {
		return 0, false, &clientError{code: codeProtocolViolation, msg: fmt.Sprintf("no value for parameter $%d", n)}
	}
	b, bin, _, ok := params.Param(n)
	if !ok {
		return 0, false, &clientError{code: codeProtocolViolation, msg: fmt.Sprintf("no value for parameter $%d", n)}
	}
	if b == nil {
		return 0, true, nil
	}
	if bin {
		switch len(b) {
		case 2:
			return int64(int16(binary.BigEndian.Uint16(b))), false, nil
		case 4:
			return int64(int32(binary.BigEndian.Uint32(b))), false, nil
		case 8:
			return int64(binary.BigEndian.Uint64(b)), false, nil
		}
		return 0, false, &clientError{code: "22P03", msg: fmt.Sprintf("incorrect binary data format in bind parameter %d", n)}
	}
	i, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, false, &clientError{code: "22P02", msg: fmt.Sprintf("invalid input syntax for type bigint: %q", b)}
	}
	return i, false, nil
}

// bindResultFormats returns the result-format part of a Bind body (after
// the statement name): int16 count and the codes.
func bindResultFormats(bind []byte) ([]byte, error) {
	bad := &clientError{fatal: true, code: codeProtocolViolation, msg: "malformed Bind message"}
	b := bind
	if len(b) < 2 {
		return nil, bad
	}
	nf := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+2*nf+2 {
		return nil, bad
	}
	b = b[2+2*nf:]
	nv := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	for i := 0; i < nv; i++ {
		if len(b) < 4 {
			return nil, bad
		}
		n := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if n > 0 {
			if n > len(b) {
				return nil, bad
			}
			b = b[n:]
		}
	}
	if len(b) < 2 || len(b) < 2+2*int(binary.BigEndian.Uint16(b)) {
		return nil, bad
	}
	return b, nil
}

// widenResultFormats adds text result format codes for the hidden columns
// a scatter appends, when the Bind gives one code per column.
func widenResultFormats(bind []byte, hidden int) ([]byte, error) {
	b, err := bindResultFormats(bind)
	if err != nil {
		return nil, err
	}
	nr := int(binary.BigEndian.Uint16(b))
	if nr <= 1 {
		return bind, nil // all text, or one code for all columns
	}
	out := make([]byte, 0, len(bind)+2*hidden)
	out = append(out, bind[:len(bind)-len(b)]...)
	out = binary.BigEndian.AppendUint16(out, uint16(nr+hidden))
	out = append(out, b[2:2+2*nr]...)
	for i := 0; i < hidden; i++ {
		out = append(out, 0, 0)
	}
	return out, nil
}
