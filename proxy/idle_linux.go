//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"github.com/shardwire/shardwire/sockio"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// idleWaiter holds the clients that idle between transactions. A goroutine
// blocked in a read keeps a stack of at least 4 KiB once it has served a
// query (and usually 8), which was most of an idle client's memory. A parked
// client has no goroutine: one epoll instance watches the sockets of all of
// them, and the waiter's one goroutine waits on that instance through Go's
// own netpoller (an epoll descriptor is itself pollable). A readable socket
// (a query, or the client hanging up) hands its session to a worker.
//
// Ownership: a session is in parked from the moment park adds it until take
// removes it; whoever removes it runs it next. Registrations are one-shot, so
// a socket fires at most once per park; an event for a session no longer
// parked is ignored.
type idleWaiter struct {
	srv  *Server
	epfd int
	file *os.File
	raw  syscall.RawConn

	mu     sync.Mutex
	parked map[uint32]*session
	closed bool // no more parking: shutting down

	workers workerPool
}

func newIdleWaiter(srv *Server) (*idleWaiter, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	// A non-blocking descriptor becomes a pollable *os.File, so waiting on
	// it parks the goroutine in the netpoller instead of blocking a thread.
	file := os.NewFile(uintptr(epfd), "shardwire-idle-epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	w := &idleWaiter{srv: srv, epfd: epfd, file: file, raw: raw, parked: map[uint32]*session{}}
	w.workers.init(srv)
	go w.loop()
	go w.sweep()
	return w, nil
}

// socketFD returns the descriptor of a plain TCP or Unix socket, or -1 for
// anything else (TLS keeps decrypted bytes of its own that epoll cannot see).
func socketFD(c net.Conn) int32 { return int32(sockio.FD(c)) }

// park hands s, whose client has nothing buffered and is between
// transactions, to the waiter. It returns false when s cannot be parked (not
// a plain socket, shutting down, epoll refused): the caller then waits for
// the client itself. After true the caller must not touch s again.
func (w *idleWaiter) park(s *session) bool {
	if w == nil {
		return false
	}
	op := syscall.EPOLL_CTL_ADD
	if s.armed {
		op = syscall.EPOLL_CTL_MOD
	}
	s.armed = true
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return false
	}
	w.parked[s.pid] = s
	w.mu.Unlock()
	// Level-triggered and one-shot: bytes that arrived before this call
	// fire at once, and the socket fires once per park.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(s.pid)}
	err := syscall.EpollCtl(w.epfd, op, int(s.fd), &ev)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EEXIST) {
		// The registration is not what s.armed said (a shutdown removed
		// it, or an earlier park failed half-way): the other operation.
		op = syscall.EPOLL_CTL_ADD + syscall.EPOLL_CTL_MOD - op
		err = syscall.EpollCtl(w.epfd, op, int(s.fd), &ev)
	}
	if err != nil {
		// Not watched: take s back unless shutdown has already taken it.
		_, taken := w.take(s.pid, s)
		return !taken
	}
	return true
}

// take removes a parked session and returns it: the caller now owns it.
// With want nil any session parked under pid is taken.
func (w *idleWaiter) take(pid uint32, want *session) (*session, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.parked[pid]
	if !ok || (want != nil && s != want) {
		return nil, false
	}
	delete(w.parked, pid)
	return s, true
}

// takeIf removes the parked sessions that match, appending them to dst.
func (w *idleWaiter) takeIf(dst []*session, match func(*session) bool) []*session {
	w.mu.Lock()
	defer w.mu.Unlock()
	for pid, s := range w.parked {
		if match(s) {
			delete(w.parked, pid)
			dst = append(dst, s)
		}
	}
	return dst
}

// loop resumes the sessions whose sockets became readable.
func (w *idleWaiter) loop() {
	events := make([]syscall.EpollEvent, 128)
	for {
		n := 0
		var werr error
		err := w.raw.Read(func(fd uintptr) bool {
			n, werr = syscall.EpollWait(int(fd), events, 0)
			if werr == syscall.EINTR {
				n, werr = 0, nil
			}
			return n > 0 || werr != nil
		})
		if err != nil || werr != nil {
			if !w.workers.closed() {
				w.srv.log.Error("idle client waiter stopped; idle clients now wait on their own goroutines", "err", errors.Join(err, werr))
			}
			// Every parked client goes back to waiting on its own goroutine.
			w.wakeAll()
			return
		}
		for _, ev := range events[:n] {
			if s, ok := w.take(uint32(ev.Fd), nil); ok {
				w.workers.dispatch(s)
			}
		}
	}
}

// sweep does what parked and idle clients need on a timer: a client idle on
// its own goroutine is woken so that it parks (so a busy client, which
// pauses only between transactions, pays for parking at most once a sweep),
// and a parked client idle for longer than limits.client_idle_timeout,
// whose socket has no read deadline while parked, is handed back so that
// awaitClient ends it. Sweeps are parkSweep apart, or a quarter of the idle
// timeout if that is shorter.
func (w *idleWaiter) sweep() {
	period := func() time.Duration {
		idle := w.srv.config().Limits.ClientIdleTimeout
		if idle <= 0 {
			return parkSweep
		}
		return min(max(idle/4, 10*time.Millisecond), parkSweep)
	}
	t := time.NewTimer(period())
	defer t.Stop()
	var due, all []*session
	for {
		select {
		case <-w.workers.quit:
			return
		case now := <-t.C:
			idle := w.srv.config().Limits.ClientIdleTimeout
			t.Reset(period())
			all = w.srv.appendSessions(all[:0])
			for _, s := range all {
				s.wakeToPark()
			}
			clear(all)
			if idle <= 0 {
				continue
			}
			limit := now.Add(-idle).UnixNano()
			due = w.takeIf(due, func(s *session) bool { return s.idleSince <= limit })
			for _, s := range due {
				w.workers.dispatch(s)
			}
			clear(due)
			due = due[:0]
		}
	}
}

// parkSweep is the time between sweeps: a client idle on its own goroutine
// is parked within one. Shorter frees idle clients' stacks sooner but parks
// busy clients more often (a sweep visits every session).
const parkSweep = 100 * time.Millisecond

// wakeAll stops parking and resumes every parked session, for shutdown.
func (w *idleWaiter) wakeAll() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.closed = true // park refuses from now on; what it added before is taken below
	w.mu.Unlock()
	for _, s := range w.takeIf(nil, func(*session) bool { return true }) {
		_ = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, int(s.fd), nil)
		w.workers.dispatch(s)
	}
}

// close ends parking for good once the server has stopped: what is still
// parked is resumed and idle workers exit.
func (w *idleWaiter) close() {
	if w == nil {
		return
	}
	w.wakeAll()
	w.workers.close()
	_ = w.file.Close()
}

// next waits for another session for the calling worker; nil: exit.
func (w *idleWaiter) next() *session {
	if w == nil {
		return nil
	}
	return w.workers.next()
}

// workerPool keeps goroutines that have served a session and wait for
// another, so that a client waking from idle runs on a goroutine whose stack
// has already grown to what serving takes (a fresh 2 KiB one would be copied
// to a bigger one several times in its first transaction). At most
// maxIdleWorkers wait; the others exit.
type workerPool struct {
	srv      *Server
	handoff  chan *session
	quit     chan struct{}
	quitOnce sync.Once
	idle     atomic.Int32
}

const maxIdleWorkers = 128

func (p *workerPool) init(srv *Server) {
	p.srv = srv
	p.handoff = make(chan *session)
	p.quit = make(chan struct{})
}

// dispatch runs s on a waiting worker, or on a new one.
func (p *workerPool) dispatch(s *session) {
	select {
	case p.handoff <- s:
	default:
		go p.srv.work(s, true)
	}
}

// next waits for a session to run; nil: the worker exits.
func (p *workerPool) next() *session {
	if p.idle.Add(1) > maxIdleWorkers {
		p.idle.Add(-1)
		return nil
	}
	defer p.idle.Add(-1)
	select {
	case s := <-p.handoff:
		return s
	case <-p.quit:
		return nil
	}
}

func (p *workerPool) close() { p.quitOnce.Do(func() { close(p.quit) }) }

func (p *workerPool) closed() bool {
	select {
	case <-p.quit:
		return true
	default:
		return false
	}
}
