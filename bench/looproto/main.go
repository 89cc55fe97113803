// Command looproto is an experiment, not part of shardwire: a minimal
// transaction-pooling relay built as one epoll event loop on one locked OS
// thread, the shape of PgBouncer's main loop, written in Go; with -shape
// goroutines, the same relay with a goroutine per client, shardwire's
// shape. It answers the question behind issue 2's CPU target: how much of
// shardwire's CPU per transaction above PgBouncer's is the
// goroutine-per-client design (two goroutine parks, two poller wake-ups and
// two empty reads per transaction) and how much the proxy's own logic.
//
// It does only what pgbench -S needs: trust login of every client (no
// password check), a fixed set of server connections logged in with pgconn
// and then driven raw, a server lent to a client from its first message to
// the ReadyForQuery that says idle, clients queued while every server is
// busy. No routing, no prepared-statement renaming, no session state, no
// error handling beyond closing the client. Never use it for anything but
// this measurement:
//
//	go run ./bench/looproto -listen 127.0.0.1:47101 -server 'postgres://bench:pw@127.0.0.1:5432/bench' -servers 20 [-shape goroutines]
//	pgbench -n -S -c 32 -j 2 -T 10 -h 127.0.0.1 -p 47101 -U bench bench
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgconn"
)

type conn struct {
	fd     int
	keep   net.Conn // keeps the descriptor open
	server bool
	peer   *conn // attached server (for a client) or client (for a server)
	buf    []byte
	// For a server: bytes of the current message still to come, and the
	// header bytes gathered so far when a header is split between reads.
	left   int
	hdr    []byte
	zNext  bool // the next byte is a ReadyForQuery's status
	queued bool
	// For a client: bytes received while waiting for a server.
	pending []byte
	started bool
}

type loop struct {
	epfd    int
	conns   map[int]*conn
	free    []*conn
	waiting []*conn
}

func main() {
	listen := flag.String("listen", "127.0.0.1:47101", "address for clients")
	server := flag.String("server", "", "Postgres URL for the server connections")
	servers := flag.Int("servers", 20, "server connections")
	shape := flag.String("shape", "loop", "loop (one epoll loop) or goroutines (one per client, as shardwire)")
	flag.Parse()
	if *server == "" || (*shape != "loop" && *shape != "goroutines") {
		flag.Usage()
		os.Exit(2)
	}
	var serverConns []net.Conn
	for range *servers {
		pc, err := pgconn.Connect(context.Background(), *server)
		if err != nil {
			log.Fatal(err)
		}
		h, err := pc.Hijack()
		if err != nil {
			log.Fatal(err)
		}
		serverConns = append(serverConns, h.Conn)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *shape == "goroutines" {
		serveGoroutines(ln, serverConns)
		return
	}
	runtime.GOMAXPROCS(1)
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		log.Fatal(err)
	}
	l := &loop{epfd: epfd, conns: map[int]*conn{}}
	for _, sc := range serverConns {
		l.add(sc, true)
	}
	accepted := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				log.Fatal(err)
			}
			accepted <- c
		}
	}()
	fmt.Println("ready on", ln.Addr())
	runtime.LockOSThread()
	events := make([]syscall.EpollEvent, 128)
	for {
		// New clients are taken between waits; a short timeout keeps a
		// login from waiting on a busy loop.
		for len(accepted) > 0 {
			l.add(<-accepted, false)
		}
		n, err := syscall.EpollWait(epfd, events, 1)
		if err != nil && err != syscall.EINTR {
			log.Fatal(err)
		}
		for i := range n {
			if c := l.conns[int(events[i].Fd)]; c != nil {
				l.readable(c)
			}
		}
	}
}

func (l *loop) add(nc net.Conn, server bool) {
	raw, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		log.Fatal(err)
	}
	fd := -1
	_ = raw.Control(func(d uintptr) { fd = int(d) })
	c := &conn{fd: fd, keep: nc, server: server, buf: make([]byte, 16<<10)}
	l.conns[fd] = c
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		log.Fatal(err)
	}
	if server {
		l.free = append(l.free, c)
	}
}

func (l *loop) close(c *conn) {
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	delete(l.conns, c.fd)
	_ = c.keep.Close()
	if s := c.peer; s != nil {
		// Drop the server too: its transaction state is unknown.
		_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, s.fd, nil)
		delete(l.conns, s.fd)
		_ = s.keep.Close()
	}
}

func (l *loop) readable(c *conn) {
	r, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(c.fd), uintptr(unsafe.Pointer(&c.buf[0])), uintptr(len(c.buf)), 0, 0, 0)
	if errno == syscall.EAGAIN {
		return
	}
	n := int(r)
	if errno != 0 || n <= 0 {
		l.close(c)
		return
	}
	b := c.buf[:n]
	if c.server {
		l.fromServer(c, b)
		return
	}
	l.fromClient(c, b)
}

func (l *loop) fromClient(c *conn, b []byte) {
	if !c.started {
		l.startup(c, b)
		return
	}
	if len(b) >= 5 && b[0] == 'X' {
		l.close(c)
		return
	}
	if c.peer == nil {
		if len(l.free) == 0 {
			c.pending = append(c.pending, b...)
			if !c.queued {
				c.queued = true
				l.waiting = append(l.waiting, c)
			}
			return
		}
		s := l.free[len(l.free)-1]
		l.free = l.free[:len(l.free)-1]
		c.peer, s.peer = s, c
	}
	write(c.peer.fd, b)
}

// fromServer relays b to the client and releases the server at a
// ReadyForQuery 'I' that ends b.
func (l *loop) fromServer(s *conn, b []byte) {
	c := s.peer
	idle := s.scan(b)
	if c != nil {
		write(c.fd, b)
	}
	if idle {
		if c != nil {
			c.peer = nil
		}
		s.peer = nil
		l.release(s)
	}
}

// scan follows the server's message framing through b and reports whether
// b ends with a ReadyForQuery 'I'.
func (s *conn) scan(b []byte) bool {
	idle := false
	for i := 0; i < len(b); {
		if s.zNext {
			s.zNext = false
			idle = b[i] == 'I'
		}
		if s.left > 0 {
			k := min(s.left, len(b)-i)
			s.left -= k
			i += k
			continue
		}
		need := 5 - len(s.hdr)
		k := min(need, len(b)-i)
		s.hdr = append(s.hdr, b[i:i+k]...)
		i += k
		if len(s.hdr) < 5 {
			break
		}
		typ := s.hdr[0]
		size := int(binary.BigEndian.Uint32(s.hdr[1:])) - 4
		s.hdr = s.hdr[:0]
		s.left = size
		idle = false
		s.zNext = typ == 'Z' && size == 1
	}
	return idle && s.left == 0
}

func (l *loop) release(s *conn) {
	for len(l.waiting) > 0 {
		c := l.waiting[0]
		l.waiting = l.waiting[1:]
		c.queued = false
		if _, live := l.conns[c.fd]; !live {
			continue
		}
		c.peer, s.peer = s, c
		p := c.pending
		c.pending = nil
		write(s.fd, p)
		return
	}
	l.free = append(l.free, s)
}

// startup answers a client's startup packet (or SSLRequest) without any
// password: this is a measurement tool only.
func (l *loop) startup(c *conn, b []byte) {
	if len(b) == 8 && binary.BigEndian.Uint32(b[4:]) == 80877103 {
		write(c.fd, []byte{'N'})
		return
	}
	c.started = true
	write(c.fd, startupReply())
}

// startupReply is AuthenticationOk, a few ParameterStatus, BackendKeyData
// and ReadyForQuery.
func startupReply() []byte {
	var out []byte
	out = append(out, 'R', 0, 0, 0, 8, 0, 0, 0, 0)
	for _, kv := range [][2]string{{"server_version", "15.0"}, {"client_encoding", "UTF8"}, {"DateStyle", "ISO, MDY"},
		{"integer_datetimes", "on"}, {"standard_conforming_strings", "on"}, {"server_encoding", "UTF8"}} {
		body := append(append(append([]byte(kv[0]), 0), kv[1]...), 0)
		out = append(out, 'S')
		out = binary.BigEndian.AppendUint32(out, uint32(4+len(body)))
		out = append(out, body...)
	}
	out = append(out, 'K', 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 1)
	return append(out, 'Z', 0, 0, 0, 5, 'I')
}

// write sends all of b, waiting (rarely) while the socket buffer is full.
func write(fd int, b []byte) {
	for len(b) > 0 {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_NOSIGNAL, 0, 0)
		if errno == syscall.EAGAIN {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		if errno != 0 {
			return
		}
		b = b[n:]
	}
}
