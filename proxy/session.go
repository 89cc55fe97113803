package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/pool"
	"github.com/shardwire/shardwire/router"
	"github.com/shardwire/shardwire/shardmap"
	"github.com/shardwire/shardwire/sockio"
)

// slotKind says what reply a forwarded (or synthesised) message expects.
type slotKind uint8

const (
	slotParse       slotKind = iota // ParseComplete
	slotBind                        // BindComplete
	slotDescribe                    // RowDescription or NoData (after ParameterDescription)
	slotExecute                     // CommandComplete, EmptyQueryResponse or PortalSuspended
	slotClose                       // CloseComplete
	slotSync                        // ReadyForQuery
	slotQuery                       // everything up to ReadyForQuery
	slotFunction                    // FunctionCallResponse, ReadyForQuery
	slotSynthetic                   // bytes shardwire answers itself, in order
	slotInjectParse                 // our own Parse: swallow ParseComplete
	slotInjectClose                 // our own Close: swallow CloseComplete
	slotInjectQuery                 // our own state query: swallow up to ReadyForQuery
	slotInjectAbort                 // our Execute of no portal, failing the server's transaction: swallow its error
	slotInjectSync                  // our own Sync: swallow its ReadyForQuery
)

// slot is one expected reply, in the order the server will send them.
type slot struct {
	kind slotKind
	data []byte // slotSynthetic: what to send
	// Parse slots: the client statement name and statement, forgotten if
	// the Parse fails or is skipped after an earlier error.
	name    string
	stmt    *preparedStmt
	effects *queryEffects // slotQuery, slotExecute
	step    int           // slotQuery: CommandCompletes so far (effects.steps taken)
	failed  bool
	start   int64 // slotQuery, slotExecute: monoNow when forwarded, for metrics
}

func (k slotKind) injected() bool {
	return k == slotInjectParse || k == slotInjectClose || k == slotInjectQuery || k == slotInjectAbort || k == slotInjectSync
}

// session is one client connection. Its goroutine (run) reads the client and
// writes to the attached server; while a server connection is attached a
// second goroutine (serverLoop) reads the server and writes to the client.
// State both touch is guarded by mu; socket I/O never happens under mu, so a
// slow peer cannot stall the other direction.
type session struct {
	srv     *Server
	client  *clientConn
	user    config.User
	secret  string // the cancel key shardwire gave the client
	started int64  // unix nanoseconds
	addr    string

	mu     sync.Mutex
	cond   *sync.Cond // signalled when cancelling drops to 0 (nil until a cancel)
	out    []byte     // bytes for the client, not yet written
	spare  []byte
	server *pool.Conn
	pool   *pool.Pool
	relay  sync.WaitGroup // the serverLoop goroutine of the attached connection
	slots  []slot
	head   int
	pinned string
	// stmts maps client statement names to statements.
	stmts          map[string]*preparedStmt
	unnamed        []byte        // the client's last unnamed Parse frame
	unnamedEffects *queryEffects // the unnamed statement's (nil: none); shared, never modified
	portalEffects  map[string]*queryEffects
	params         sessionParams
	startupParams  sessionParams
	// ParameterStatus values the client has seen: seenBase is shared by
	// every session (the server's values at login), seen holds this
	// client's own.
	seenBase map[string]string
	// loc is the session's TimeZone as the server last reported it, for
	// routing timestamptz keys written without an offset (nil: not yet
	// changed from seenBase's).
	loc          atomic.Pointer[time.Location]
	seen         map[string]string
	cycleEffects []*queryEffects // committed by the next ReadyForQuery
	txnEffects   []*queryEffects // waiting for COMMIT
	injectFailed string

	// Routing state, owned by the client goroutine.
	txMap        *shardmap.Map   // the map of the running transaction block
	shardSetting string          // SET shardwire.shard
	keySetting   string          // SET shardwire.key
	ws           *sessionScratch // the running goroutine's (nil while parked)
	unnamedStmt  *preparedStmt   // the unnamed statement's analysis
	ryw          []rywMark
	deferred     []string // BEGIN (and SET TRANSACTION …) held until the first statement
	attachShard  string
	target       *attachTarget // of the attached connection (or the last)

	// fan is the fanout running a statement across shards, for cancel
	// requests (guarded by mu); pendingMulti is a Bind of a statement that
	// spans shards, run at its Execute (client goroutine).
	fan *fanout
	// A transaction block across shards: its other shards' connections
	// (parked), the BEGIN replayed on each new one, whether it is READ
	// ONLY (txRO, below).
	txLegs       []*txLeg
	txBegin      string
	pendingMulti *multiStmt
	copyIn       *copyIn // a COPY FROM STDIN split between shards (client goroutine)

	// retryQuery is a read-only simple Query sent on a fresh replica
	// connection that has answered nothing yet but its RowDescription
	// (kept in retryDesc): if that replica dies now, the query is sent
	// once more to another node, whose identical RowDescription is then
	// not passed on again (replayDesc). Guarded by mu.
	retryQuery []byte
	retryDesc  []byte
	replayDesc []byte

	writeMu sync.Mutex // serialises writes to the client socket

	// Owned by the client goroutine, for relaying without a goroutine.
	srvFrames  frameReader
	unanswered int // bytes sent since the replies were last read up

	// Owned by the client goroutine.
	srvOut []byte

	// Since when the client idles, for the idle waiter (unix nanoseconds;
	// 0: busy, or idle on its goroutine with no client_idle_timeout to
	// count).
	idleSince int64

	// The small fields come last, packed together: every client holds a
	// session, idle or not, and 896 bytes is a size class (1024 with the
	// padding they had between the fields above).
	pid uint32
	// The idle waiter's: the client socket's descriptor (-1: not one it
	// can watch) and whether epoll has it registered.
	fd    int32
	armed bool
	// sendPending: srvOut holds requests that the next wait for the
	// server's reply writes (flushServerThenRead). Client goroutine.
	sendPending bool
	// relayLive counts serverLoop goroutines not yet returned: one that
	// has released its connection still flushes the client afterwards.
	relayLive atomic.Int32
	waitState atomic.Int32 // waitBusy, waitIdle, …: for the idle waiter's sweep
	ended     atomic.Bool
	txnMode   bool

	// Guarded by mu.
	// relayRunning: a serverLoop goroutine reads the attached connection.
	// Without one, the client goroutine reads the replies itself after
	// each flush point (the common, cheaper case in transaction mode).
	relayRunning    bool
	cancelling      int32 // cancel requests under way; cond signals its drop to 0
	txStatus        byte
	closing         bool
	unnamedOnServer bool // the attached server holds the client's unnamed statement
	rolledBack      bool // the last CommandComplete was ROLLBACK
	cycleFailed     bool // a statement of the client's failed since the last ReadyForQuery
	wrote           bool // a statement that may write ran on the attached connection
	txRO            bool // the transaction block across shards is READ ONLY
	parking         bool // a relay goroutine is being stopped on purpose

	// Owned by the client goroutine.
	// COPY FROM STDIN: CopyInResponses read and CopyDone/CopyFail sent on
	// this attachment. The server waits for the client while more copies
	// started than ended (a client may stream its data before the
	// CopyInResponse arrives, as pgconn does).
	copyStarted, copyEnded int32
	roleSetting            router.Role // SET shardwire.role
	hasKey                 bool
	deferredRO             bool // the deferred transaction is READ ONLY
	// deferredFailed: a statement failed before the deferred transaction
	// reached a server; it is aborted until COMMIT or ROLLBACK.
	deferredFailed bool
	unnamedRead    bool // the client's unnamed statement is a read
	attachWrite    bool // the attached connection is on a shard's writer for writing
	freshAttach    bool // lockAttached borrowed for the current message
	flushPoint     bool // the last message forwarded makes the server answer (Sync, Query, Flush, …)
	clientSkip     bool // a locally raised error: ignore messages until Sync
	// Guarded by mu: the client goroutine waits for the client
	// (clientWaiting), and its read has the idle-in-transaction deadline
	// (idleTxArmed).
	clientWaiting, idleTxArmed bool
}

// run serves the client until it leaves (false), or until it idles between
// transactions and the idle waiter takes it (true): the waiter resumes it
// later, on whichever worker goroutine is free, with woken set.
func (s *session) run(woken bool, bufs *sessionScratch) (parked bool) {
	defer func() {
		if !parked {
			s.close()
		}
	}()
	s.ws = bufs
	if woken {
		s.borrowBuffers(bufs)
	}
	// A new client idles until its first query: no buffer meanwhile.
	s.client.releaseReader()
	parkNow := false
	for {
		if s.client.r == nil {
			if parkNow {
				parkNow = false
				if s.parkable() && s.park(bufs) {
					return true
				}
			}
			ready := woken
			woken = false
			switch s.awaitClient(ready) {
			case awaitFailed:
				return false
			case awaitPark:
				parkNow = true
				continue
			}
		}
		if !s.serve() {
			return false
		}
	}
}

// sessionScratch holds what a session needs only while a goroutine runs it:
// the buffers it reuses from one transaction to the next (a parking session
// lends them to its worker goroutine, and the session the worker runs next
// borrows them) and its scratch space (used through session.ws). So a
// parked client holds none of it.
type sessionScratch struct {
	out, spare, srvOut []byte
	slots              []slot

	scratch     router.Scratch
	bindScratch router.BindParams // a Bind's parameters while it is routed
	// retryBuf and retryDescBuf keep the storage of retryQuery and
	// retryDesc across queries (they are set for every read on a fresh
	// connection); retryElsewhere takes them over. Guarded by mu.
	retryBuf, retryDescBuf []byte
}

// park lends the session's buffers to its worker and parks the session; on
// true the caller must not touch s again.
func (s *session) park(bufs *sessionScratch) bool {
	if s.idleSince == 0 {
		s.idleSince = time.Now().UnixNano()
	}
	s.lendBuffers(bufs)
	s.ws = nil
	if s.srv.idle.park(s) {
		return true
	}
	s.ws = bufs
	s.borrowBuffers(bufs)
	return false
}

// lendBuffers moves the session's reusable buffers to bufs (where bufs has
// none of its own). Only a detached session's goroutine calls it.
func (s *session) lendBuffers(bufs *sessionScratch) {
	lend := func(dst, src *[]byte) {
		if *dst == nil {
			*dst = (*src)[:0]
		}
		*src = nil
	}
	s.mu.Lock()
	lend(&bufs.out, &s.out)
	lend(&bufs.spare, &s.spare)
	if bufs.slots == nil {
		clear(s.slots[:cap(s.slots)])
		bufs.slots = s.slots[:0]
	}
	s.slots, s.head = nil, 0
	s.retryQuery, s.retryDesc = nil, nil
	s.mu.Unlock()
	lend(&bufs.srvOut, &s.srvOut)
	s.client.putWaitBuffer()
}

// borrowBuffers takes the worker's buffers for the session where it has none.
func (s *session) borrowBuffers(bufs *sessionScratch) {
	borrow := func(dst, src *[]byte) {
		if *dst == nil {
			*dst, *src = *src, nil
		}
	}
	s.mu.Lock()
	borrow(&s.out, &bufs.out)
	borrow(&s.spare, &bufs.spare)
	if s.slots == nil {
		s.slots, bufs.slots = bufs.slots, nil
	}
	s.mu.Unlock()
	borrow(&s.srvOut, &bufs.srvOut)
}

// parkable reports whether the idle waiter may take the session: no server
// connection attached and no relay goroutine left, so nothing else can
// write to or close the client while it is parked, and no reply owed to the
// client.
func (s *session) parkable() bool {
	if !s.watchable() {
		return false
	}
	for i := 0; ; i++ {
		live := s.relayLive.Load() != 0
		s.mu.Lock()
		ok := s.server == nil && !s.relayRunning && s.queueEmpty() && len(s.out) == 0
		s.mu.Unlock()
		if !ok {
			return false
		}
		if !live {
			return true
		}
		// A relay goroutine that released its connection still returns
		// it to the pool and flushes the client: microseconds, unless the
		// client does not read. Wait for that briefly.
		if i == 50 {
			return false
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// watchable reports whether the idle waiter could watch the client's socket.
func (s *session) watchable() bool { return s.srv.idle != nil && s.fd >= 0 }

type awaitResult uint8

const (
	awaitOK     awaitResult = iota // the client sent: its bytes are buffered
	awaitFailed                    // the client is gone or timed out (told)
	awaitPark                      // idle long enough: park the session
)

// States of session.waitState, which the idle waiter's sweep reads to find
// clients idle on their own goroutine long enough to be parked, and client
// goroutines waiting on a slow statement.
const (
	waitBusy       int32 = iota // not waiting
	waitIdle                    // waiting for the client, may be parked
	waitWake                    // a sweep set a past read deadline to wake it
	waitServer                  // reading the attached server's reply
	waitServerKick              // a sweep gave that read a past deadline
)

// awaitClient blocks until an idle client sends again (at once, ready, when
// the idle waiter has just seen its socket readable). A client that only
// pauses between transactions stays on its goroutine, which costs nothing
// per transaction; the idle waiter's sweep wakes one still waiting at the
// next sweep (awaitPark), and the caller parks it.
//
//go:noinline
func (s *session) awaitClient(ready bool) awaitResult {
	var deadline time.Time
	if idle := s.srv.config().Limits.ClientIdleTimeout; idle > 0 {
		// Idle time counts from when the client went idle, parked or not.
		if s.idleSince == 0 {
			s.idleSince = time.Now().UnixNano()
		}
		deadline = time.Unix(0, s.idleSince).Add(idle)
		_ = s.client.SetReadDeadline(deadline)
	}
	if s.srv.draining.Load() {
		// Shutdown's wake-up must not be pushed back.
		_ = s.client.SetReadDeadline(time.Now())
	}
	mayPark := !ready && s.watchable() && s.txnMode && s.pinned == ""
	if mayPark {
		s.waitState.Store(waitIdle)
	}
	err := s.client.awaitFirstByte(ready)
	woken := false
	if mayPark && s.waitState.Swap(waitBusy) == waitWake {
		// The sweep holds mu until its SetReadDeadline is done: wait for
		// it, then take its deadline back.
		s.mu.Lock()
		//lint:ignore SA2001 waiting for the sweep to leave mu is the point
		s.mu.Unlock()
		woken = true
	}
	if woken || !deadline.IsZero() {
		_ = s.client.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var ne net.Error
		if woken && errors.As(err, &ne) && ne.Timeout() && !s.srv.draining.Load() {
			return awaitPark
		}
		s.readFailed(err)
		return awaitFailed
	}
	s.idleSince = 0
	return awaitOK
}

// wakeToPark is the idle waiter's sweep: a client waiting on its own
// goroutine gets a past read deadline, so that its session parks. A client
// that pauses only briefly between transactions is caught at most once per
// sweep.
//
// A client goroutine still waiting for its server's reply at a sweep gets a
// past read deadline on that connection instead: the statement is slow, and
// a relay goroutine takes the reading over (see serverAnswersSoon).
func (s *session) wakeToPark() {
	switch s.waitState.Load() {
	case waitIdle:
		s.mu.Lock()
		if s.waitState.CompareAndSwap(waitIdle, waitWake) {
			_ = s.client.SetReadDeadline(time.Now())
		}
		s.mu.Unlock()
	case waitServer:
		s.mu.Lock()
		// Only the client goroutine attaches connections, so while it
		// waits s.server is the connection it reads, or nil (closed).
		if c := s.server; c != nil && s.waitState.CompareAndSwap(waitServer, waitServerKick) {
			_ = c.SetReadDeadline(time.Now())
		}
		s.mu.Unlock()
	}
}

// serve handles client messages until the client idles between
// transactions (its read buffer released) or leaves (false).
func (s *session) serve() bool {
	for {
		limit := s.srv.config().Limits.IdleTransactionTimeout
		if limit > 0 {
			s.beginClientWait(limit)
		}
		typ, body, err := s.client.read()
		if limit > 0 && s.endClientWait(limit, err) {
			return false
		}
		if err != nil {
			s.readFailed(err)
			return false
		}
		if err := s.handle(typ, body); err != nil {
			if ce := asClientError(err); ce != nil {
				s.sendFatal(ce)
			} else if !errors.Is(err, errClientGone) {
				s.logger().Warn("closing client", "err", err)
			}
			return false
		}
		if s.client.buffered() == 0 || len(s.srvOut) > 64<<10 {
			s.flushServerThenRead()
		}
		if s.client.buffered() == 0 {
			if !s.relayReplies() {
				return false
			}
			if err := s.flushClient(); err != nil {
				return false
			}
			s.idleCheck()
			if s.client.r == nil {
				return true
			}
		}
	}
}

// beginClientWait marks the client goroutine as about to wait for the
// client (when nothing of it is buffered) and, if the server already waits
// for the client inside a transaction, arms the idle-in-transaction deadline.
// Otherwise the reply that leaves the server idle in the transaction arms it
// (armIdleTxLocked, from whichever goroutine reads that reply).
func (s *session) beginClientWait(limit time.Duration) {
	if s.client.buffered() > 0 {
		return
	}
	s.mu.Lock()
	s.clientWaiting = true
	s.armIdleTxLocked(limit)
	s.mu.Unlock()
}

// armIdleTxLocked gives the waiting client's read a deadline when the server
// waits for the client inside a transaction; mu is held.
func (s *session) armIdleTxLocked(limit time.Duration) {
	if limit <= 0 || !s.clientWaiting || s.idleTxArmed || (s.txStatus != 'T' && s.txStatus != 'E') || !s.queueEmpty() || s.srv.draining.Load() {
		return
	}
	s.idleTxArmed = true
	_ = s.client.SetReadDeadline(time.Now().Add(limit))
}

// endClientWait ends the wait begun by beginClientWait. It reports whether
// the read failed on the idle-in-transaction deadline, in which case the
// client has been told (25P03) and its session must end; the server
// connection is then rolled back or discarded like that of any client that
// leaves mid-transaction.
func (s *session) endClientWait(limit time.Duration, err error) bool {
	s.mu.Lock()
	armed := s.idleTxArmed
	s.clientWaiting, s.idleTxArmed = false, false
	s.mu.Unlock()
	if !armed {
		return false
	}
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() || s.srv.draining.Load() {
		_ = s.client.SetReadDeadline(time.Time{})
		return false
	}
	s.logger().Info("closing client idle in a transaction", "timeout", limit.String())
	s.sendFatal(&clientError{fatal: true, code: "25P03", msg: "terminating connection due to idle-in-transaction timeout"})
	return true
}

// seenValue is the value of a reported parameter as the client knows it.
func (s *session) seenValue(name []byte) string {
	if v, ok := s.seen[string(name)]; ok {
		return v
	}
	return s.seenBase[string(name)]
}

// logger returns the session's logger, built when needed: most sessions
// never log, and an idle one should not carry a handler.
func (s *session) logger() *slog.Logger {
	return s.srv.log.With("client", s.pid, "user", s.user.Name, "remote", s.addr)
}

// idleCheck gives the read buffer back when the client has sent everything
// and is not inside a transaction block, so a client idling between
// transactions holds no buffer. The price is one more read system call for
// its next message; inside a transaction the buffer stays.
func (s *session) idleCheck() {
	s.mu.Lock()
	between := s.txStatus == 'I' && s.pinned == "" && s.copyIn == nil
	s.mu.Unlock()
	if !between {
		return
	}
	s.client.releaseReader()
	if cap(s.srvOut) > 4096 {
		s.srvOut = nil
	}
}

var errClientGone = errors.New("client went away")

func (s *session) readFailed(err error) {
	var ne net.Error
	if s.srv.draining.Load() && errors.As(err, &ne) && ne.Timeout() {
		s.sendFatal(&clientError{fatal: true, code: codeAdminShutdown, msg: "terminating connection: shardwire is shutting down"})
		return
	}
	if errors.As(err, &ne) && ne.Timeout() && s.srv.config().Limits.ClientIdleTimeout > 0 {
		s.sendFatal(&clientError{fatal: true, code: "57P05", msg: "terminating connection due to idle timeout"})
		return
	}
	if ce := asClientError(err); ce != nil {
		s.sendFatal(ce)
		return
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrUnexpectedEOF) {
		s.logger().Debug("client read failed", "err", err)
	}
}

// sendFatal reports an error to the client before the connection closes.
func (s *session) sendFatal(ce *clientError) {
	s.srv.metrics.Error(ce.code)
	s.mu.Lock()
	s.out = appendError(s.out, "FATAL", ce.code, ce.msg)
	s.mu.Unlock()
	_ = s.flushClient()
}

// handle processes one client message.
func (s *session) handle(typ byte, body []byte) error {
	if s.clientSkip && typ != 'S' && typ != 'X' {
		return nil
	}
	if s.deferredFailed {
		if done, err := s.abortedTx(typ, body); done {
			return err
		}
	}
	switch typ {
	case 'Q':
		return s.handleQuery(typ, body)
	case 'P':
		return s.handleParse(body)
	case 'B':
		return s.handleBind(body)
	case 'D':
		return s.handleDescribe(body)
	case 'E':
		if done, err := s.executeMulti(body); done || err != nil {
			return err
		}
		return s.forward(slotExecute, typ, body, s.portalEffect(body))
	case 'C':
		return s.handleClose(body)
	case 'S':
		return s.handleSync()
	case 'H':
		if s.attached() {
			s.srvOut = appendFrame(s.srvOut, typ, body)
			s.flushServer()
		}
		return s.flushClient()
	case 'F':
		return s.forward(slotFunction, typ, body, nil)
	case 'd', 'c', 'f':
		if s.copyIn != nil {
			return s.copyMessage(typ, body)
		}
		// COPY data: meaningful only while a COPY runs, which keeps the
		// server attached; Postgres ignores it otherwise, and so do we.
		if s.attached() {
			s.srvOut = appendFrame(s.srvOut, typ, body)
		}
		if typ != 'd' {
			s.copyEnded++
		}
		return nil
	case 'X':
		return errClientGone
	default:
		return protocolError(fmt.Sprintf("invalid frontend message type %d", typ))
	}
}

func (s *session) attached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.server != nil
}

// lockAttached makes sure a server connection is attached and returns with
// mu held, so the caller's slots are queued before the relay goroutine can
// release the connection. On error mu is not held.
func (s *session) lockAttached(req routeRequest) error {
	s.mu.Lock()
	if c := s.server; c != nil && req.shard != "" && req.shard != s.attachShard && s.readPipelineLocked() {
		// A pipeline of reads outside a transaction block (a pgx batch)
		// moves to another shard: end its implicit transaction here with
		// our own Sync once the answers so far are out, and let the
		// connection go.
		s.push(slot{kind: slotInjectSync})
		s.mu.Unlock()
		s.srvOut = append(s.srvOut, 'S', 0, 0, 0, 4)
		if err := s.settle(); err != nil {
			return err
		}
		s.mu.Lock()
		if c := s.server; c != nil {
			p := s.pool
			if s.releaseLocked(c) {
				s.mu.Unlock()
				s.returnReleased(p, c)
				s.mu.Lock()
			}
		}
	}
	if c := s.server; c != nil && req.shard != "" && req.shard != s.attachShard {
		// The transaction block moves to another shard: park this
		// connection, and take that shard's (parked, or a new one that
		// replays the BEGIN).
		if why := s.crossTxRefusal(); why != "" {
			on := s.attachShard
			code := codeFeatureNotSupported
			if s.txStatus == 'E' {
				code, why = "25P02", "current transaction is aborted, commands ignored until end of transaction block"
			}
			s.mu.Unlock()
			return &clientError{code: code, msg: fmt.Sprintf(
				"shardwire: this transaction runs on shard %s, but the statement needs shard %s: %s", on, req.shard, why)}
		}
		s.parkLocked()
		if s.unparkLocked(req.shard) {
			return nil
		}
		begin := s.txBegin
		if begin == "" {
			begin = "BEGIN"
		}
		s.deferred, s.deferredRO = []string{begin}, s.txRO
	}
	if c := s.server; c != nil {
		s.freshAttach = false
		s.retryQuery, s.retryDesc = nil, nil
		if c.StateFingerprint != s.params.fp && s.queueEmpty() && s.txStatus == 'I' {
			s.syncStateLocked(c)
		}
		return nil
	}
	if len(s.txLegs) > 0 {
		// Between shards of a cross-shard transaction (a borrow failed):
		// a shard it already runs on gets its own connection back.
		target := req.shard
		if target == "" {
			target = s.txLegs[len(s.txLegs)-1].shard
		}
		if s.unparkLocked(target) {
			s.deferred = nil
			return nil
		}
	}
	s.mu.Unlock()
	if len(s.deferred) > 0 {
		// A deferred transaction goes where its first statement goes; only
		// a READ ONLY one may go to a replica.
		req.read = req.read && s.deferredRO
	}
	shard := req.shard
	if shard == "" {
		shard = s.srv.ShardMap().DefaultShard()
	}
	s.gateFor(shard).waitUnpaused()
	// The acquire clock starts when a connection is not free at once (only
	// Borrow returns errors, so the writer wait below always has it set).
	var deadline time.Time
	startClock := func() {
		if deadline.IsZero() {
			deadline = monoTime().Add(s.srv.config().Pool.AcquireTimeout)
		}
	}
	var skip string
	var p *pool.Pool
	var c *pool.Conn
	var isWriter bool
	var err error
	for attempt := 0; ; attempt++ {
		p, isWriter, err = s.chooseNodeExcept(shard, req, skip)
		if err != nil {
			return err
		}
		var ok bool
		c, ok = p.TryBorrow()
		if !ok {
			startClock()
			// No session context: only this goroutine could end the
			// session, and it is the one waiting.
			c, err = p.BorrowUntil(context.Background(), deadline)
		}
		// A replica that cannot be reached is passed over for the next
		// fit node (the pool's breaker has told the checker).
		if err != nil && !isWriter && attempt == 0 && !errors.Is(err, pool.ErrTimeout) {
			skip = p.Addr()
			continue
		}
		// A writer that cannot be reached may be failing over: wait for
		// the topology to name another, up to pool.acquire_timeout.
		if err != nil && isWriter && !errors.Is(err, pool.ErrTimeout) && s.waitNewWriter(shard, p.Addr(), deadline) {
			continue
		}
		break
	}
	if err != nil {
		if errors.Is(err, pool.ErrTimeout) {
			return &clientError{code: codeTooManyConnections, msg: fmt.Sprintf(
				"no server connection to %s came free within pool.acquire_timeout (%s)", p.Addr(), s.srv.config().Pool.AcquireTimeout)}
		}
		return &clientError{code: codeConnectionFailure, msg: fmt.Sprintf("could not get a server connection: %v", err)}
	}
	c.Prepared.SetMax(s.srv.config().Pool.PreparedStatementsCache)
	s.mu.Lock()
	s.server, s.pool = c, p
	s.attachShard, s.attachWrite = shard, isWriter && !req.read
	s.freshAttach = true
	s.wrote = false
	s.target = s.targetFor(shard, p, isWriter)
	s.target.gate.active.Add(1)
	if s.srv.debug {
		s.logger().Debug("routed", "shard", shard, "node", p.Addr(), "writer", isWriter, "read", req.read, "hint", req.hint.String())
	}
	s.unnamedOnServer = false
	if c.StateFingerprint != s.params.fp {
		s.syncStateLocked(c)
	}
	if len(s.deferred) > 0 {
		s.push(slot{kind: slotInjectQuery})
		s.txBegin, s.txRO = strings.Join(s.deferred, ";"), s.deferredRO
		s.srvOut = appendQuery(s.srvOut, s.txBegin)
		s.deferred = nil
	}
	s.srvFrames = frameReader{r: c.Reader, max: 1 << 30}
	s.unanswered = 0
	s.copyStarted, s.copyEnded = 0, 0
	if !s.txnMode {
		// Session mode: the connection stays for the whole session, and
		// asynchronous messages (NOTIFY) must reach an idle client.
		s.startRelayLocked()
	}
	return nil
}

// startRelayLocked starts a serverLoop goroutine for the attached
// connection if none runs; mu is held. Needed when replies must flow while
// the client goroutine reads the client: big pipelines (so neither side
// blocks writing), and pinned or session-mode connections (NOTIFY).
func (s *session) startRelayLocked() {
	if s.server == nil || s.relayRunning {
		return
	}
	s.relayRunning = true
	s.relay.Add(1)
	s.relayLive.Add(1)
	go s.serverLoop(s.server, s.pool)
}

// detachLocked forgets the attached server connection; mu is held.
func (s *session) detachLocked() {
	if s.server != nil {
		s.gateFor(s.attachShard).active.Add(-1)
	}
	s.server, s.pool = nil, nil
	s.relayRunning = false
}

// syncStateLocked queues the statement that gives c the client's session
// state; mu is held.
func (s *session) syncStateLocked(c *pool.Conn) {
	s.push(slot{kind: slotInjectQuery})
	s.srvOut = appendQuery(s.srvOut, s.params.applySQL())
	c.StateFingerprint = s.params.fp
}

// push appends an expected reply; mu must be held.
func (s *session) push(sl slot) {
	s.slots = append(s.slots, sl)
}

func (s *session) queueEmpty() bool { return s.head == len(s.slots) }

func (s *session) pop() {
	s.slots[s.head] = slot{}
	s.head++
	if s.head == len(s.slots) {
		s.slots = s.slots[:0]
		s.head = 0
	}
}

// forward sends a client message that needs a server.
func (s *session) forward(kind slotKind, typ byte, body []byte, eff *queryEffects) error {
	if err := s.lockAttached(routeRequest{}); err != nil {
		return s.localError(err)
	}
	sl := slot{kind: kind, effects: eff}
	if kind == slotExecute && s.metricsNode() != nil {
		sl.start = monoNow()
	}
	s.push(sl)
	s.mu.Unlock()
	s.srvOut = appendFrame(s.srvOut, typ, body)
	return nil
}

// localError reports an error shardwire raises itself for the current
// message. Fatal errors close the session; others follow the protocol: the
// client's messages up to Sync are ignored (extended protocol), or a
// ReadyForQuery follows at once (simple Query).
func (s *session) localError(err error) error {
	return s.failLocal(err, false)
}

// failLocal reports an error shardwire raises itself. Like an error of the
// server's, it fails the transaction the server has open for the client:
// an extended-protocol batch's implicit transaction (simple is false) or a
// transaction block. Otherwise the server would commit, at the next Sync or
// COMMIT, the statements before the failed one.
func (s *session) failLocal(err error, simple bool) error {
	ce := asClientError(err)
	if ce == nil {
		return err
	}
	if ce.fatal {
		return ce
	}
	s.srv.metrics.Error(ce.code)
	s.mu.Lock()
	msg := appendError(nil, "ERROR", ce.code, ce.msg)
	if s.server != nil {
		s.push(slot{kind: slotSynthetic, data: msg})
		if !simple || s.txStatus == 'T' {
			// Execute a portal that does not exist: the server fails
			// and skips to the next Sync, ours for a simple Query.
			s.push(slot{kind: slotInjectAbort})
			s.srvOut = append(s.srvOut, 'E', 0, 0, 0, 28)
			s.srvOut = append(s.srvOut, "shardwire_no_portal\x00"...)
			s.srvOut = append(s.srvOut, 0, 0, 0, 0)
			if simple {
				s.push(slot{kind: slotInjectSync})
				s.srvOut = append(s.srvOut, 'S', 0, 0, 0, 4)
			}
			if s.txStatus == 'T' {
				s.txStatus = 'E'
			}
		}
	} else {
		s.out = append(s.out, msg...)
		if len(s.deferred) > 0 {
			// The transaction block has not reached a server yet: fail
			// it here, as the server would have.
			s.deferredFailed = true
		}
	}
	s.mu.Unlock()
	s.clientSkip = true
	return nil
}

func (s *session) handleQuery(typ byte, body []byte) error {
	if len(body) == 0 || body[len(body)-1] != 0 {
		return protocolError("malformed Query message")
	}
	// The text is first read in place: a plain statement on a fixed route
	// (the common case without sharding) keeps nothing of it, so it needs
	// no copy. Anything else may keep parts of it (session state, routing,
	// fan-outs) past the read buffer's next fill, so it works on a copy.
	sql := unsafe.String(unsafe.SliceData(body), len(body)-1)
	info := inspectQuery(sql)
	var shard string
	plain, fixed := info.plain(), false
	if plain {
		shard, fixed = s.fixedShard(info.hints)
	}
	if !fixed {
		sql = strings.Clone(sql)
		if !plain {
			info = inspectQuery(sql)
		}
	}
	if err := info.hints.Err; err != nil {
		return s.queryError(&clientError{code: "22023", msg: err.Error()})
	}
	if len(s.txLegs) > 0 {
		// A transaction block across shards ends here, on every shard.
		if !info.single {
			return s.queryError(&clientError{code: codeFeatureNotSupported, msg: "shardwire: in a transaction across shards, send one statement per query"})
		}
		switch info.stmt.Command {
		case router.CmdCommit, router.CmdRollback:
			if info.stmt.Chain {
				return s.queryError(&clientError{code: codeFeatureNotSupported, msg: "shardwire: AND CHAIN is not supported in a transaction across shards"})
			}
			return s.endCrossTx(info.stmt.Command == router.CmdCommit)
		case router.CmdSavepoint, router.CmdRelease, router.CmdRollbackTo, router.CmdPrepareTransaction:
			return s.queryError(&clientError{code: codeFeatureNotSupported, msg: "shardwire: savepoints and PREPARE TRANSACTION are not supported in a transaction across shards"})
		}
	}
	if info.single {
		if handled, err := s.localQuery(&info.stmt); handled || err != nil {
			return err
		}
	}
	eff := info.effects
	if eff != nil && eff.pin != "" {
		s.pin(eff.pin)
	}
	if info.single && info.stmt.Command == router.CmdCopy {
		if split, err := s.splitCopy(sql, info.hints); split {
			return s.multiFailure(err, true)
		}
	}
	req := routeRequest{hint: info.hints.Role}
	if !plain {
		shard, fixed = s.fixedShard(info.hints)
	}
	var multi *router.Route
	var err error
	if !fixed {
		an := s.srv.analyzer.ClassifyWith(&s.ws.scratch, sql)
		req.read = an.Class.IsRead()
		shard, multi, err = s.routeAnalyzed(an, sql, s.ws.scratch.Literals(), nil, info.hints)
	}
	if (err != nil || multi != nil) && info.single && info.stmt.Command == router.CmdCopy {
		// COPY … TO STDOUT of a sharded table, or of a query across
		// shards: gathered from every shard.
		if plan, perr := s.srv.analyzer.PlanCopyOut(sql, s.srv.ShardMap()); perr == nil {
			return s.multiFailure(s.gatherCopy(sql, plan), true)
		}
	}
	if err != nil {
		return s.queryError(err)
	}
	if multi != nil {
		m := &multiStmt{route: *multi, sql: sql, read: req.read, hints: info.hints}
		if info.single {
			m.cmd = info.stmt.Command
		}
		return s.multiFailure(s.runMulti(m), true)
	}
	req.shard = shard
	if err := s.lockAttached(req); err != nil {
		return s.queryError(err)
	}
	s.wrote = s.wrote || !req.read
	sl := slot{kind: slotQuery, effects: eff}
	if s.metricsNode() != nil {
		sl.start = monoNow()
	}
	s.push(sl)
	if s.freshAttach && req.read && !s.attachWrite && s.txStatus == 'I' && eff == nil {
		s.retryQuery = appendFrame(s.ws.retryBuf[:0], typ, body)
		s.ws.retryBuf = s.retryQuery
		s.retryDesc, s.replayDesc = nil, nil
	}
	s.mu.Unlock()
	s.srvOut = appendFrame(s.srvOut, typ, body)
	return nil
}

// queryError answers a simple Query with an error and ReadyForQuery.
func (s *session) queryError(err error) error {
	if lerr := s.failLocal(err, true); lerr != nil {
		return lerr
	}
	s.clientSkip = false
	s.mu.Lock()
	s.respondLocked(appendReady(nil, s.currentStatus()))
	s.mu.Unlock()
	return nil
}

// currentStatus is the transaction status the client should see now.
func (s *session) currentStatus() byte {
	if s.server == nil {
		return s.idleStatus()
	}
	return s.txStatus
}

// localQuery answers single statements that need no server: shardwire's own
// settings, and a BEGIN held back until the transaction's first statement
// says where it goes (with the SET TRANSACTION, COMMIT or ROLLBACK that may
// come before that).
func (s *session) localQuery(st *router.Statement) (bool, error) {
	if handled, err := s.shardwireSetting(st); handled {
		if err != nil {
			return true, s.queryError(err)
		}
		s.mu.Lock()
		s.respondLocked(appendFrame(nil, 'C', []byte("SET\x00")))
		s.respondLocked(appendReady(nil, s.currentStatus()))
		s.mu.Unlock()
		return true, nil
	}
	if !s.txnMode || s.attached() {
		return false, nil
	}
	var tag string
	switch {
	case st.Command == router.CmdBegin && len(s.deferred) == 0 && s.idleStatus() == 'I':
		s.deferred = []string{"BEGIN" + beginModes(st)}
		s.deferredRO = st.TxAccess == router.TxReadOnly || (st.TxAccess == router.TxAccessDefault && s.defaultReadOnly())
		s.txStatus, tag = 'T', "BEGIN"
	case len(s.deferred) > 0 && st.Command == router.CmdSet && st.Set.Transaction:
		s.deferred = append(s.deferred, st.Set.SQL())
		if st.Set.TxAccess != router.TxAccessDefault {
			s.deferredRO = st.Set.TxAccess == router.TxReadOnly
		}
		tag = "SET"
	case len(s.deferred) > 0 && (st.Command == router.CmdCommit || st.Command == router.CmdRollback) && !st.Chain:
		tag = "COMMIT"
		if st.Command == router.CmdRollback || s.deferredFailed {
			tag = "ROLLBACK" // as Postgres answers COMMIT of a failed transaction
		}
		s.deferred, s.deferredFailed = nil, false
		s.txStatus = 'I'
	default:
		return false, nil
	}
	s.mu.Lock()
	s.out = appendFrame(s.out, 'C', append([]byte(tag), 0))
	s.out = appendReady(s.out, s.idleStatus())
	s.mu.Unlock()
	return true, nil
}

// beginModes returns the transaction modes of a BEGIN for replay.
func beginModes(st *router.Statement) string {
	switch st.TxAccess {
	case router.TxReadOnly:
		return " READ ONLY"
	case router.TxReadWrite:
		return " READ WRITE"
	}
	return ""
}

// defaultReadOnly reports whether the client set default_transaction_read_only.
func (s *session) defaultReadOnly() bool {
	v, ok := s.params.vals["default_transaction_read_only"]
	if !ok {
		return false
	}
	v = strings.ToLower(v[strings.LastIndexByte(v, '=')+1:])
	v = strings.Trim(strings.TrimSpace(v), "'")
	return v == "on" || v == "true" || v == "1" || v == "yes"
}

// idleStatus is the transaction status to report with no server attached.
func (s *session) idleStatus() byte {
	if s.deferredFailed {
		return 'E'
	}
	if len(s.deferred) > 0 {
		return 'T'
	}
	if s.txStatus == 0 {
		return 'I'
	}
	return s.txStatus
}

// pin keeps the server connection for the rest of the session.
func (s *session) pin(reason string) {
	if !s.txnMode {
		return
	}
	s.mu.Lock()
	first := s.pinned == ""
	if first {
		s.pinned = reason
	}
	s.mu.Unlock()
	if first {
		s.logger().Info("client pinned to its server connection", "reason", reason)
		s.srv.metrics.Pin(pinLabel(reason))
	}
}

// pinLabel is the metrics label for a pin reason.
func pinLabel(reason string) string {
	switch reason {
	case router.PinPrepare:
		return "prepare"
	case router.PinListen:
		return "listen"
	case router.PinAdvisoryLock:
		return "advisory_lock"
	case router.PinWithHold:
		return "with_hold"
	case router.PinTemp:
		return "temp"
	case router.PinSetConfig:
		return "set_config"
	case router.PinLoad:
		return "load"
	}
	return "other"
}

func (s *session) handleParse(body []byte) error {
	name, query, rest, ok := parseParseBody(body)
	if !ok {
		return protocolError("malformed Parse message")
	}
	if len(s.txLegs) > 0 {
		if info := inspectQuery(string(query)); !info.single || txControl(info.stmt.Command) {
			// Ending one leg alone would commit part of the
			// transaction: roll every shard back instead.
			s.abortCrossTx()
			return s.localError(&clientError{code: codeFeatureNotSupported, msg: "shardwire: a transaction across shards ends with a simple-protocol COMMIT or ROLLBACK; it was rolled back"})
		}
	}
	if len(name) == 0 {
		st := s.unnamedStmt
		if st == nil || st.query != string(query) || string(st.paramTypes) != string(rest) {
			// libpq's PQexecParams (pgbench -M extended) sends the same
			// unnamed Parse for every execution. A statement is a pure
			// function of its text and parameter types (and the analyzer,
			// fixed for the process's life) and is never modified, so the
			// last one is reused when they match.
			st = newPreparedStmt(query, rest, s.srv.analyzer)
		}
		if st.effects.pin != "" {
			s.pin(st.effects.pin)
		}
		s.unnamed = appendFrame(s.unnamed[:0], 'P', body)
		s.unnamedStmt = st
		s.unnamedRead = st.read
		s.unnamedEffects = nil
		if !st.effects.empty() {
			s.unnamedEffects = &st.effects
		}
		// One routing decision serves both questions below (the route
		// does not depend on anything that happens in between).
		shard, rerr := s.routeShard(st.an, st.query, st.lits, nil, st.hints)
		if !s.attached() && rerr != nil {
			// Where it runs depends on the Bind's parameters: answer now,
			// parse it on the server the Bind routes to.
			s.mu.Lock()
			s.unnamedOnServer = false
			s.respondLocked(msgParseComplete)
			s.mu.Unlock()
			return nil
		}
		if err := s.lockAttached(routeRequest{read: st.read, shard: shard}); err != nil {
			return s.localError(err)
		}
		s.unnamedOnServer = true
		s.push(slot{kind: slotParse})
		s.mu.Unlock()
		s.srvOut = append(s.srvOut, s.unnamed...)
		return nil
	}
	s.mu.Lock()
	_, exists := s.stmts[string(name)]
	s.mu.Unlock()
	if exists {
		return s.localError(&clientError{code: codeDuplicatePStatement, msg: fmt.Sprintf("prepared statement %q already exists", name)})
	}
	st := newPreparedStmt(query, rest, s.srv.analyzer)
	if st.effects.pin != "" {
		s.pin(st.effects.pin)
	}
	deferParse := s.srv.statements.known(st.key) || !s.routableWithoutParams(st)
	s.mu.Lock()
	if s.server == nil && deferParse {
		// Some server accepted this exact statement before: answer without
		// borrowing, and prepare it lazily where it is bound. A client
		// that prepares outside a transaction (pgbench -M prepared) then
		// cannot starve while others hold every server connection.
		s.addStmt(string(name), st)
		s.out = append(s.out, msgParseComplete...)
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	if err := s.lockAttached(routeRequest{read: st.read, shard: s.stmtShard(st)}); err != nil {
		return s.localError(err)
	}
	s.addStmt(string(name), st)
	if s.server.Prepared.Has(st.global, st.key) {
		s.push(slot{kind: slotSynthetic, data: msgParseComplete, name: string(name), stmt: st})
		s.mu.Unlock()
		return nil
	}
	s.prepareOnServer(st, slotParse, string(name))
	s.mu.Unlock()
	return nil
}

// addStmt records a client statement; mu is held.
func (s *session) addStmt(name string, st *preparedStmt) {
	if s.stmts == nil {
		s.stmts = map[string]*preparedStmt{}
	}
	s.stmts[name] = st
}

// prepareOnServer sends st's Parse to the attached server, closing what the
// server's statement cache evicts; mu must be held.
func (s *session) prepareOnServer(st *preparedStmt, kind slotKind, clientName string) {
	if s.server.Prepared.Contains(st.global) {
		// Same name, other text: a hash collision. Replace it.
		s.server.Prepared.Remove(st.global)
		s.push(slot{kind: slotInjectClose})
		s.srvOut = appendCloseStatement(s.srvOut, st.global)
	}
	for _, ev := range s.server.Prepared.Add(st.global, st.key) {
		s.push(slot{kind: slotInjectClose})
		s.srvOut = appendCloseStatement(s.srvOut, ev)
	}
	s.push(slot{kind: kind, name: clientName, stmt: st})
	s.srvOut = append(s.srvOut, st.parse...)
}

// lockStmt resolves a client statement name and makes sure the attached
// server holds it. It returns with mu held on success.
func (s *session) lockStmt(name []byte, bind []byte) (*preparedStmt, error) {
	st, multi, err := s.lockStmtOrMulti(name, bind)
	if err == nil && multi != nil {
		err = multiRefusal(*multi, "cross-shard statements are not supported here")
	}
	return st, err
}

// lockStmtOrMulti is lockStmt for a Bind, which may route the statement to
// several shards: then it returns their route and mu is not held.
func (s *session) lockStmtOrMulti(name []byte, bind []byte) (*preparedStmt, *router.Route, error) {
	s.mu.Lock()
	st := s.stmts[string(name)]
	s.mu.Unlock()
	if st == nil {
		return nil, nil, &clientError{code: codeUndefinedPStatement, msg: fmt.Sprintf("prepared statement %q does not exist", name)}
	}
	shard, multi, err := s.bindRoute(st, bind)
	if err != nil {
		return nil, nil, err
	}
	if multi != nil {
		return st, multi, nil
	}
	if err := s.lockAttached(routeRequest{read: st.read, shard: shard}); err != nil {
		return nil, nil, err
	}
	if !s.server.Prepared.Has(st.global, st.key) {
		s.prepareOnServer(st, slotInjectParse, "")
	}
	return st, nil, nil
}

// routableWithoutParams reports whether a statement's shard is known
// without bind parameters (it names no sharded key, or fixes it with
// literals), so its Parse can go to that shard's server at once.
func (s *session) routableWithoutParams(st *preparedStmt) bool {
	_, err := s.routeShard(st.an, st.query, st.lits, nil, st.hints)
	return err == nil
}

// stmtShard is the shard of a statement routable without parameters.
func (s *session) stmtShard(st *preparedStmt) string {
	shard, _ := s.routeShard(st.an, st.query, st.lits, nil, st.hints)
	return shard
}

// bindRoute routes a prepared statement with a Bind's parameters (bind is
// the Bind body after the statement name; nil for a Describe, which any
// shard can answer).
func (s *session) bindRoute(st *preparedStmt, bind []byte) (shard string, multi *router.Route, err error) {
	if bind == nil {
		shard, multi, err := s.route(st.an, st.query, st.lits, nil, st.hints)
		switch {
		case err != nil:
			return "", nil, nil
		case multi != nil:
			// Any of its shards can describe it: the attached one, if
			// it is one of them.
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.server != nil && slices.Contains(multi.Shards, s.attachShard) {
				return s.attachShard, nil, nil
			}
			return multi.Shards[0], nil, nil
		}
		return shard, nil, nil
	}
	if shard, ok := s.fixedShard(st.hints); ok {
		return shard, nil, nil
	}
	// The parameters are needed only while routing: parse them into the
	// session's scratch instead of allocating per Bind.
	params := &s.ws.bindScratch
	err = parseBindParamsInto(params, bind, st.types)
	if err == nil {
		shard, multi, err = s.routeAnalyzed(st.an, st.query, st.lits, params, st.hints)
	}
	clear(params.Values) // do not keep the read buffer referenced
	params.Types = nil
	return shard, multi, err
}

// bindMulti accepts the Bind of a statement that spans shards: it runs at
// the portal's Execute, across them.
func (s *session) bindMulti(st *preparedStmt, r *router.Route, portal, bind []byte) error {
	if why := s.canFanOut(st.read && !r.Replicated); why != "" {
		return s.localError(multiRefusal(*r, "cross-shard statements "+why+" are not supported yet"))
	}
	bind = append([]byte(nil), bind...)
	params, err := parseBindParams(bind, st.types)
	if err != nil {
		return err
	}
	s.pendingMulti = &multiStmt{route: *r, sql: st.query, cmd: st.cmd, read: st.read, hints: st.hints,
		paramTypes: st.paramTypes, bind: bind, params: params, portal: string(portal)}
	s.mu.Lock()
	s.respondLocked(msgBindComplete)
	s.mu.Unlock()
	return nil
}

// executeMulti runs the pending cross-shard portal if the Execute names it.
func (s *session) executeMulti(body []byte) (bool, error) {
	pm := s.pendingMulti
	if pm == nil {
		return false, nil
	}
	portal, rest, ok := cstring(body)
	if !ok || len(rest) < 4 {
		return true, protocolError("malformed Execute message")
	}
	if string(portal) != pm.portal {
		return false, nil
	}
	s.pendingMulti = nil
	if binary.BigEndian.Uint32(rest) != 0 {
		return true, s.localError(multiRefusal(pm.route, "fetching a cross-shard result in parts (Execute with a row limit) is not supported yet"))
	}
	return true, s.multiFailure(s.runMulti(pm), false)
}

// multiFailure answers the error of a statement run across shards, one
// raised before any of its answer went out (a refusal, no connection), as
// shardwire's own error: with ReadyForQuery for a simple Query, skipping
// to Sync otherwise. A client gone is passed on.
func (s *session) multiFailure(err error, simple bool) error {
	switch {
	case err == nil || errors.Is(err, errClientGone):
		return err
	case simple:
		return s.queryError(err)
	}
	return s.localError(err)
}

// ensureUnnamedLocked re-sends the client's unnamed statement to a server
// connection that does not hold it (it was parsed on another one).
func (s *session) ensureUnnamedLocked() {
	if !s.unnamedOnServer && s.unnamed != nil {
		s.push(slot{kind: slotInjectParse})
		s.srvOut = append(s.srvOut, s.unnamed...)
		s.unnamedOnServer = true
	}
}

func (s *session) handleBind(body []byte) error {
	portal, r1, ok := cstring(body)
	if !ok {
		return protocolError("malformed Bind message")
	}
	name, rest, ok := cstring(r1)
	if !ok {
		return protocolError("malformed Bind message")
	}
	var eff *queryEffects
	if len(name) == 0 {
		var shard string
		if s.unnamedStmt != nil {
			sh, multi, err := s.bindRoute(s.unnamedStmt, rest)
			if err != nil {
				return s.localError(err)
			}
			if multi != nil {
				return s.bindMulti(s.unnamedStmt, multi, portal, rest)
			}
			shard = sh
		}
		if err := s.lockAttached(routeRequest{read: s.unnamedRead, shard: shard}); err != nil {
			return s.localError(err)
		}
		s.ensureUnnamedLocked()
		if s.unnamedEffects != nil {
			eff = s.unnamedEffects
		}
		s.wrote = s.wrote || !s.unnamedRead
		s.push(slot{kind: slotBind})
		s.mu.Unlock()
		s.setPortalEffect(portal, eff)
		s.srvOut = appendFrame(s.srvOut, 'B', body)
		return nil
	}
	st, multi, err := s.lockStmtOrMulti(name, rest)
	if err != nil {
		return s.localError(err)
	}
	if multi != nil {
		return s.bindMulti(st, multi, portal, rest)
	}
	s.wrote = s.wrote || !st.read
	s.push(slot{kind: slotBind})
	s.mu.Unlock()
	if !st.effects.empty() {
		eff = &st.effects
	}
	s.setPortalEffect(portal, eff)
	var start int
	s.srvOut, start = beginFrame(s.srvOut, 'B')
	s.srvOut = append(s.srvOut, portal...)
	s.srvOut = append(s.srvOut, 0)
	s.srvOut = append(s.srvOut, st.global...)
	s.srvOut = append(s.srvOut, 0)
	s.srvOut = append(s.srvOut, rest...)
	s.srvOut = finishFrame(s.srvOut, start)
	return nil
}

func (s *session) setPortalEffect(portal []byte, eff *queryEffects) {
	if eff == nil && len(s.portalEffects) == 0 {
		return
	}
	if s.portalEffects == nil {
		s.portalEffects = map[string]*queryEffects{}
	}
	if eff == nil {
		delete(s.portalEffects, string(portal))
	} else {
		s.portalEffects[string(portal)] = eff
	}
}

func (s *session) portalEffect(execBody []byte) *queryEffects {
	if len(s.portalEffects) == 0 {
		return nil
	}
	portal, _, _ := cstring(execBody)
	return s.portalEffects[string(portal)]
}

// targetName splits the body of a Describe or Close: a target byte ('S'
// or 'P', left in body[0]) and a statement or portal name.
func targetName(body []byte, msg string) ([]byte, error) {
	if len(body) < 2 {
		return nil, protocolError("malformed " + msg + " message")
	}
	name, _, ok := cstring(body[1:])
	if !ok {
		return nil, protocolError("malformed " + msg + " message")
	}
	return name, nil
}

func (s *session) handleDescribe(body []byte) error {
	name, err := targetName(body, "Describe")
	if err != nil {
		return err
	}
	switch body[0] {
	case 'P':
		if pm := s.pendingMulti; pm != nil && string(name) == pm.portal {
			pm.describe = true // answered with the result, at Execute
			return nil
		}
		return s.forward(slotDescribe, 'D', body, nil)
	case 'S':
		if len(name) == 0 {
			if err := s.lockAttached(routeRequest{read: s.unnamedRead}); err != nil {
				return s.localError(err)
			}
			s.ensureUnnamedLocked()
			s.push(slot{kind: slotDescribe})
			s.mu.Unlock()
			s.srvOut = appendFrame(s.srvOut, 'D', body)
			return nil
		}
		st, err := s.lockStmt(name, nil)
		if err != nil {
			return s.localError(err)
		}
		s.push(slot{kind: slotDescribe})
		s.mu.Unlock()
		var start int
		s.srvOut, start = beginFrame(s.srvOut, 'D')
		s.srvOut = append(s.srvOut, 'S')
		s.srvOut = append(s.srvOut, st.global...)
		s.srvOut = append(s.srvOut, 0)
		s.srvOut = finishFrame(s.srvOut, start)
		return nil
	default:
		return protocolError(fmt.Sprintf("invalid DESCRIBE message subtype %d", body[0]))
	}
}

func (s *session) handleClose(body []byte) error {
	name, err := targetName(body, "Close")
	if err != nil {
		return err
	}
	switch body[0] {
	case 'S':
		// Statements live on under their global names for other clients;
		// the client's Close is answered here.
		s.mu.Lock()
		if len(name) == 0 {
			s.unnamed = s.unnamed[:0]
			s.unnamed = nil
		} else {
			delete(s.stmts, string(name))
		}
		s.respondLocked(msgCloseComplete)
		s.mu.Unlock()
		return nil
	case 'P':
		s.mu.Lock()
		if s.server == nil {
			// Portals die with their transaction: nothing to close.
			s.respondLocked(msgCloseComplete)
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		return s.forward(slotClose, 'C', body, nil)
	default:
		return protocolError(fmt.Sprintf("invalid CLOSE message subtype %d", body[0]))
	}
}

// respondLocked answers the client in order with everything pending.
func (s *session) respondLocked(msg []byte) {
	if s.server != nil {
		s.push(slot{kind: slotSynthetic, data: msg})
	} else {
		s.out = append(s.out, msg...)
	}
}

func (s *session) handleSync() error {
	s.clientSkip = false
	s.pendingMulti = nil
	s.mu.Lock()
	if s.server == nil {
		s.out = appendReady(s.out, s.idleStatus())
		s.mu.Unlock()
		return nil
	}
	s.push(slot{kind: slotSync})
	s.mu.Unlock()
	s.srvOut = append(s.srvOut, 'S', 0, 0, 0, 4)
	return nil
}

// flushServer writes pending client messages to the attached server.
func (s *session) flushServer() { s.flushServerOrDefer(false) }

// flushServerThenRead is flushServer for serve, which reads the replies
// next (relayReplies) when the client has sent everything: then the write
// is left to the read (sendPending), which arms its wait before writing
// and so tries no read in vain (sockio.WriteAwaitReadable).
func (s *session) flushServerThenRead() { s.flushServerOrDefer(s.client.buffered() == 0) }

func (s *session) flushServerOrDefer(mayDefer bool) {
	if len(s.srvOut) == 0 {
		return
	}
	last := s.srvOut[lastFrameStart(s.srvOut)]
	s.flushPoint = last == 'S' || last == 'Q' || last == 'H' || last == 'c' || last == 'f' || last == 'F'
	s.mu.Lock()
	c := s.server
	if c != nil {
		s.unanswered += len(s.srvOut)
		if s.unanswered > 32<<10 {
			// A big pipeline: read replies while we write, or the server
			// could block on its replies while we block on it.
			s.startRelayLocked()
		}
	}
	deferred := mayDefer && c != nil && !s.relayRunning && s.flushPoint && s.copyStarted <= s.copyEnded && c.Reader.Buffered() == 0
	s.mu.Unlock()
	if deferred {
		s.sendPending = true
		return
	}
	s.sendTo(c, s.srvOut)
}

// lastFrameStart returns where the last frame in buf starts.
func lastFrameStart(buf []byte) int {
	i := 0
	for {
		n := int(binary.BigEndian.Uint32(buf[i+1:]))
		if i+1+n >= len(buf) {
			return i
		}
		i += 1 + n
	}
}

// relayReplies reads the attached server's replies on the client goroutine
// until nothing more is due: the queue is empty (the transaction waits for
// the client), the server waits for COPY data, or the last message sent
// does not make the server answer yet. A serverLoop goroutine, when one
// runs, does this instead. It returns false when the session must end.
func (s *session) relayReplies() bool {
	if s.sendPending {
		// Whatever way this returns, the requests must have gone.
		defer s.sendNow()
	}
	if !s.flushPoint || s.copyStarted > s.copyEnded {
		return true
	}
	for {
		s.mu.Lock()
		c, p := s.server, s.pool
		if c != nil && !s.relayRunning {
			s.emitSynthetic()
		}
		if c == nil || s.relayRunning || s.queueEmpty() {
			if c != nil && s.pinned != "" {
				// Pinned: NOTIFY and the like must reach the idle client.
				s.startRelayLocked()
			}
			s.unanswered = 0
			s.mu.Unlock()
			return true
		}
		s.mu.Unlock()
		// (Requests left pending go out in serverAnswersSoon, before it
		// waits; frames already buffered need no wait.)
		if c.Reader.Buffered() == 0 && !s.serverAnswersSoon(c) {
			// A slow statement: hand the reading to a relay goroutine and
			// go back to the client, so that a client that leaves or
			// cancels meanwhile is noticed at once.
			s.mu.Lock()
			s.startRelayLocked()
			s.mu.Unlock()
			return true
		}
		typ, body, err := s.srvFrames.next()
		if err != nil {
			if nc, _ := s.retryElsewhere(c, p, err); nc != nil {
				s.srvFrames = frameReader{r: nc.Reader, max: 1 << 30}
				continue
			}
			s.serverLost(c, p, err)
			return true
		}
		s.mu.Lock()
		var maybeRelease bool
		typ, maybeRelease = s.onServerMessages(&s.srvFrames, typ, body)
		flush := maybeRelease || c.Reader.Buffered() == 0 || len(s.out) > 64<<10
		fatal := s.injectFailed
		// As in serverLoop: release under the lock that queued the
		// ReadyForQuery, and give the connection back before writing to
		// the client, so that the next borrower does not wait for that
		// system call (the connection is clean whether or not the write
		// succeeds).
		released := fatal == "" && maybeRelease && s.releaseLocked(c)
		s.mu.Unlock()
		if fatal != "" {
			s.injectFailure(c, p, fatal)
			return false
		}
		if released {
			s.returnReleased(p, c)
		}
		if typ == 'G' || typ == 'W' {
			s.copyStarted++
		}
		if flush {
			if err := s.flushClient(); err != nil {
				return false
			}
		}
		if s.copyStarted > s.copyEnded {
			return true
		}
	}
}

// relayPatience is how long the client goroutine waits for a reply before it
// leaves the reading to a relay goroutine, where no idle waiter sweeps.
const relayPatience = 5 * time.Millisecond

// serverAnswersSoon waits for the server to send something, consuming
// nothing, and reports false when the statement is slow: no answer within
// relayPatience, or before the idle waiter's next sweep (within parkSweep)
// gives the read a past deadline. The sweep saves two deadline changes, a
// runtime timer each, per statement. Other errors are left for the next
// read.
func (s *session) serverAnswersSoon(c *pool.Conn) bool {
	var err error
	if s.srv.idle == nil {
		_ = c.SetReadDeadline(time.Now().Add(relayPatience))
		err = s.awaitServer(c)
		_ = c.SetReadDeadline(time.Time{})
	} else {
		s.waitState.Store(waitServer)
		err = s.awaitServer(c)
		if s.waitState.Swap(waitBusy) == waitServerKick {
			// The sweep holds mu until its SetReadDeadline is done:
			// wait for it, then take its deadline back.
			s.mu.Lock()
			//lint:ignore SA2001 waiting for the sweep to leave mu is the point
			s.mu.Unlock()
			_ = c.SetReadDeadline(time.Time{})
		}
	}
	if err == nil {
		// Before declaring ne: errors.As makes it escape, and the common
		// case should not allocate.
		return true
	}
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// awaitServer sends the requests left pending for c, if any, and waits
// until c has something to read, consuming nothing.
func (s *session) awaitServer(c *pool.Conn) error {
	if s.sendPending {
		s.sendPending = false
		out := s.srvOut
		n, err := 0, error(nil)
		if sc, ok := c.Conn.(*sockio.Conn); ok {
			n, err = sc.WriteAwaitReadable(out)
		}
		if n == len(out) {
			s.resetSrvOut()
			return err // readable, or the wait ended (deadline, Close)
		}
		// Not all sent (a full send buffer, an error, a past deadline):
		// the rest the usual way, then the usual wait.
		s.sendTo(c, out[n:])
	}
	_, err := c.Reader.Peek(1)
	return err
}

// sendNow writes the requests left pending for the attached server.
func (s *session) sendNow() {
	if !s.sendPending {
		return
	}
	s.sendPending = false
	s.mu.Lock()
	c := s.server
	s.mu.Unlock()
	s.sendTo(c, s.srvOut)
}

// sendTo writes b (all or the rest of srvOut) to c, if attached, and
// empties srvOut. A failed write closes c: its reader sees it broken and
// reports it.
func (s *session) sendTo(c *pool.Conn, b []byte) {
	if c != nil {
		if _, err := c.Write(b); err != nil {
			_ = c.Close()
		}
	}
	s.resetSrvOut()
}

// resetSrvOut empties srvOut once written, dropping a big buffer.
func (s *session) resetSrvOut() {
	if cap(s.srvOut) > 256<<10 {
		s.srvOut = nil
	} else {
		s.srvOut = s.srvOut[:0]
	}
}

// injectFailure ends a session whose state could not be applied on a server
// connection: the connection's state is unknown, so it goes, and so does the
// client, as Postgres ends a session whose startup parameters it rejects.
func (s *session) injectFailure(c *pool.Conn, p *pool.Pool, why string) {
	s.mu.Lock()
	s.out = appendError(s.out, "FATAL", codeConnectionException, "could not apply session state on a server connection: "+why)
	s.detachLocked()
	s.slots, s.head = s.slots[:0], 0
	s.mu.Unlock()
	p.Discard(c)
	_ = s.flushClient()
	_ = s.client.Close()
}

// flushClient writes what is pending for the client, in order.
func (s *session) flushClient() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	buf := s.out
	s.out = s.spare[:0]
	s.spare = nil
	s.mu.Unlock()
	if len(buf) == 0 {
		s.mu.Lock()
		s.spare = buf
		s.mu.Unlock()
		return nil
	}
	_, err := s.client.Write(buf)
	if cap(buf) > 16<<10 {
		buf = nil
	}
	s.mu.Lock()
	s.spare = buf[:0]
	s.mu.Unlock()
	if err != nil {
		_ = s.client.Close()
		return errClientGone
	}
	return nil
}

// serverLoop relays one attached server connection's replies until it is
// released, lost, or the session ends.
func (s *session) serverLoop(c *pool.Conn, p *pool.Pool) {
	defer s.relay.Done()
	defer s.relayLive.Add(-1)
	fr := frameReader{r: c.Reader, max: 1 << 30}
	for {
		typ, body, err := fr.next()
		if err != nil {
			if nc, np := s.retryElsewhere(c, p, err); nc != nil {
				c, p = nc, np
				fr = frameReader{r: c.Reader, max: 1 << 30}
				continue
			}
			s.serverLost(c, p, err)
			return
		}
		s.mu.Lock()
		_, maybeRelease := s.onServerMessages(&fr, typ, body)
		flush := maybeRelease || c.Reader.Buffered() == 0 || len(s.out) > 64<<10
		fatal := s.injectFailed
		// Release under the lock that queued the ReadyForQuery: once it
		// is in s.out any flush (the client goroutine's too) may deliver
		// it, and the client's next statement must find the connection
		// gone: it may need another shard, or be a read to retry
		// elsewhere if its node dies.
		released := fatal == "" && maybeRelease && s.releaseLocked(c)
		s.mu.Unlock()
		if fatal != "" {
			s.injectFailure(c, p, fatal)
			return
		}
		if released {
			s.returnReleased(p, c)
			_ = s.flushClient()
			return
		}
		if flush {
			if err := s.flushClient(); err != nil {
				return // run() notices the closed client and cleans up
			}
		}
	}
}

// releaseLocked detaches c if the session is between transactions with
// nothing in flight; mu is held. The caller then calls returnReleased.
func (s *session) releaseLocked(c *pool.Conn) bool {
	for s.cancelling > 0 {
		// A cancel request is on its way to this backend: keep it until
		// delivered, so it cannot hit another client's query.
		s.cond.Wait()
	}
	if s.server != c || !s.queueEmpty() || s.txStatus != 'I' || s.pinned != "" || !s.txnMode || s.closing {
		return false
	}
	s.detachLocked()
	s.unnamedOnServer = false
	if s.attachWrite {
		s.markWrite(s.attachShard)
	}
	return true
}

// returnReleased gives a connection releaseLocked detached to its pool.
func (s *session) returnReleased(p *pool.Pool, c *pool.Conn) {
	p.Return(c)
	if s.srv.draining.Load() {
		// Between transactions: wake run() so it can say goodbye.
		_ = s.client.SetReadDeadline(time.Now())
	}
}

// retryElsewhere re-sends a read that died with its replica, before any of
// its answer reached the client, to another node, once. It returns the new
// connection, or nil when the loss must be reported instead.
func (s *session) retryElsewhere(c *pool.Conn, p *pool.Pool, cause error) (*pool.Conn, *pool.Pool) {
	s.mu.Lock()
	q, desc := s.retryQuery, s.retryDesc
	s.retryQuery, s.retryDesc = nil, nil
	// q and desc are ours now: later queries get new buffers.
	s.ws.retryBuf, s.ws.retryDescBuf = nil, nil
	if q == nil || s.closing || s.server != c || s.txStatus != 'I' {
		s.mu.Unlock()
		return nil, nil
	}
	shard := s.attachShard
	s.mu.Unlock()
	if ch := s.srv.health(); ch != nil {
		ch.ReportFailure(c.Addr(), cause)
	}
	np := s.pickReplicaExcept(shard, c.Addr())
	toWriter := np == nil
	if toWriter {
		addr, err := s.writer(shard)
		if err != nil {
			return nil, nil
		}
		np = s.srv.pool(addr, s.user)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.config().Pool.AcquireTimeout)
	nc, err := np.Borrow(ctx)
	cancel()
	if err != nil {
		return nil, nil
	}
	nc.Prepared.SetMax(s.srv.config().Pool.PreparedStatementsCache)
	var out []byte
	s.mu.Lock()
	if s.closing || s.server != c {
		s.mu.Unlock()
		np.Return(nc)
		return nil, nil
	}
	// Nothing was answered: the queue is the state sync (if any) and the
	// Query. Rebuild it for the new connection.
	s.slots, s.head = s.slots[:0], 0
	if nc.StateFingerprint != s.params.fp {
		s.push(slot{kind: slotInjectQuery})
		out = appendQuery(out, s.params.applySQL())
		nc.StateFingerprint = s.params.fp
	}
	eff := (*queryEffects)(nil)
	s.push(slot{kind: slotQuery, effects: eff})
	out = append(out, q...)
	s.replayDesc = desc
	s.server, s.pool = nc, np
	s.target = s.targetFor(shard, np, toWriter)
	s.mu.Unlock()
	p.Discard(c)
	s.logger().Info("read retried on another node", "failed", c.Addr(), "node", np.Addr(), "err", cause)
	if _, err := nc.Write(out); err != nil {
		_ = nc.Close()
	}
	return nc, np
}

// serverLost reports a broken server connection to the client.
func (s *session) serverLost(c *pool.Conn, p *pool.Pool, err error) {
	s.mu.Lock()
	if s.closing || s.parking || s.server != c {
		s.mu.Unlock()
		return
	}
	s.logger().Warn("server connection lost", "node", c.Addr(), "err", err)
	if ch := s.srv.health(); ch != nil {
		ch.ReportFailure(c.Addr(), err)
	}
	if isConnectionError(err) {
		// Its siblings idling in the pool most likely died with it.
		p.DiscardIdle()
	}
	busy := !s.queueEmpty() || s.txStatus != 'I'
	fatal := !s.txnMode || s.pinned != ""
	if busy || fatal {
		sev := "ERROR"
		if fatal {
			sev = "FATAL"
		}
		s.out = appendError(s.out, sev, codeConnectionFailure, fmt.Sprintf("server connection to %s was lost: %v", c.Addr(), err))
	}
	// Every pending Sync or Query still gets its ReadyForQuery.
	for i := s.head; i < len(s.slots); i++ {
		switch s.slots[i].kind {
		case slotSync, slotQuery, slotFunction:
			s.out = appendReady(s.out, 'I')
		}
		s.forgetSlot(&s.slots[i])
	}
	s.slots, s.head = s.slots[:0], 0
	s.detachLocked()
	s.txStatus = 'I'
	s.txnEffects, s.cycleEffects, s.cycleFailed = nil, nil, false
	s.mu.Unlock()
	p.Discard(c)
	_ = s.flushClient()
	if fatal {
		_ = s.client.Close()
	}
}

// onServerMessage relays one server message; mu is held. It reports whether
// the server connection may now be released.
func (s *session) onServerMessage(typ byte, body []byte) bool {
	switch typ {
	case 'S': // ParameterStatus: pass on what the client has not seen.
		name, rest, ok := cstring(body)
		if !ok {
			return false
		}
		val, _, _ := cstring(rest)
		if string(name) == "TimeZone" {
			s.loc.Store(loadLocation(string(val)))
		}
		if s.seenValue(name) != string(val) {
			if s.seen == nil {
				s.seen = map[string]string{}
			}
			s.seen[string(name)] = string(val)
			s.out = appendFrame(s.out, typ, body)
		}
		return false
	case 'A': // NotificationResponse
		s.out = appendFrame(s.out, typ, body)
		return false
	case 'N': // NoticeResponse: ours are not the client's business.
		if !s.queueEmpty() && s.slots[s.head].kind.injected() {
			return false
		}
		if s.txnMode && s.pinned == "" {
			// A backend's "terminating connection due to immediate
			// shutdown" warning is about the server connection, which
			// the client does not own: the loss is reported (or the read
			// retried) when the connection ends.
			if code, _ := errorFields(body); code == codeAdminShutdown {
				return false
			}
		}
		s.out = appendFrame(s.out, typ, body)
		return false
	}
	s.emitSynthetic()
	if typ == 'E' && s.txnMode && s.pinned == "" {
		// The client's session is with shardwire, not with this backend:
		// a backend's FATAL (shutdown, termination) fails the statement,
		// not the client.
		body = downgradeFatal(body)
	}
	if s.queueEmpty() {
		// Unsolicited: a backend's goodbye before it closes.
		if typ == 'E' && s.txnMode && s.pinned == "" {
			return false
		}
		s.out = appendFrame(s.out, typ, body)
		return false
	}
	sl := &s.slots[s.head]
	inject := sl.kind.injected()
	if !inject {
		switch {
		case typ == 'T' && s.replayDesc != nil && sl.kind == slotQuery && string(body) == string(s.replayDesc):
			// The retried query's RowDescription: the client has it.
			s.replayDesc = nil
			return false
		case typ == 'T' && s.retryQuery != nil && s.retryDesc == nil && sl.kind == slotQuery:
			s.retryDesc = append(s.ws.retryDescBuf[:0], body...)
			s.ws.retryDescBuf = s.retryDesc
		default:
			s.retryQuery, s.retryDesc = nil, nil
		}
		s.replayDesc = nil
		s.out = appendFrame(s.out, typ, body)
	}
	switch typ {
	case 'E':
		if !inject {
			code, _ := errorFields(body)
			s.srv.metrics.Error(code)
			s.cycleFailed = true
		}
		switch sl.kind {
		case slotQuery, slotFunction, slotSync:
			sl.failed = true
		case slotInjectQuery:
			_, msg := errorFields(body)
			s.injectFailed = msg
		default:
			if inject && sl.kind != slotInjectAbort {
				// Our own Parse failed: the client must hear why.
				s.out = appendFrame(s.out, typ, body)
			}
			s.forgetSlot(sl)
			s.pop()
			s.skipToSync()
		}
	case 'Z':
		if len(body) != 1 {
			return false
		}
		s.txStatus = body[0]
		if sl.kind == slotQuery {
			s.observe(sl)
		}
		switch sl.kind {
		case slotSync, slotQuery, slotFunction:
			if sl.kind == slotQuery && !sl.failed {
				s.takeQueryEffects(sl, false)
			}
			s.commitEffects(body[0])
		}
		s.pop()
		s.emitSynthetic()
		if s.clientWaiting {
			// A relay goroutine read the reply the client is waiting
			// behind: the server may now wait for the client.
			s.armIdleTxLocked(s.srv.config().Limits.IdleTransactionTimeout)
		}
		return s.queueEmpty() && s.txStatus == 'I'
	case '1':
		if sl.kind == slotParse || sl.kind == slotInjectParse {
			if sl.stmt != nil {
				s.srv.statements.add(sl.stmt.key)
			}
			s.pop()
		}
	case '2':
		if sl.kind == slotBind {
			s.pop()
		}
	case '3':
		if sl.kind == slotClose || sl.kind == slotInjectClose {
			s.pop()
		}
	case 'T', 'n':
		if sl.kind == slotDescribe {
			s.pop()
		}
	case 'C':
		tag, _, _ := cstring(body)
		s.rolledBack = string(tag) == "ROLLBACK"
		if string(tag) == "DEALLOCATE ALL" && s.server != nil {
			// Not transactional: gone from the server whatever the
			// transaction does next.
			s.server.Prepared.Clear()
		}
		eff := sl.effects // pop clears sl
		switch sl.kind {
		case slotExecute:
			if sl.effects != nil {
				s.cycleEffects = append(s.cycleEffects, sl.effects)
			}
			s.observe(sl)
			s.pop()
		case slotQuery:
			if eff != nil && eff.steps != nil {
				// One statement of several done: its own effects
				// count from now, and its own decide the tag.
				eff = s.takeQueryEffects(sl, true)
			}
		}
		if !inject && s.hasEffects() {
			// Decided now, whatever follows: AND CHAIN opens another
			// block at once, which must neither keep what this ROLLBACK
			// undid nor undo what this COMMIT kept. (ROLLBACK TO has the
			// tag ROLLBACK too; its statement says which it was.)
			switch {
			case string(tag) == "COMMIT":
				s.applyEffects()
				s.forgetEffects()
			case string(tag) == "ROLLBACK" && !eff.rollsBackTo():
				s.forgetEffects()
			}
		}
	case 'I', 's':
		if sl.kind == slotExecute {
			s.observe(sl)
			s.pop()
		}
	}
	return false
}

// onServerMessages is onServerMessage for one message and then, under the
// same hold of mu, for the whole frames fr already has buffered behind it
// (the rest of a reply usually comes in the same read), up to the end of the
// transaction, a COPY, an injected statement's failure, a full client
// buffer or nothing more expected. It returns the last message's type and
// onServerMessage's answer for it.
func (s *session) onServerMessages(fr *frameReader, typ byte, body []byte) (byte, bool) {
	maybeRelease := s.onServerMessage(typ, body)
	for !maybeRelease && typ != 'G' && typ != 'W' && s.injectFailed == "" && len(s.out) <= 64<<10 && fr.buffered() {
		// As before any message: our own answers due first.
		s.emitSynthetic()
		if s.queueEmpty() {
			break
		}
		typ, body, _ = fr.next() // a whole frame of valid length: no error
		maybeRelease = s.onServerMessage(typ, body)
	}
	return typ, maybeRelease
}

// epoch starts the session's monotonic clock; monoNow is never 0 after it.
var epoch = time.Now().Add(-time.Nanosecond)

// monoNow reads the monotonic clock in nanoseconds: one clock read where
// time.Now takes two (wall and monotonic), for per-statement latency.
func monoNow() int64 { return int64(time.Since(epoch)) }

// monoTime is time.Now from one clock read: its wall part is epoch's plus
// the monotonic time since, and comparisons with other times that carry a
// monotonic reading (time.Now's) use the monotonic parts.
func monoTime() time.Time { return epoch.Add(time.Duration(monoNow())) }

// observe records a finished statement's duration; mu is held.
func (s *session) observe(sl *slot) {
	if m := s.metricsNode(); m != nil && sl.start != 0 {
		m.Query(float64(monoNow()-sl.start) / 1e9)
	}
}

// emitSynthetic sends the answers shardwire gives itself once they are due.
func (s *session) emitSynthetic() {
	for !s.queueEmpty() && s.slots[s.head].kind == slotSynthetic {
		s.out = append(s.out, s.slots[s.head].data...)
		s.pop()
	}
}

// skipToSync drops the replies the server will not send after an error:
// Postgres ignores every message up to the next Sync.
func (s *session) skipToSync() {
	for !s.queueEmpty() && s.slots[s.head].kind != slotSync && s.slots[s.head].kind != slotInjectSync {
		s.forgetSlot(&s.slots[s.head])
		s.pop()
	}
}

// forgetSlot undoes what a Parse slot promised, since the server did not
// (or will not) create the statement.
func (s *session) forgetSlot(sl *slot) {
	if sl.stmt == nil {
		return
	}
	if sl.kind != slotSynthetic && s.server != nil {
		s.server.Prepared.Remove(sl.stmt.global)
	}
	if sl.name != "" && s.stmts[sl.name] == sl.stmt {
		delete(s.stmts, sl.name)
	}
}

// takeQueryEffects moves the effects of sl's Query to cycleEffects: those
// of its next statement only (next; for a CommandComplete of a Query of
// several statements), or all not moved yet. It returns the effects of the
// last statement it moved (nil: that statement had none).
func (s *session) takeQueryEffects(sl *slot, next bool) *queryEffects {
	e := sl.effects
	if e == nil {
		return nil
	}
	if e.steps == nil {
		if next {
			return nil
		}
		s.cycleEffects = append(s.cycleEffects, e)
		return e
	}
	left := e.stepsLeft(sl.step)
	if next && len(left) > 1 {
		left = left[:1]
	}
	var last *queryEffects
	for _, step := range left {
		if step != nil {
			s.cycleEffects = append(s.cycleEffects, step)
		}
		last = step
	}
	sl.step += len(left)
	return last
}

// commitEffects applies session-state changes once Postgres has made them
// stick: at once outside a transaction, at COMMIT inside one.
func (s *session) commitEffects(status byte) {
	switch status {
	case 'T', 'E':
		// The block goes on; an aborted one may still be rescued by
		// ROLLBACK TO a savepoint, which keeps the changes made before it.
		s.txnEffects = append(s.txnEffects, s.cycleEffects...)
	case 'I':
		// Idle after an error in this cycle: what was not committed at a
		// CommandComplete (an implicit transaction, as in a pipeline up
		// to its Sync or a Query string's statements after its last
		// COMMIT; or a block whose COMMIT failed) was rolled back.
		if !s.rolledBack && !s.cycleFailed && s.hasEffects() {
			s.applyEffects()
		}
		s.forgetEffects()
	}
	clear(s.cycleEffects)
	s.cycleEffects = s.cycleEffects[:0]
	s.rolledBack = false
	s.cycleFailed = false
}

// hasEffects reports whether the transaction so far changed session state.
func (s *session) hasEffects() bool { return len(s.txnEffects) > 0 || len(s.cycleEffects) > 0 }

// forgetEffects drops the changes of the transaction so far.
func (s *session) forgetEffects() {
	clear(s.txnEffects)
	clear(s.cycleEffects)
	s.txnEffects, s.cycleEffects = s.txnEffects[:0], s.cycleEffects[:0]
}

// applyEffects makes the changes of a finished transaction (txnEffects, then
// cycleEffects) the session's state.
func (s *session) applyEffects() {
	var buf [8]setChange
	changes := survivingChanges(buf[:0], s.txnEffects, s.cycleEffects)
	resets, discardAll := false, false
	for _, sc := range changes {
		switch sc.kind {
		case changeResetAll:
			s.params.restore(&s.startupParams)
			resets = true
		case changeReset:
			if v, ok := s.startupParams.vals[sc.name]; ok {
				s.params.set(sc.name, v)
			} else {
				s.params.reset(sc.name)
			}
			resets = true
		case changeDiscardAll:
			s.params.restore(&s.startupParams)
			clear(s.stmts)
			s.unnamed = nil
			discardAll = true
		default:
			s.params.set(sc.name, sc.sql)
		}
	}
	if s.server != nil {
		if discardAll {
			s.server.Prepared.Clear()
		}
		s.server.StateFingerprint = s.params.fp
		if discardAll || resets {
			// The server went back to its own defaults, not the client's
			// startup values: re-apply before its next use.
			s.server.StateFingerprint = dirtyFingerprint
		}
	}
}

// dirtyFingerprint marks a server connection whose session state is not what
// any client expects (fingerprints of real states are odd or 0).
const dirtyFingerprint = 2

// close ends the session: the server connection goes back to the pool if it
// is clean, is reset (session mode) or cancelled and discarded otherwise.
func (s *session) close() {
	if len(s.txLegs) > 0 {
		// Mid cross-shard transaction: closing the connections rolls
		// every shard back.
		s.abortCrossTx()
	}
	if ci := s.copyIn; ci != nil {
		// The client left mid-COPY: closing the connections aborts the
		// shards' COPYs.
		ci.f.discard(errClientGone)
		s.copyIn = nil
	}
	s.mu.Lock()
	s.closing = true
	c, p := s.server, s.pool
	clean := s.queueEmpty() && s.txStatus != 'T' && s.txStatus != 'E'
	needsReset := !s.txnMode || s.pinned != ""
	s.detachLocked()
	s.mu.Unlock()
	if c != nil {
		if clean {
			// Stop the relay goroutine without closing the socket.
			_ = c.SetReadDeadline(time.Now())
			s.relay.Wait()
			_ = c.SetReadDeadline(time.Time{})
			if needsReset {
				if err := resetServer(c, s.srv.config().Pool.ConnectTimeout); err != nil {
					s.logger().Debug("server reset failed", "err", err)
					p.Discard(c)
				} else {
					p.Return(c)
				}
			} else {
				p.Return(c)
			}
		} else {
			// Mid-transaction: stop the backend's work now, then drop it.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = p.Cancel(ctx, c)
			cancel()
			p.Discard(c)
			s.relay.Wait()
		}
	}
	_ = s.client.Close()
	s.end()
}

// end forgets the session once, whichever way it ended.
func (s *session) end() {
	if s.ended.CompareAndSwap(false, true) {
		s.srv.unregister(s)
		s.srv.wg.Done()
	}
}

// resetServer runs DISCARD ALL on an idle connection before another client
// gets it, and forgets what the connection held.
func resetServer(c *pool.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(appendQuery(nil, "DISCARD ALL")); err != nil {
		return err
	}
	fr := frameReader{r: c.Reader, max: 1 << 20}
	failed := false
	for {
		typ, body, err := fr.next()
		if err != nil {
			return err
		}
		switch typ {
		case 'E':
			failed = true
		case 'Z':
			if failed || len(body) != 1 || body[0] != 'I' {
				return fmt.Errorf("DISCARD ALL failed")
			}
			c.Prepared.Clear()
			c.StateFingerprint = 0
			return nil
		}
	}
}

// cancelRequest forwards a client's CancelRequest to the backend that runs
// its query, if any.
func (s *session) cancelRequest() {
	s.mu.Lock()
	c, p := s.server, s.pool
	var legs []*leg
	if c == nil && s.fan != nil {
		legs = append(legs, s.fan.legs...)
	}
	if c == nil && len(legs) == 0 {
		s.mu.Unlock()
		return
	}
	s.cancelling++
	if s.cond == nil {
		// Made on first use: most sessions are never cancelled.
		s.cond = sync.NewCond(&s.mu)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if c != nil {
		if err := p.Cancel(ctx, c); err != nil {
			s.logger().Warn("cancel request failed", "err", err)
		}
	}
	for _, l := range legs {
		if err := l.p.Cancel(ctx, l.c); err != nil {
			s.logger().Warn("cancel request failed", "shard", l.shard, "err", err)
		}
	}
	cancel()
	s.mu.Lock()
	s.cancelling--
	if s.cancelling == 0 {
		s.cond.Broadcast()
	}
	s.mu.Unlock()
}

// readPipelineLocked reports whether the attached connection only serves a
// pipeline of reads outside any transaction block, which may end early to
// let the pipeline move to another shard; mu is held.
func (s *session) readPipelineLocked() bool {
	return s.txnMode && s.pinned == "" && s.txStatus == 'I' && len(s.deferred) == 0 &&
		len(s.txLegs) == 0 && !s.wrote
}

// abortedTx answers a simple Query in a transaction block that failed
// before reaching a server: every statement but COMMIT and ROLLBACK gets
// 25P02, as Postgres answers in an aborted transaction. (The extended
// protocol is not intercepted: its statements then run in the block.) It
// reports whether the message was answered.
func (s *session) abortedTx(typ byte, body []byte) (bool, error) {
	if typ != 'Q' {
		if typ == 'P' || typ == 'B' || typ == 'E' {
			s.deferredFailed = false
		}
		return false, nil
	}
	if len(body) > 0 && body[len(body)-1] == 0 {
		info := inspectQuery(string(body[:len(body)-1]))
		if info.single && (info.stmt.Command == router.CmdCommit || info.stmt.Command == router.CmdRollback) {
			return false, nil
		}
	}
	return true, s.queryError(&clientError{code: "25P02", msg: "current transaction is aborted, commands ignored until end of transaction block"})
}
