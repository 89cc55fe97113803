package proxy

import (
	"fmt"
	"strings"

	"github.com/shardwire/shardwire/router"
)

// copyIn is a COPY … FROM STDIN whose rows are split between shards: one
// COPY per shard, each row sent to the shard its key names.
type copyIn struct {
	f      *fanout
	split  *router.CopySplitter
	legs   map[string]*leg
	binary bool
	fed    map[string]bool // shards that got data
	failed bool            // an error was reported; data is ignored until CopyDone/CopyFail
}

// binaryCopyHeader is the header of a binary COPY stream with no flags
// and no extension: what a shard that gets no rows still needs.
var binaryCopyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// splitCopy reports whether a simple Query is a COPY FROM STDIN that must
// be split between shards (a sharded or replicated table), and starts it.
func (s *session) splitCopy(sql string, hints router.Hints) (bool, error) {
	m := s.srv.ShardMap()
	plan, err := s.srv.analyzer.PlanCopyIn(sql, m)
	if err != nil {
		return false, nil // not a COPY FROM STDIN that splits: route it as usual
	}
	t, listed := m.Table(plan.Table)
	if !listed {
		return false, nil
	}
	route := router.Route{Shards: t.Shards(), Table: plan.Table}
	if why := s.canFanOut(false); why != "" {
		return true, multiRefusal(route, "a COPY split between shards "+why+" is not supported yet")
	}
	if plan.NeedsColumns() {
		cols, err := s.tableColumns(t.Shards()[0], plan.Table)
		if err != nil {
			return true, err
		}
		if err := plan.SetColumns(cols); err != nil {
			return true, routeErr(err)
		}
	}
	split := plan.NewSplitter(s.routeOptionsWith(hints))
	f, err := s.acquireFanout(t.Shards(), false)
	if err != nil {
		return true, err
	}
	msg := appendQuery(nil, plan.ShardSQL())
	f.send(func(int) []byte { return msg })
	resp := f.awaitCopy('G')
	if _, lost := f.lostErr(); lost != nil || f.failed() != nil {
		// Shards that started their COPY end it; everyone is drained.
		for _, l := range f.legs {
			if !l.ready && l.lost == nil {
				_, _ = l.c.Write(appendCopyFail(nil, "COPY could not start on every shard"))
			}
		}
		m := &multiStmt{route: route}
		return true, s.finishMulti(f, m, "", nil)
	}
	ci := &copyIn{f: f, split: split, legs: map[string]*leg{}, binary: plan.Format == router.CopyBinary, fed: map[string]bool{}}
	for _, l := range f.legs {
		ci.legs[l.shard] = l
	}
	s.copyIn = ci
	f.out = appendFrame(f.out, 'G', resp)
	return true, f.flush()
}

// tableColumns returns a table's column order from a shard.
func (s *session) tableColumns(shard, table string) ([]string, error) {
	f, err := s.acquireFanout([]string{shard}, true)
	if err != nil {
		return nil, err
	}
	q := "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = " + quoteLiteral(table) +
		"::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
	msg := appendQuery(nil, q)
	f.send(func(int) []byte { return msg })
	var cols []string
	l := f.legs[0]
	for {
		typ, body, err := f.next(l)
		if err != nil || typ == 'Z' {
			break
		}
		if typ == 'D' && len(body) > 6 {
			cols = append(cols, string(body[6:]))
		}
	}
	f.drain()
	defer f.release()
	if errBody := f.failed(); errBody != nil {
		_, msg := errorFields(errBody)
		return nil, &clientError{code: codeOf(errBody), msg: msg}
	}
	if _, err := f.lostErr(); err != nil {
		return nil, &clientError{code: codeConnectionFailure, msg: fmt.Sprintf("reading the columns of %s: %v", table, err)}
	}
	return cols, nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func appendCopyFail(dst []byte, why string) []byte {
	return appendFrame(dst, 'f', append([]byte(why), 0))
}

// copyMessage handles the client's COPY data, CopyDone or CopyFail while
// a split COPY runs.
func (s *session) copyMessage(typ byte, body []byte) error {
	ci := s.copyIn
	emit := func(shard string, rows []byte) error {
		l := ci.legs[shard]
		if l == nil {
			return &clientError{code: codeInternalError, msg: "shardwire: COPY row for shard " + shard + ", which has no COPY running"}
		}
		if l.lost != nil {
			return l.lostError(l.lost)
		}
		ci.fed[shard] = true
		if _, err := l.c.Write(appendFrame(nil, 'd', rows)); err != nil {
			l.lost = err
			return l.lostError(err)
		}
		return nil
	}
	switch typ {
	case 'd':
		if ci.failed {
			return nil
		}
		if err := ci.split.Write(body, emit); err != nil {
			return s.failCopy(err)
		}
		return nil
	case 'c':
		if ci.failed {
			return s.endCopy(false)
		}
		if err := ci.split.Close(emit); err != nil {
			if ferr := s.failCopy(err); ferr != nil {
				return ferr
			}
			return s.endCopy(false)
		}
		for _, l := range ci.f.legs {
			var done []byte
			if ci.binary && !ci.fed[l.shard] {
				done = appendFrame(done, 'd', binaryCopyHeader)
			}
			done = appendFrame(done, 'c', nil)
			if l.lost == nil {
				if _, err := l.c.Write(done); err != nil {
					l.lost = err
				}
			}
		}
		return s.endCopy(true)
	case 'f':
		why, _, _ := cstring(body)
		if !ci.failed {
			for _, l := range ci.f.legs {
				if l.lost == nil {
					_, _ = l.c.Write(appendCopyFail(nil, string(why)))
				}
			}
		}
		return s.endCopy(false)
	}
	return nil
}

// failCopy aborts the shards' COPYs after a bad row and reports it; the
// client's further data is ignored until its CopyDone or CopyFail.
func (s *session) failCopy(err error) error {
	ci := s.copyIn
	ci.failed = true
	ce := asClientError(routeErr(err))
	if ce == nil {
		ce = &clientError{code: codeInternalError, msg: err.Error()}
	}
	for _, l := range ci.f.legs {
		if l.lost == nil {
			_, _ = l.c.Write(appendCopyFail(nil, "shardwire: "+ce.msg))
		}
	}
	ci.f.drain()
	s.srv.metrics.Error(ce.code)
	ci.f.out = appendError(ci.f.out, "ERROR", ce.code, ce.msg)
	return ci.f.flush()
}

// endCopy reads every shard's outcome and answers the client: the summed
// COPY count (when the client ended with CopyDone and every shard
// succeeded), or the error, then ReadyForQuery.
func (s *session) endCopy(copyDone bool) error {
	ci := s.copyIn
	s.copyIn = nil
	f := ci.f
	m := &multiStmt{}
	if ci.failed {
		f.drain()
		f.release()
		f.out = appendReady(f.out, 'I')
		return f.flush()
	}
	f.drain()
	if copyDone {
		if errBody, partial := f.partialFailure("the rows for shards %s were copied and committed"); errBody != nil {
			return s.finishMulti(f, m, "", partial)
		}
		return s.finishMulti(f, m, sumLegTags(f), nil)
	}
	return s.finishMulti(f, m, "", nil)
}
