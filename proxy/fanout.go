package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/shardwire/shardwire/pool"
)

// A fanout runs one statement on several shards at once, outside any
// transaction block: one server connection per shard (a leg), borrowed for
// the statement and given back when every leg has reached ReadyForQuery.
// It runs on the client goroutine with no connection attached to the
// session, so the session's own slot queue is not involved; the merged
// answer goes to the client through the session's output buffer.
type fanout struct {
	s    *session
	legs []*leg
	out  []byte // bytes for the client not yet handed to the session
}

// leg is one shard's server connection in a fanout.
type leg struct {
	shard string
	c     *pool.Conn
	p     *pool.Pool
	fr    frameReader
	// skip counts our own state-sync queries whose replies are swallowed.
	skip   int
	tag    []byte // the CommandComplete tag
	err    []byte // the first ErrorResponse body
	ready  bool   // ReadyForQuery read
	status byte   // its transaction status
	lost   error  // the connection broke
	writer bool
}

// errLegFailed is what a leg's Source returns once the server reported an
// error for the statement; the error itself is in leg.err.
var errLegFailed = errors.New("a shard reported an error")

// acquireFanout borrows a connection on every shard; read allows replicas.
// On error nothing is held.
func (s *session) acquireFanout(shards []string, read bool) (*fanout, error) {
	f := &fanout{s: s}
	for _, shard := range shards {
		l, err := s.borrowLeg(shard, read)
		if err != nil {
			f.release()
			return nil, err
		}
		f.legs = append(f.legs, l)
	}
	s.mu.Lock()
	s.fan = f
	s.mu.Unlock()
	return f, nil
}

// borrowLeg borrows a connection to run on shard, as lockAttached would
// for a single-shard statement (replica choice, failover waits).
func (s *session) borrowLeg(shard string, read bool) (*leg, error) {
	s.srv.gate(shard).waitUnpaused()
	timeout := s.srv.config().Pool.AcquireTimeout
	req := routeRequest{read: read, shard: shard}
	var skip string
	for attempt := 0; ; attempt++ {
		p, isWriter, err := s.chooseNodeExcept(shard, req, skip)
		if err != nil {
			return nil, err
		}
		c, ok := p.TryBorrow()
		if !ok {
			c, err = p.BorrowUntil(context.Background(), time.Now().Add(timeout))
		}
		if err != nil && !isWriter && attempt == 0 && !errors.Is(err, pool.ErrTimeout) {
			skip = p.Addr()
			continue
		}
		if err != nil {
			if errors.Is(err, pool.ErrTimeout) {
				return nil, &clientError{code: codeTooManyConnections, msg: fmt.Sprintf(
					"no server connection to %s came free within pool.acquire_timeout (%s)", p.Addr(), timeout)}
			}
			return nil, &clientError{code: codeConnectionFailure, msg: fmt.Sprintf("could not get a server connection to shard %s: %v", shard, err)}
		}
		c.Prepared.SetMax(s.srv.config().Pool.PreparedStatementsCache)
		s.srv.gate(shard).active.Add(1)
		return &leg{shard: shard, c: c, p: p, writer: isWriter, fr: frameReader{r: c.Reader, max: 1 << 30}}, nil
	}
}

// send writes msgs to every leg, after the query that gives a connection
// the client's session state where it lacks it. msgs returns the messages
// for leg i.
func (f *fanout) send(msgs func(i int) []byte) {
	for i, l := range f.legs {
		var buf []byte
		if l.c.StateFingerprint != f.s.params.fp {
			buf = appendQuery(buf, f.s.params.applySQL())
			l.c.StateFingerprint = f.s.params.fp
			l.skip++
		}
		buf = append(buf, msgs(i)...)
		if _, err := l.c.Write(buf); err != nil {
			l.lost = err
		}
	}
}

// next returns the leg's next message for the statement, swallowing the
// replies to our own queries, ParameterStatus, and notices (passed on).
func (f *fanout) next(l *leg) (byte, []byte, error) {
	if l.lost != nil {
		return 0, nil, l.lost
	}
	for {
		typ, body, err := l.fr.next()
		if err != nil {
			l.lost = err
			return 0, nil, err
		}
		switch typ {
		case 'S':
			continue
		case 'N':
			if l.skip == 0 {
				if code, _ := errorFields(body); code != codeAdminShutdown {
					f.out = appendFrame(f.out, typ, body)
				}
			}
			continue
		case 'A':
			continue // nobody LISTENs on a pooled connection
		}
		if l.skip > 0 {
			switch typ {
			case 'E':
				_, msg := errorFields(body)
				l.lost = fmt.Errorf("could not apply session state on a server connection: %s", msg)
			case 'Z':
				l.skip--
			}
			continue
		}
		switch typ {
		case 'E':
			if l.err == nil {
				l.err = append([]byte(nil), body...)
			}
		case 'Z':
			l.ready = true
			if len(body) == 1 {
				l.status = body[0]
			}
		case 'C':
			tag, _, _ := cstring(body)
			l.tag = append(l.tag[:0], tag...)
		}
		return typ, body, nil
	}
}

// head reads each leg up to the start of its result: a RowDescription
// ('T'), NoData ('n'), a CommandComplete ('C'), an EmptyQueryResponse
// ('I'), an error ('E') or ReadyForQuery ('Z'). ParseComplete and
// BindComplete are consumed. It returns the first leg's RowDescription
// body (copied), if any.
func (f *fanout) head() (rowDesc []byte, err error) {
	for i, l := range f.legs {
		for {
			typ, body, err := f.next(l)
			if err != nil {
				return nil, err
			}
			if typ == '1' || typ == '2' || typ == 't' {
				continue
			}
			if typ == 'T' && i == 0 {
				rowDesc = append([]byte(nil), body...)
			}
			break
		}
	}
	return rowDesc, nil
}

// failed returns the first leg error reported by a server, if any.
func (f *fanout) failed() []byte {
	for _, l := range f.legs {
		if l.err != nil {
			return l.err
		}
	}
	return nil
}

// drain reads every leg up to its ReadyForQuery.
func (f *fanout) drain() {
	for _, l := range f.legs {
		for !l.ready && l.lost == nil {
			_, _, _ = f.next(l)
		}
	}
}

// lostErr returns the first broken connection, if any.
func (f *fanout) lostErr() (*leg, error) {
	for _, l := range f.legs {
		if l.lost != nil {
			return l, l.lost
		}
	}
	return nil, nil
}

// release gives every connection back: clean ones to their pool, others
// discarded (reporting a broken one to the health checker).
func (f *fanout) release() {
	f.s.mu.Lock()
	for f.s.cancelling > 0 {
		// A cancel request is on its way to these backends: keep them
		// until it is delivered, so it cannot hit another client's query.
		f.s.cond.Wait()
	}
	if f.s.fan == f {
		f.s.fan = nil
	}
	f.s.mu.Unlock()
	for _, l := range f.legs {
		f.s.srv.gate(l.shard).active.Add(-1)
		switch {
		case l.lost != nil:
			if ch := f.s.srv.health(); ch != nil && isConnectionError(l.lost) && !errors.Is(l.lost, errClientGone) && !errors.Is(l.lost, errStateUnknown) {
				ch.ReportFailure(l.c.Addr(), l.lost)
			}
			l.p.Discard(l.c)
		case l.ready && l.status == 'I':
			if l.writer {
				f.s.markWrite(l.shard)
			}
			l.p.Return(l.c)
		default:
			l.p.Discard(l.c)
		}
	}
	f.legs = nil
}

// flush hands what is pending to the client.
func (f *fanout) flush() error {
	if len(f.out) == 0 {
		return nil
	}
	f.s.mu.Lock()
	f.s.out = append(f.s.out, f.out...)
	f.s.mu.Unlock()
	f.out = f.out[:0]
	return f.s.flushClient()
}

// emit queues a message for the client, flushing when enough is pending.
func (f *fanout) emit(typ byte, body []byte) error {
	f.out = appendFrame(f.out, typ, body)
	if len(f.out) > 32<<10 {
		return f.flush()
	}
	return nil
}

// source is a gather.Source over one leg's DataRows.
type source struct {
	f *fanout
	l *leg
}

func (src source) Next() ([]byte, error) {
	for {
		typ, body, err := src.f.next(src.l)
		if err != nil {
			return nil, err
		}
		switch typ {
		case 'D':
			return body, nil
		case 'C', 'I', 's', 'Z':
			return nil, io.EOF
		case 'E':
			return nil, errLegFailed
		}
	}
}

// sumTags adds up the row counts of CommandComplete tags of one kind
// ("UPDATE 3" + "UPDATE 4" = "UPDATE 7"; INSERT keeps its 0 OID).
func sumTags(tags [][]byte) string {
	var total uint64
	prefix := ""
	for _, t := range tags {
		s := string(t)
		i := strings.LastIndexByte(s, ' ')
		if i < 0 {
			continue
		}
		n, err := strconv.ParseUint(s[i+1:], 10, 64)
		if err != nil {
			continue
		}
		total += n
		prefix = s[:i+1]
	}
	if prefix == "" && len(tags) > 0 {
		return string(tags[0])
	}
	return prefix + strconv.FormatUint(total, 10)
}

// partialFailure is the client's error when some legs of an autocommit
// write failed: the server's error, naming the shards where it committed
// all the same (what names those rows, e.g. "the rows for shards %s were
// copied and committed"). nil when no leg failed; the server's error as is
// when none committed.
func (f *fanout) partialFailure(what string) (errBody []byte, err error) {
	errBody = f.failed()
	if errBody == nil {
		return nil, nil
	}
	var ok []string
	for _, l := range f.legs {
		if l.err == nil && l.lost == nil {
			ok = append(ok, l.shard)
		}
	}
	if len(ok) == 0 {
		return errBody, nil
	}
	code, msg := errorFields(errBody)
	return errBody, &clientError{code: code, msg: msg + " (" + fmt.Sprintf(what, strings.Join(ok, ", ")) + ")"}
}

// awaitCopy reads every leg up to its CopyInResponse or CopyOutResponse
// (typ 'G' or 'H'), an error or ReadyForQuery, and returns the first
// leg's response body.
func (f *fanout) awaitCopy(typ byte) []byte {
	var resp []byte
	for _, l := range f.legs {
		for {
			t, body, err := f.next(l)
			if err != nil || t == 'E' || t == 'Z' {
				break
			}
			if t == typ {
				if resp == nil {
					resp = append([]byte(nil), body...)
				}
				break
			}
		}
	}
	return resp
}

// lostError is the client's error for a leg whose connection broke.
func (l *leg) lostError(err error) *clientError {
	return &clientError{code: codeConnectionFailure, msg: fmt.Sprintf(
		"server connection to %s (shard %s) was lost: %v", l.c.Addr(), l.shard, err)}
}

// discard closes every leg's connection instead of reading what the
// shards still send (the client left, or no connection's state is known):
// closing ends the backends' work.
func (f *fanout) discard(why error) {
	for _, l := range f.legs {
		if l.lost == nil {
			l.lost = why
		}
	}
	f.release()
}
