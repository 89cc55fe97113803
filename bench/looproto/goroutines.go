package main

import (
	"encoding/binary"
	"fmt"
	"log"
	"net"

	"github.com/shardwire/shardwire/sockio"
)

// serveGoroutines is the same relay in shardwire's shape: a goroutine per
// client doing blocking reads and writes (through sockio, as shardwire
// does), server connections lent through a channel. The difference from
// the loop is the cost of the shape alone, with no proxy logic in either.
func serveGoroutines(ln net.Listener, serverConns []net.Conn) {
	free := make(chan net.Conn, len(serverConns))
	for _, c := range serverConns {
		free <- sockio.Wrap(c)
	}
	fmt.Println("ready on", ln.Addr(), "(goroutines)")
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go relayClient(sockio.Wrap(c), free)
	}
}

func relayClient(c net.Conn, free chan net.Conn) {
	defer c.Close()
	buf := make([]byte, 16<<10)
	reply := make([]byte, 16<<10)
	// Startup: the same answer as the loop's.
	n, err := c.Read(buf)
	if err != nil {
		return
	}
	if n == 8 && binary.BigEndian.Uint32(buf[4:]) == 80877103 {
		if _, err := c.Write([]byte{'N'}); err != nil {
			return
		}
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
	if _, err := c.Write(startupReply()); err != nil {
		return
	}
	var s net.Conn
	var st conn // framing state of the attached server's replies
	for {
		n, err := c.Read(buf)
		if err != nil || (n >= 5 && buf[0] == 'X') {
			if s != nil {
				_ = s.Close() // its transaction state is unknown
			}
			return
		}
		if s == nil {
			s = <-free
			st = conn{}
		}
		if _, err := s.Write(buf[:n]); err != nil {
			return
		}
		for {
			m, err := s.Read(reply)
			if err != nil {
				return
			}
			idle := st.scan(reply[:m])
			if _, err := c.Write(reply[:m]); err != nil {
				_ = s.Close()
				return
			}
			if idle {
				free <- s
				s = nil
				break
			}
		}
	}
}
