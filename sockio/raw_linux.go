package sockio

import (
	"syscall"
	"unsafe"
)

// rawRead and rawWrite make the system call with RawSyscall: the socket is
// non-blocking, so the call never waits, and leaving out the runtime's
// entersyscall/exitsyscall keeps its monitor thread from handing this P to
// another thread whenever the kernel preempts the caller at the end of a
// loopback write (the write wakes the peer, which often runs at once).
// send with MSG_NOSIGNAL, as PgBouncer does, so that a peer that went away
// costs an EPIPE and no SIGPIPE.
func rawRead(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	return int(n), e
}

func rawWrite(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}
