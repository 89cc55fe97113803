package pool

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardwire/shardwire/sockio"
)

// ErrTimeout is returned by Borrow when no connection became free in time.
var ErrTimeout = errors.New("timed out waiting for a server connection")

// ErrClosed is returned by Borrow on a closed pool.
var ErrClosed = errors.New("pool is closed")

// Options configure one pool.
type Options struct {
	Addr     string // host:port
	User     string
	Password string
	Database string

	Size           int
	MinIdle        int
	IdleTimeout    time.Duration
	MaxLifetime    time.Duration
	ConnectTimeout time.Duration

	// TLS, if set, is asked for with an SSLRequest on every connection
	// (and cancel request); a server that declines is an error unless
	// TLSOptional.
	TLS         *tls.Config
	TLSOptional bool

	// Breaker, if set, is asked before every dial and told every result, so
	// a dead node is not dialled by every client (health's circuit breaker).
	Breaker Breaker

	// Connect, if set, replaces dialling Postgres: it returns a connection
	// that has completed startup (benchmarks use an in-memory server).
	Connect func(ctx context.Context) (net.Conn, ServerInfo, error)

	Logger *slog.Logger
}

// Breaker decides whether a node may be dialled now.
type Breaker interface {
	AllowDial(addr string) bool
	DialResult(addr string, err error)
}

// ErrBreakerOpen is returned by Borrow while the node's circuit breaker
// refuses dials after repeated failures.
var ErrBreakerOpen = errors.New("node is not being dialled after repeated connection failures")

// ServerInfo is what a backend told a new connection at startup.
type ServerInfo struct {
	PID       uint32
	SecretKey []byte
	Params    map[string]string
}

// Conn is one server connection. Its exported state fields belong to whoever
// has borrowed it; the pool touches them only while the connection is idle.
type Conn struct {
	net.Conn
	// Reader buffers what the server sends.
	Reader *bufio.Reader
	// PID and SecretKey identify the backend for cancel requests.
	PID       uint32
	SecretKey []byte
	// Params holds the ParameterStatus values the server reported at startup.
	Params map[string]string

	// Prepared tracks the proxy-global prepared statements this backend holds.
	Prepared *StatementCache
	// StateFingerprint identifies the session parameters applied to this
	// backend (0: the server's defaults).
	StateFingerprint uint64

	pool     *Pool
	created  int64 // monoNow when opened
	returned int64 // monoNow when last returned or opened
	done     bool
}

// Addr returns the address of the node this connection talks to.
func (c *Conn) Addr() string { return c.pool.opts.Addr }

// Stats is a snapshot of a pool's counters.
type Stats struct {
	Open, Idle, Waiting int
	Borrows, Dials      uint64
	DialErrors          uint64
	Discards            uint64
	WaitTime            time.Duration
}

// Pool is a bounded set of connections to one node as one user.
type Pool struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	idle    []*Conn
	open    int // idle + borrowed + being dialled
	waiters waitQueue
	closed  bool
	// expiry fires at expiryAt, the earliest waiter deadline it was armed
	// for, and times out every waiter past its deadline.
	expiry   *time.Timer
	expiryAt time.Time
	params   map[string]string

	borrows, dials, dialErrors, discards atomic.Uint64
	waitNanos                            atomic.Int64
	inUse                                atomic.Int64 // borrowed, not yet back

	stop chan struct{}
	wg   sync.WaitGroup
}

// grant is what a waiter is handed by whoever takes it off the queue: a
// connection, the right to dial one (open already counted for it), or the
// end of its wait.
type grant struct {
	kind grantKind
	c    *Conn
}

type grantKind uint8

const (
	grantConn grantKind = iota
	grantDial
	grantTimeout   // its deadline passed
	grantClosed    // the pool closed
	grantCancelled // (never sent) the waiter's context ended
)

// waiter is one Borrow waiting its turn. Grants are sent with mu held by
// whoever removes the waiter from the queue, exactly one per wait, so the
// channel (capacity 1) is empty again once the waiter has received it and
// the waiter can be reused.
type waiter struct {
	ch       chan grant
	deadline time.Time // zero: none
}

var waiters = sync.Pool{New: func() any { return &waiter{ch: make(chan grant, 1)} }}

// New creates a pool; it dials nothing until the first Borrow.
func New(opts Options) *Pool {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Size < 1 {
		opts.Size = 1
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	p := &Pool{opts: opts, log: opts.Logger.With("node", opts.Addr, "user", opts.User), stop: make(chan struct{})}
	if opts.IdleTimeout > 0 || opts.MaxLifetime > 0 {
		p.wg.Add(1)
		go p.reap()
	}
	return p
}

// Addr returns the node address.
func (p *Pool) Addr() string { return p.opts.Addr }

// User returns the user this pool logs in as.
func (p *Pool) User() string { return p.opts.User }

// Borrow returns a connection for the caller's exclusive use. It waits until
// ctx ends for one to come free.
func (p *Pool) Borrow(ctx context.Context) (*Conn, error) {
	return p.BorrowUntil(ctx, time.Time{})
}

// BorrowUntil is Borrow that also gives up at deadline (none if zero) with
// ErrTimeout. A deadline costs no timer of its own: the pool keeps one for
// its earliest waiter, so a client that waits its turn under load (the
// common case with more clients than connections) sets up nothing per wait.
func (p *Pool) BorrowUntil(ctx context.Context, deadline time.Time) (*Conn, error) {
	p.borrows.Add(1)
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if n := len(p.idle); n > 0 {
			c := p.idle[n-1]
			p.idle = p.idle[:n-1]
			p.mu.Unlock()
			if p.usable(c) {
				p.inUse.Add(1)
				return c, nil
			}
			p.closeConn(c)
			continue
		}
		if p.open < p.opts.Size {
			p.open++
			p.mu.Unlock()
			return p.dialBy(ctx, deadline)
		}
		w := waiters.Get().(*waiter)
		w.deadline = deadline
		p.waiters.push(w)
		p.armExpiryLocked(deadline)
		p.mu.Unlock()

		start := monoNow()
		var g grant
		if done := ctx.Done(); done == nil {
			g = <-w.ch
		} else {
			select {
			case g = <-w.ch:
			case <-done:
				p.mu.Lock()
				if p.waiters.remove(w) {
					g = grant{kind: grantCancelled}
				}
				p.mu.Unlock()
				if g.kind != grantCancelled {
					// Whoever took w off the queue sent its grant
					// under mu, so it is in the channel now.
					g = <-w.ch
					if g.kind == grantConn || g.kind == grantDial {
						p.passOn(g)
						g = grant{kind: grantCancelled}
					}
				}
			}
		}
		// A handed-over connection carries the time it came back (read
		// before the lock, so it may precede start by a hair).
		end := g.c.returnedAt()
		if end == 0 {
			end = monoNow()
		}
		p.waitNanos.Add(max(end-start, 0))
		waiters.Put(w) // its channel is empty: every grant was received
		switch g.kind {
		case grantConn:
			// Just returned: no idle check (and no clock read) needed.
			if p.usableFresh(g.c) {
				p.inUse.Add(1)
				return g.c, nil
			}
			p.closeConn(g.c)
		case grantDial:
			return p.dialBy(ctx, deadline)
		case grantTimeout:
			return nil, ErrTimeout
		case grantClosed:
			return nil, ErrClosed
		default: // grantCancelled
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, ErrTimeout
			}
			return nil, ctx.Err()
		}
	}
}

// armExpiryLocked makes sure the expiry timer fires by deadline; mu is held.
// Waiters queue in order and mostly share one timeout, so after the first
// the timer is usually armed early enough already.
func (p *Pool) armExpiryLocked(deadline time.Time) {
	if deadline.IsZero() || (!p.expiryAt.IsZero() && !deadline.Before(p.expiryAt)) {
		return
	}
	p.expiryAt = deadline
	d := time.Until(deadline)
	if p.expiry == nil {
		p.expiry = time.AfterFunc(d, p.expire)
		return
	}
	p.expiry.Reset(d)
}

// expire times out the waiters whose deadline has passed and arms the timer
// for the earliest one left.
func (p *Pool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	p.expiryAt = time.Time{}
	var next time.Time
	p.waiters.keepIf(func(w *waiter) bool {
		switch {
		case w.deadline.IsZero():
			return true
		case !w.deadline.After(now):
			w.ch <- grant{kind: grantTimeout}
			return false
		default:
			if next.IsZero() || w.deadline.Before(next) {
				next = w.deadline
			}
			return true
		}
	})
	if !p.closed {
		p.armExpiryLocked(next)
	}
}

// dialBy dials a counted connection, within deadline if there is one.
func (p *Pool) dialBy(ctx context.Context, deadline time.Time) (*Conn, error) {
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	return p.dialCounted(ctx)
}

// passOn gives a grant that reached a waiter who gave up to the next one.
func (p *Pool) passOn(g grant) {
	if g.kind == grantConn {
		p.inUse.Add(1) // Return counts it back
		p.Return(g.c)
		return
	}
	p.release()
}

// TryBorrow returns an idle connection without waiting or dialling, if one
// is at hand: the common case, which then needs no context or timer.
func (p *Pool) TryBorrow() (*Conn, bool) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 || p.closed {
			p.mu.Unlock()
			return nil, false
		}
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		p.borrows.Add(1)
		if p.usable(c) {
			p.inUse.Add(1)
			return c, true
		}
		p.closeConn(c)
	}
}

// dialCounted dials a connection whose slot in open is already counted.
func (p *Pool) dialCounted(ctx context.Context) (*Conn, error) {
	if b := p.opts.Breaker; b != nil && !b.AllowDial(p.opts.Addr) {
		p.release()
		return nil, ErrBreakerOpen
	}
	c, err := p.dial(ctx)
	if b := p.opts.Breaker; b != nil {
		b.DialResult(p.opts.Addr, err)
	}
	if err != nil {
		p.release()
		return nil, err
	}
	p.inUse.Add(1)
	return c, nil
}

// InUse returns how many connections are borrowed now: the node's
// outstanding work, for least-outstanding balancing.
func (p *Pool) InUse() int64 { return p.inUse.Load() }

// usable reports whether an idle connection may be handed out.
func (p *Pool) usable(c *Conn) bool {
	now := monoNow() // one clock read for both checks
	if !p.usableAt(c, now) {
		return false
	}
	// A connection idle for a while may have been closed by the server
	// (restart, idle_session_timeout, pg_terminate_backend). The peek is
	// skipped for connections back within checkIdleAfter, the hot path
	// under load, where a server that just died is noticed by the read.
	return time.Duration(now-c.returned) <= checkIdleAfter || !peerClosed(c.Conn)
}

// usableFresh is usable for a connection returned a moment ago.
func (p *Pool) usableFresh(c *Conn) bool {
	if p.opts.MaxLifetime <= 0 {
		return c.Reader.Buffered() == 0
	}
	return p.usableAt(c, monoNow())
}

// usableAt is usableFresh with the clock read by the caller.
func (p *Pool) usableAt(c *Conn, now int64) bool {
	if p.opts.MaxLifetime > 0 && time.Duration(now-c.created) > p.opts.MaxLifetime {
		return false
	}
	return c.Reader.Buffered() == 0
}

// returnedAt is when a connection handed to a waiter was returned, 0 for
// none.
func (c *Conn) returnedAt() int64 {
	if c == nil {
		return 0
	}
	return c.returned
}

// epoch starts the pool's monotonic clock.
var epoch = time.Now()

// monoNow reads the monotonic clock in nanoseconds: one clock read where
// time.Now takes two (wall and monotonic), on paths taken per transaction.
func monoNow() int64 { return int64(time.Since(epoch)) }

// checkIdleAfter is how long a connection must have idled before a borrow
// checks that the server has not closed it (a peek, one system call). Idle
// connections are not watched, so a backend that dies (pg_terminate_backend)
// within this time of its connection's last use is found dead only by the
// next statement sent on it, which fails. Under load connections are reused
// well within 5 ms (pgbench -S -c 32 on a pool of 20 made no more reads per
// transaction than with 100 ms), and at lower rates the peek costs nothing
// that matters.
const checkIdleAfter = 5 * time.Millisecond

// Return hands a connection in a clean state (idle, no transaction) back.
func (p *Pool) Return(c *Conn) {
	if c.done {
		return
	}
	p.inUse.Add(-1)
	c.returned = monoNow()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.closeConn(c)
		return
	}
	if w := p.waiters.pop(); w != nil {
		w.ch <- grant{kind: grantConn, c: c}
		p.mu.Unlock()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// Discard closes a connection that broke or whose state is unknown.
func (p *Pool) Discard(c *Conn) {
	if c.done {
		return
	}
	p.inUse.Add(-1)
	p.discards.Add(1)
	p.closeConn(c)
}

// closeConn closes c and frees its slot.
func (p *Pool) closeConn(c *Conn) {
	if c.done {
		return
	}
	c.done = true
	_ = c.Conn.Close()
	p.release()
}

// release frees one counted slot, giving a waiter the right to dial.
func (p *Pool) release() {
	p.mu.Lock()
	if w := p.waiters.pop(); w != nil && !p.closed {
		w.ch <- grant{kind: grantDial}
		p.mu.Unlock()
		return
	}
	p.open--
	p.mu.Unlock()
}

func (p *Pool) dial(ctx context.Context) (*Conn, error) {
	p.dials.Add(1)
	if p.opts.Connect != nil {
		nc, info, err := p.opts.Connect(ctx)
		if err != nil {
			p.dialErrors.Add(1)
			return nil, err
		}
		return p.adopt(nc, info), nil
	}
	if p.opts.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.opts.ConnectTimeout)
		defer cancel()
	}
	nc, err := p.dialServer(ctx)
	if err != nil {
		p.dialErrors.Add(1)
		return nil, fmt.Errorf("connect to %s as %s: %w", p.opts.Addr, p.opts.User, err)
	}
	r := bufio.NewReaderSize(nc, 32<<10)
	info, err := handshake(ctx, nc, r, p.opts.User, p.opts.Password, p.opts.Database)
	if err != nil {
		_ = nc.Close()
		p.dialErrors.Add(1)
		return nil, fmt.Errorf("connect to %s as %s: %w", p.opts.Addr, p.opts.User, err)
	}
	return p.adoptReader(nc, r, info), nil
}

// dialServer opens a socket to the node, with TLS if the options ask for it.
func (p *Pool) dialServer(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", p.opts.Addr)
	if err != nil {
		return nil, err
	}
	// TLS, if any, runs over the wrapped socket too: its records are read
	// and written with the same cheaper system calls.
	wrapped := sockio.Wrap(nc)
	if p.opts.TLS == nil {
		return wrapped, nil
	}
	tc, err := startTLS(ctx, wrapped, p.opts.TLS, p.opts.TLSOptional)
	if err != nil {
		_ = wrapped.Close()
		return nil, err
	}
	if tc == nil {
		return wrapped, nil // prefer, and the server has no TLS
	}
	return tc, nil
}

// errServerNoTLS: the server answered an SSLRequest with 'N'.
var errServerNoTLS = errors.New("the server does not accept TLS (server_tls.mode asks for it)")

// startTLS asks the server for TLS (SSLRequest) and runs the handshake. It
// returns nil, nil when the server declines and optional allows plain.
func startTLS(ctx context.Context, nc net.Conn, conf *tls.Config, optional bool) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
		defer nc.SetDeadline(time.Time{})
	}
	req, err := (&pgproto3.SSLRequest{}).Encode(nil)
	if err != nil {
		return nil, fmt.Errorf("SSLRequest: %w", err)
	}
	if _, err := nc.Write(req); err != nil {
		return nil, fmt.Errorf("SSLRequest: %w", err)
	}
	var answer [1]byte
	if _, err := io.ReadFull(nc, answer[:]); err != nil {
		return nil, fmt.Errorf("SSLRequest: %w", err)
	}
	switch answer[0] {
	case 'S':
	case 'N':
		if optional {
			return nil, nil
		}
		return nil, errServerNoTLS
	default:
		return nil, fmt.Errorf("SSLRequest answered with %q, not S or N", answer[0])
	}
	tc := tls.Client(nc, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// adopt wraps a connection that has completed startup.
func (p *Pool) adopt(nc net.Conn, info ServerInfo) *Conn {
	return p.adoptReader(nc, bufio.NewReaderSize(nc, 32<<10), info)
}

// adoptReader is adopt with the reader the startup was read through.
func (p *Pool) adoptReader(nc net.Conn, r *bufio.Reader, info ServerInfo) *Conn {
	now := monoNow()
	c := &Conn{
		Conn:      nc,
		Reader:    r,
		PID:       info.PID,
		SecretKey: info.SecretKey,
		Params:    info.Params,
		Prepared:  NewStatementCache(0),
		pool:      p,
		created:   now,
		returned:  now,
	}
	p.mu.Lock()
	if p.params == nil {
		p.params = info.Params
	}
	p.mu.Unlock()
	p.log.Debug("server connection opened", "pid", c.PID)
	return c
}

// ServerParams returns the ParameterStatus values of this node's first
// connection, dialling one if none was opened yet.
func (p *Pool) ServerParams(ctx context.Context) (map[string]string, error) {
	p.mu.Lock()
	params := p.params
	p.mu.Unlock()
	if params != nil {
		return params, nil
	}
	c, err := p.Borrow(ctx)
	if err != nil {
		return nil, err
	}
	p.Return(c)
	return c.Params, nil
}

// Cancel asks the node to cancel whatever c's backend is running, and waits
// until the node has taken the request.
func (p *Pool) Cancel(ctx context.Context, c *Conn) error {
	conn, err := p.dialServer(ctx)
	if err != nil {
		return fmt.Errorf("dial %s for cancel: %w", p.opts.Addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	msg := make([]byte, 16, 16+len(c.SecretKey))
	putUint32(msg[0:], uint32(12+len(c.SecretKey)))
	putUint32(msg[4:], 80877102)
	putUint32(msg[8:], c.PID)
	msg = append(msg[:12], c.SecretKey...)
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("send cancel to %s: %w", p.opts.Addr, err)
	}
	// The server closes the socket once it has signalled the backend.
	var b [1]byte
	_, _ = conn.Read(b[:])
	return nil
}

func putUint32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	s := Stats{Open: p.open, Idle: len(p.idle), Waiting: p.waiters.len()}
	p.mu.Unlock()
	s.Borrows, s.Dials, s.DialErrors, s.Discards = p.borrows.Load(), p.dials.Load(), p.dialErrors.Load(), p.discards.Load()
	s.WaitTime = time.Duration(p.waitNanos.Load())
	return s
}

// DiscardIdle closes every idle connection: the node was seen to fail, so
// they are most likely dead too, and the next borrower should dial anew.
func (p *Pool) DiscardIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		p.discards.Add(1)
		p.closeConn(c)
	}
}

// Close closes idle connections and makes later Borrows fail; borrowed
// connections are closed when they come back.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.waiters.keepIf(func(w *waiter) bool {
		w.ch <- grant{kind: grantClosed}
		return false
	})
	if p.expiry != nil {
		p.expiry.Stop()
	}
	p.mu.Unlock()
	close(p.stop)
	for _, c := range idle {
		p.closeConn(c)
	}
	p.wg.Wait()
}

// reap closes connections idle longer than IdleTimeout or older than
// MaxLifetime, keeping MinIdle.
func (p *Pool) reap() {
	defer p.wg.Done()
	every := time.Minute
	for _, d := range []time.Duration{p.opts.IdleTimeout / 2, p.opts.MaxLifetime / 4} {
		if d > 0 && d < every {
			every = d
		}
	}
	if every < 100*time.Millisecond {
		every = 100 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		var drop []*Conn
		p.mu.Lock()
		keep := p.idle[:0]
		remaining := len(p.idle)
		now := monoNow()
		for _, c := range p.idle { // oldest first: Return appends
			old := p.opts.MaxLifetime > 0 && time.Duration(now-c.created) > p.opts.MaxLifetime
			stale := p.opts.IdleTimeout > 0 && time.Duration(now-c.returned) > p.opts.IdleTimeout && remaining > p.opts.MinIdle
			if old || stale {
				drop = append(drop, c)
				remaining--
			} else {
				keep = append(keep, c)
			}
		}
		p.idle = keep
		p.mu.Unlock()
		for _, c := range drop {
			p.closeConn(c)
		}
	}
}
