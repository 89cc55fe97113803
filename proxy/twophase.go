package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/pool"
	"github.com/shardwire/shardwire/router"
)

// A transaction block that moves to another shard keeps a server
// connection per shard: the one in use is the session's attached
// connection, the others are parked here. At COMMIT every one is prepared
// (PREPARE TRANSACTION), a decision record is written on the default
// shard's primary, and every one is committed (COMMIT PREPARED). A
// shardwire that dies in between leaves prepared transactions that any
// instance resolves by the record: committed if it says so, rolled back
// if there is none after routing.two_phase_recovery_after.

// decisionTable holds the commit decisions of cross-shard transactions,
// in the application database of the default shard's primary (not on the
// proxy's disk, which dies with its pod).
const decisionTable = "public.shardwire_2pc_decisions"

const createDecisionTable = "CREATE TABLE IF NOT EXISTS " + decisionTable +
	" (gid text PRIMARY KEY, decision text NOT NULL, decided_at timestamptz NOT NULL DEFAULT now())"

// txLeg is a parked connection of a cross-shard transaction.
type txLeg struct {
	shard  string
	c      *pool.Conn
	p      *pool.Pool
	writer bool
}

// newInstanceID names this process in the global ids of its prepared
// transactions.
func newInstanceID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// crossTxRefusal says why the attached transaction cannot move to another
// shard ("" if it can); mu is held.
func (s *session) crossTxRefusal() string {
	switch {
	case !s.txnMode || s.pinned != "":
		return "cross-shard transactions need pool_mode: transaction and a session not pinned to one server connection"
	case s.txStatus != 'T':
		return "cross-shard transactions are not supported outside a transaction block"
	case !s.queueEmpty():
		return "a statement for another shard must wait for the previous statement's answer in a cross-shard transaction (no pipelining across shards)"
	case !s.srv.config().Routing.TwoPhaseCommit && !s.txRO:
		return "cross-shard transactions that write need routing.two_phase_commit: true (or BEGIN READ ONLY)"
	}
	return ""
}

// stopRelayLocked stops the relay goroutine of the attached connection,
// which must have nothing in flight; mu is held and released meanwhile.
func (s *session) stopRelayLocked() {
	if !s.relayRunning {
		return
	}
	c := s.server
	s.parking = true
	_ = c.SetReadDeadline(time.Now())
	s.mu.Unlock()
	s.relay.Wait()
	s.mu.Lock()
	_ = c.SetReadDeadline(time.Time{})
	s.parking = false
	s.relayRunning = false
}

// parkLocked moves the attached connection to the transaction's parked
// legs; mu is held. Its shard stays counted as active for PAUSE.
func (s *session) parkLocked() {
	s.stopRelayLocked()
	s.txLegs = append(s.txLegs, &txLeg{shard: s.attachShard, c: s.server, p: s.pool, writer: s.attachWrite})
	s.server, s.pool = nil, nil
	s.unnamedOnServer = false
}

// unparkLocked attaches the parked connection of shard, if any; mu is held.
func (s *session) unparkLocked(shard string) bool {
	for i, l := range s.txLegs {
		if l.shard != shard {
			continue
		}
		s.txLegs = append(s.txLegs[:i], s.txLegs[i+1:]...)
		s.server, s.pool = l.c, l.p
		s.attachShard, s.attachWrite = l.shard, l.writer
		s.target = s.targetFor(l.shard, l.p, l.writer)
		s.srvFrames = frameReader{r: l.c.Reader, max: 1 << 30}
		s.unanswered = 0
		s.freshAttach = false
		s.unnamedOnServer = false
		return true
	}
	return false
}

// crossTxLegs detaches every connection of a cross-shard transaction,
// the attached one last, as fanout legs.
func (s *session) crossTxLegs() *fanout {
	s.mu.Lock()
	if s.server != nil {
		s.parkLocked()
	}
	legs := s.txLegs
	s.txLegs = nil
	s.mu.Unlock()
	f := &fanout{s: s}
	for _, l := range legs {
		f.legs = append(f.legs, &leg{shard: l.shard, c: l.c, p: l.p, writer: l.writer, fr: frameReader{r: l.c.Reader, max: 1 << 30}})
	}
	s.mu.Lock()
	s.fan = f
	s.mu.Unlock()
	return f
}

// runOnLegs sends each leg its statement and reads every answer to its
// ReadyForQuery; the legs are reusable afterwards.
func (f *fanout) runOnLegs(sql func(i int) string) {
	for _, l := range f.legs {
		l.ready, l.err, l.tag = false, nil, l.tag[:0]
	}
	f.send(func(i int) []byte { return appendQuery(nil, sql(i)) })
	f.drain()
}

// endCrossTx ends a transaction block that spans shards, at the client's
// COMMIT (commit) or ROLLBACK, and answers the simple Query.
func (s *session) endCrossTx(commit bool) error {
	if err := s.settle(); err != nil {
		return err
	}
	s.mu.Lock()
	failed := s.txStatus == 'E'
	ro := s.txRO
	s.mu.Unlock()
	f := s.crossTxLegs()
	var outcome error
	tag := "ROLLBACK"
	switch {
	case !commit || failed:
		f.runOnLegs(func(int) string { return "ROLLBACK" })
	case ro:
		f.runOnLegs(func(int) string { return "COMMIT" })
		tag = "COMMIT"
		if errBody := f.failed(); errBody != nil {
			outcome = &clientError{code: codeOf(errBody), msg: string(errBody)}
		}
	default:
		tag, outcome = s.commitPrepared(f)
	}
	s.mu.Lock()
	if len(s.txnEffects) > 0 || len(s.cycleEffects) > 0 {
		// A SET in the transaction ran on one leg only: no connection's
		// state is known for sure, so none goes back to the pool.
		for _, l := range f.legs {
			if l.lost == nil {
				l.lost = errStateUnknown
			}
		}
	}
	s.rolledBack = tag != "COMMIT"
	s.cycleFailed = false // the outcome is the tag's
	s.commitEffects('I')
	s.txStatus = 'I'
	s.deferred = nil
	s.mu.Unlock()
	f.release()
	if outcome != nil {
		ce := asClientError(outcome)
		s.srv.metrics.Error(ce.code)
		f.out = appendError(f.out, "ERROR", ce.code, ce.msg)
	} else {
		f.out = appendFrame(f.out, 'C', append([]byte(tag), 0))
	}
	f.out = appendReady(f.out, 'I')
	return f.flush()
}

// commitPrepared runs the two-phase commit over the legs and returns the
// client's tag, or the error if the transaction was rolled back.
func (s *session) commitPrepared(f *fanout) (string, error) {
	base := fmt.Sprintf("sw_%s_%d", s.srv.instance, s.srv.txSeq.Add(1))
	gid := func(i int) string { return base + "_" + strconv.Itoa(i) }
	s.srv.inflight.Store(base, true)
	defer s.srv.inflight.Delete(base)
	log := s.logger().With("gid", base)

	f.runOnLegs(func(i int) string { return "PREPARE TRANSACTION " + quoteLiteral(gid(i)) })
	prepared := make([]bool, len(f.legs))
	var cause error
	for i, l := range f.legs {
		switch {
		case l.lost != nil:
			cause = l.lostError(l.lost)
		case l.err != nil:
			code, msg := errorFields(l.err)
			cause = &clientError{code: code, msg: msg}
		case string(l.tag) == "PREPARE TRANSACTION":
			prepared[i] = true
		default: // "ROLLBACK": the transaction had failed
			cause = &clientError{code: "40000", msg: "the transaction on shard " + l.shard + " had already failed"}
		}
	}
	if cause == nil {
		failpoint("2pc-before-decision", log)
		cause = s.writeDecision(base)
	}
	if cause != nil {
		for i, l := range f.legs {
			if prepared[i] && l.lost == nil {
				if _, _, err := runSimple(l.c, "ROLLBACK PREPARED "+quoteLiteral(gid(i)), s.srv.config().Pool.AcquireTimeout); err != nil {
					l.lost = errStateUnknown // recovery rolls it back: there is no commit decision
				}
			}
		}
		log.Warn("2pc: cross-shard transaction rolled back", "err", cause)
		ce := asClientError(cause)
		return "", &clientError{code: ce.code, msg: "the cross-shard transaction was rolled back: " + ce.msg}
	}
	failpoint("2pc-after-decision", log)
	f.runOnLegs(func(i int) string { return "COMMIT PREPARED " + quoteLiteral(gid(i)) })
	done := true
	for _, l := range f.legs {
		if l.lost != nil || l.err != nil {
			done = false
			log.Warn("2pc: COMMIT PREPARED failed; recovery will finish it", "shard", l.shard)
		}
	}
	if done {
		s.forgetDecision(base)
	}
	log.Debug("2pc: committed", "shards", len(f.legs))
	return "COMMIT", nil
}

// writeDecision records the commit decision, durably, before the first
// COMMIT PREPARED. A recovering instance that decided to abort first
// holds the gid: then the insert fails and the transaction rolls back.
func (s *session) writeDecision(base string) error {
	c, p, err := s.decisionConn()
	if err != nil {
		return err
	}
	_, _, err = runSimple(c, createDecisionTable+"; INSERT INTO "+decisionTable+" (gid, decision) VALUES ("+quoteLiteral(base)+", 'commit')", s.srv.config().Pool.ConnectTimeout*4)
	finishSimple(p, c, err)
	if err != nil {
		return &clientError{code: "40000", msg: "could not record the commit decision: " + err.Error()}
	}
	return nil
}

// forgetDecision deletes a decision once every shard has committed.
func (s *session) forgetDecision(base string) {
	c, p, err := s.decisionConn()
	if err != nil {
		return
	}
	_, _, err = runSimple(c, "DELETE FROM "+decisionTable+" WHERE gid = "+quoteLiteral(base), s.srv.config().Pool.ConnectTimeout*4)
	finishSimple(p, c, err)
}

// decisionConn borrows a connection to the default shard's writer.
func (s *session) decisionConn() (*pool.Conn, *pool.Pool, error) {
	addr, err := s.writer(s.srv.ShardMap().DefaultShard())
	if err != nil {
		return nil, nil, err
	}
	p := s.srv.pool(addr, s.user)
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.config().Pool.AcquireTimeout)
	defer cancel()
	c, err := p.Borrow(ctx)
	if err != nil {
		return nil, nil, &clientError{code: codeConnectionFailure, msg: "could not reach the default shard's primary for the commit decision: " + err.Error()}
	}
	return c, p, nil
}

// failpoint blocks forever at a named point of the two-phase commit when
// SHARDWIRE_FAILPOINT names it: the crash tests kill the process there.
func failpoint(name string, log interface{ Warn(string, ...any) }) {
	if os.Getenv("SHARDWIRE_FAILPOINT") != name {
		return
	}
	log.Warn("failpoint reached", "failpoint", name)
	select {}
}

// runSimple runs one simple Query on an idle connection and returns its
// rows (text values; "" for NULL) and last tag. An ErrorResponse is the
// error; the connection is left idle unless the error is a broken one.
func runSimple(c *pool.Conn, sql string, timeout time.Duration) ([][]string, string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(appendQuery(nil, sql)); err != nil {
		return nil, "", &brokenError{err}
	}
	fr := frameReader{r: c.Reader, max: 1 << 24}
	var rows [][]string
	var tag string
	var failure error
	for {
		typ, body, err := fr.next()
		if err != nil {
			return nil, "", &brokenError{err}
		}
		switch typ {
		case 'D':
			rows = append(rows, dataRowText(body))
		case 'C':
			t, _, _ := cstring(body)
			tag = string(t)
		case 'E':
			code, msg := errorFields(body)
			failure = fmt.Errorf("%s (SQLSTATE %s)", msg, code)
		case 'Z':
			return rows, tag, failure
		}
	}
}

// errStateUnknown marks a connection whose session state is unknown.
var errStateUnknown = fmt.Errorf("session state unknown")

// brokenError is a connection that failed, not a statement.
type brokenError struct{ err error }

func (e *brokenError) Error() string { return e.err.Error() }
func (e *brokenError) Unwrap() error { return e.err }

// finishSimple gives back a connection runSimple used.
func finishSimple(p *pool.Pool, c *pool.Conn, err error) {
	if _, broken := err.(*brokenError); broken {
		p.Discard(c)
		return
	}
	p.Return(c)
}

// dataRowText decodes a text-format DataRow.
func dataRowText(body []byte) []string {
	if len(body) < 2 {
		return nil
	}
	n := int(body[0])<<8 | int(body[1])
	b := body[2:]
	out := make([]string, 0, n)
	for i := 0; i < n && len(b) >= 4; i++ {
		l := int(int32(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])))
		b = b[4:]
		if l < 0 || l > len(b) {
			out = append(out, "")
			continue
		}
		out = append(out, string(b[:l]))
		b = b[l:]
	}
	return out
}

// RecoverPrepared resolves the prepared transactions shardwire instances
// left behind, on every shard's primary and for every configured user:
// committed when the default shard holds a commit decision, rolled back
// when none was recorded within routing.two_phase_recovery_after. It runs
// until ctx ends, every few seconds.
func (s *Server) RecoverPrepared(ctx context.Context) {
	warned := map[string]bool{}
	for {
		if s.config().Routing.TwoPhaseCommit {
			s.recoverOnce(ctx, warned)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

func (s *Server) recoverOnce(ctx context.Context, warned map[string]bool) {
	cfg := s.config()
	grace := cfg.Routing.TwoPhaseRecoveryAfter
	for _, sh := range cfg.Shards {
		addr := sh.Primary
		if ch := s.health(); ch != nil {
			if w := ch.Topology().Writer(sh.Name); w != nil {
				addr = w.Addr
			}
		}
		for _, cu := range cfg.Users {
			if cu.Admin {
				continue
			}
			u, _ := cfg.User(cu.Name) // with its server password filled in
			s.recoverNode(ctx, sh.Name, addr, u, grace, warned)
		}
	}
}

// recoverNode resolves the prepared transactions of user u on one node.
func (s *Server) recoverNode(ctx context.Context, shard, addr string, u config.User, grace time.Duration, warned map[string]bool) {
	log := s.log.With("shard", shard, "node", addr, "user", u.Name)
	p := s.pool(addr, u)
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := p.Borrow(bctx)
	cancel()
	if err != nil {
		return
	}
	rows, _, err := runSimple(c, "SELECT current_setting('max_prepared_transactions'), gid, (now() - prepared > interval '"+
		strconv.FormatInt(grace.Milliseconds(), 10)+" milliseconds')::text FROM (SELECT NULL) one LEFT JOIN pg_prepared_xacts ON gid LIKE 'sw\\_%' AND database = current_database() AND owner = current_user", 10*time.Second)
	finishSimple(p, c, err)
	if err != nil || len(rows) == 0 {
		return
	}
	if rows[0][0] == "0" && !warned[shard] {
		warned[shard] = true
		log.Warn("routing.two_phase_commit is on but max_prepared_transactions is 0 on this primary: cross-shard transactions that write will fail to commit")
	}
	for _, r := range rows {
		gid, old := r[1], r[2] == "true"
		if gid == "" {
			continue
		}
		base := gid[:strings.LastIndexByte(gid, '_')]
		if _, mine := s.inflight.Load(base); mine {
			continue
		}
		decision := s.decision(ctx, u, base, old)
		var stmt string
		switch decision {
		case "commit":
			stmt = "COMMIT PREPARED " + quoteLiteral(gid)
		case "abort":
			stmt = "ROLLBACK PREPARED " + quoteLiteral(gid)
		default:
			continue // too young to judge, or the decision is unreachable
		}
		c, err := p.Borrow(ctx)
		if err != nil {
			return
		}
		_, _, err = runSimple(c, stmt, 10*time.Second)
		finishSimple(p, c, err)
		log.Info("2pc: resolved a prepared transaction left behind", "gid", gid, "decision", decision, "err", err)
	}
}

// decision returns the recorded decision of a cross-shard transaction:
// "commit", "abort" (recorded, or decided now because the record is
// missing and old is set), or "" when it cannot be decided yet.
func (s *Server) decision(ctx context.Context, u config.User, base string, old bool) string {
	cfg := s.config()
	def, ok := cfg.Shard(s.ShardMap().DefaultShard())
	if !ok {
		return ""
	}
	addr := def.Primary
	if ch := s.health(); ch != nil {
		if w := ch.Topology().Writer(def.Name); w != nil {
			addr = w.Addr
		}
	}
	p := s.pool(addr, u)
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := p.Borrow(bctx)
	cancel()
	if err != nil {
		return ""
	}
	sql := createDecisionTable + "; SELECT decision FROM " + decisionTable + " WHERE gid = " + quoteLiteral(base)
	if old {
		// Claim the abort unless the coordinator recorded its commit
		// first: the primary key decides who was first.
		sql = createDecisionTable + "; INSERT INTO " + decisionTable + " (gid, decision) VALUES (" + quoteLiteral(base) + ", 'abort') ON CONFLICT (gid) DO NOTHING; SELECT decision FROM " + decisionTable + " WHERE gid = " + quoteLiteral(base)
	}
	rows, _, err := runSimple(c, sql, 10*time.Second)
	finishSimple(p, c, err)
	if err != nil || len(rows) == 0 || len(rows[0]) == 0 {
		return ""
	}
	return rows[0][0]
}

// txControl reports whether a command ends or splits a transaction.
func txControl(c router.Command) bool {
	switch c {
	case router.CmdCommit, router.CmdRollback, router.CmdSavepoint, router.CmdRelease, router.CmdRollbackTo, router.CmdPrepareTransaction, router.CmdBegin:
		return true
	}
	return false
}

// abortCrossTx drops every connection of a transaction across shards
// (closing them rolls each shard back) and forgets the transaction.
func (s *session) abortCrossTx() {
	s.mu.Lock()
	s.stopRelayLocked()
	s.mu.Unlock()
	s.crossTxLegs().discard(errStateUnknown)
	s.mu.Lock()
	s.txStatus = 'I'
	s.deferred = nil
	s.txnEffects, s.cycleEffects, s.cycleFailed = nil, nil, false
	s.slots, s.head = s.slots[:0], 0
	s.mu.Unlock()
}

// settle sends what is pending for the attached connection and waits for
// every reply, passing it on to the client (a client that pipelined its
// last statement with COMMIT, or a read across shards in a pipeline).
func (s *session) settle() error {
	if s.attached() {
		// Extended-protocol answers stay in the server's buffer until a
		// Sync or Flush.
		s.srvOut = append(s.srvOut, 'H', 0, 0, 0, 4)
	}
	s.flushServer()
	s.flushPoint = true
	for {
		s.mu.Lock()
		done := s.server == nil || s.queueEmpty()
		running := s.relayRunning
		s.mu.Unlock()
		if done {
			return s.flushClient()
		}
		if running {
			time.Sleep(time.Millisecond)
			continue
		}
		if !s.relayReplies() {
			return errClientGone
		}
	}
}
