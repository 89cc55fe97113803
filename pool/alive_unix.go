//go:build linux || darwin || freebsd || netbsd || openbsd

package pool

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peerClosed reports whether the server has closed an idle connection, or
// sent something unasked (a FATAL before it went): a non-blocking MSG_PEEK
// on the socket. Unlike a read with a short deadline it cannot be fooled by
// the goroutine being descheduled past the deadline, and it costs one
// system call.
func peerClosed(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		// Any bytes under an idle TLS connection are a record the server
		// sent unasked (an alert, an error): the raw socket tells.
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: quiet and open, the expected state. Anything else (an
		// error, EOF, or unasked bytes) is not a clean idle connection.
		closed = !errors.Is(rerr, syscall.EAGAIN) && !errors.Is(rerr, syscall.EINTR)
		return true // never wait for readiness
	})
	return closed || err != nil
}
