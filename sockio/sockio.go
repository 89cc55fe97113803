//go:build linux

package sockio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Conn is a plain TCP or Unix socket whose Read and Write make their system
// calls without the runtime's blocking-call bookkeeping. Everything else
// (deadlines, Close, addresses) is the wrapped connection's.
type Conn struct {
	net.Conn
	raw syscall.RawConn
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
	return &Conn{Conn: c, raw: raw}
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
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

var ops = sync.Pool{New: func() any {
	op := new(ioOp)
	op.readFn, op.writeFn = op.read, op.write
	return op
}}

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
	for op.n < len(op.b) {
		w, e := rawWrite(fd, op.b[op.n:])
		switch e {
		case 0:
			op.n += w
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // the send buffer is full: wait for room
		default:
			op.errno = e
			return true
		}
	}
	return true
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
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, errno, err := c.do(b, true)
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("sendto", errno))
	}
	return n, nil
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
