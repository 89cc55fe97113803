//go:build linux

package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// Conn is a plain TCP or Unix socket whose Read and Write make their system
// calls without the runtime's blocking-call bookkeeping. Everything else
// (deadlines, Close, addresses) is the wrapped connection's.
type Conn struct {
	net.Conn
	raw syscall.RawConn
	fd  uintptr
	// A write first tries the socket directly, outside the runtime's
	// descriptor lock: writers count themselves in inflight and Close
	// waits for them, so the descriptor cannot be closed (and its number
	// reused) under a direct write.
	inflight atomic.Int32
	closing  atomic.Bool
	// writeMu keeps concurrent Writes whole, as net.Conn promises (the
	// runtime's descriptor lock did it before).
	writeMu sync.Mutex
}

// Wrap returns c as a *Conn when it is a plain TCP or Unix socket, and c
// itself otherwise (TLS, pipes, test doubles).
func Wrap(c net.Conn) net.Conn {
	if _, wrapped := c.(*Conn); wrapped {
		return c
	}
	raw, ok := rawConn(c)
	if !ok {
		return c
	}
	fd := -1
	if err := raw.Control(func(d uintptr) { fd = int(d) }); err != nil || fd < 0 {
		return c
	}
	return &Conn{Conn: c, raw: raw, fd: uintptr(fd)}
}

// FD returns the descriptor of a plain TCP or Unix socket, wrapped or not,
// or -1 for anything else (TLS keeps decrypted bytes of its own that a
// poller on the descriptor cannot see).
func FD(c net.Conn) int {
	raw, ok := rawConn(c)
	if !ok {
		return -1
	}
	fd := -1
	_ = raw.Control(func(d uintptr) { fd = int(d) })
	return fd
}

func rawConn(c net.Conn) (syscall.RawConn, bool) {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	case *Conn:
		return c.raw, true
	default:
		return nil, false
	}
	raw, err := sc.SyscallConn()
	return raw, err == nil
}

// SyscallConn gives access to the socket's descriptor.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

// ioOp carries one Read or Write through syscall.RawConn. The callbacks are
// method values bound once per pooled ioOp: a closure made per call would
// escape through the RawConn interface and cost allocations per message.
type ioOp struct {
	b       []byte
	n       int
	errno   syscall.Errno
	sent    bool        // sendThenWait: b has been written (or could not be)
	wmu     *sync.Mutex // sendThenWait: the Conn's writeMu
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
	sendFn  func(fd uintptr) bool
}

var ops = sync.Pool{New: func() any {
	op := new(ioOp)
	op.readFn, op.writeFn, op.sendFn = op.read, op.write, op.sendThenWait
	return op
}}

// sendThenWait writes b on its first call and asks to wait for the socket
// to become readable; on the next call (readable) it is done. A write the
// socket does not take whole ends it at once (n tells how much went).
func (op *ioOp) sendThenWait(fd uintptr) bool {
	if op.sent {
		return true
	}
	op.sent = true
	// Held for the write only, not the wait that follows.
	op.wmu.Lock()
	op.n, op.errno = sendAll(fd, op.b)
	op.wmu.Unlock()
	return op.errno != 0 // EAGAIN included: the caller writes the rest
}

func (op *ioOp) read(fd uintptr) bool {
	for {
		op.n, op.errno = rawRead(fd, op.b)
		switch op.errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait in the poller, then try again
		}
		return true
	}
}

func (op *ioOp) write(fd uintptr) bool {
	w, e := sendAll(fd, op.b[op.n:])
	op.n += w
	if e == syscall.EAGAIN {
		return false // the send buffer is full: wait for room
	}
	op.errno = e
	return true
}

// sendAll writes b until it is all sent or the socket refuses more: it
// returns how much went, and 0, EAGAIN (the send buffer is full) or the
// error that stopped it.
func sendAll(fd uintptr, b []byte) (int, syscall.Errno) {
	n := 0
	for n < len(b) {
		w, e := rawWrite(fd, b[n:])
		switch e {
		case 0:
			n += w
		case syscall.EINTR:
		default:
			return n, e
		}
	}
	return n, 0
}

// Read reads what the socket holds, waiting for it through the runtime's
// network poller like net.Conn.Read does.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, errno, err := c.do(b, false)
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("recvfrom", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting for room in the socket's send buffer
// through the runtime's network poller when it is full.
//
// A write that the socket takes at once (nearly every one: replies are
// small and clients read) skips the runtime's descriptor lock, readiness
// reset and deadline check. Only a full send buffer, a closing Conn or a
// past write deadline with a full buffer take the poller's path; a write
// the socket can take at once succeeds even past a write deadline.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	n := 0
	if c.enter() {
		var errno syscall.Errno
		n, errno = sendAll(c.fd, b)
		c.inflight.Add(-1)
		switch errno {
		case 0:
			return n, nil
		case syscall.EAGAIN: // the send buffer is full: wait for room below
		default:
			return n, c.opError("write", os.NewSyscallError("sendto", errno))
		}
	}
	m, errno, err := c.do(b[n:], true)
	n += m
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("sendto", errno))
	}
	return n, nil
}

// WriteAwaitReadable writes b and then waits until the socket has something
// to read (or its read deadline passes), without reading it: for a request
// whose reply the caller reads next. The wait is armed before the write, so
// the reply cannot slip by (every arrival of data reports the socket
// readable again), and no read is tried in vain before the reply can have
// come: Read tries the socket before it waits, a system call that finds
// nothing right after a request. It returns how much of b went; on an
// error, or when the send buffer could not take all of b (ErrWouldBlock),
// the caller writes the rest with Write and reads as usual.
func (c *Conn) WriteAwaitReadable(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	op := ops.Get().(*ioOp)
	op.b, op.n, op.errno, op.sent, op.wmu = b, 0, 0, false, &c.writeMu
	err := c.raw.Read(op.sendFn)
	n, errno := op.n, op.errno
	op.b, op.wmu = nil, nil
	ops.Put(op)
	switch {
	case errno == syscall.EAGAIN:
		return n, ErrWouldBlock
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("sendto", errno))
	case err != nil:
		// The write went, or not at all (a closed Conn); the wait ended
		// (deadline, Close).
		return n, c.opError("read", err)
	}
	return n, nil
}

// ErrWouldBlock is WriteAwaitReadable's answer when the send buffer did not
// take everything.
var ErrWouldBlock = errors.New("sockio: the send buffer is full")

// enter counts a direct write in, unless the Conn is closing.
func (c *Conn) enter() bool {
	c.inflight.Add(1)
	if c.closing.Load() {
		c.inflight.Add(-1)
		return false
	}
	return true
}

// Close closes the socket once no direct write is using its descriptor (a
// direct write never waits, so this is at most one system call's time).
func (c *Conn) Close() error {
	c.closing.Store(true)
	for c.inflight.Load() > 0 {
		runtime.Gosched()
	}
	return c.Conn.Close()
}

// do runs one Read or Write through the RawConn with a pooled ioOp.
func (c *Conn) do(b []byte, write bool) (int, syscall.Errno, error) {
	op := ops.Get().(*ioOp)
	op.b, op.n, op.errno = b, 0, 0
	var err error
	if write {
		err = c.raw.Write(op.writeFn)
	} else {
		err = c.raw.Read(op.readFn)
	}
	n, errno := op.n, op.errno
	op.b = nil
	ops.Put(op)
	return n, errno, err
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
