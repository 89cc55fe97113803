package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/pool"
)

// fakeBackend answers like Postgres for the messages the benchmarks send:
// every Query and every Execute returns one row. It is an in-memory stand-in
// to measure the proxy's own cost; the e2e tests use real servers.
func fakeBackend(conn net.Conn) {
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	rowDesc := appendFrame(nil, 'T', append([]byte{0, 1, 'x', 0}, make([]byte, 18)...))
	binary.BigEndian.PutUint32(rowDesc[5+2+2+4+2:], 23)
	dataRow := appendFrame(nil, 'D', []byte{0, 1, 0, 0, 0, 1, '1'})
	cmdComplete := appendFrame(nil, 'C', []byte("SELECT 1\x00"))
	inTxn := byte('I')
	ready := appendReady(nil, inTxn)
	// Made once: a literal per Bind would be the double's allocation,
	// counted in the benchmarks' allocs/op as if it were the proxy's.
	bindComplete := []byte{'2', 0, 0, 0, 4}
	for {
		hdr, err := r.Peek(5)
		if err != nil {
			return
		}
		typ := hdr[0]
		if _, err := r.Discard(int(binary.BigEndian.Uint32(hdr[1:])) + 1); err != nil {
			return
		}
		switch typ {
		case 'Q':
			_, _ = w.Write(rowDesc)
			_, _ = w.Write(dataRow)
			_, _ = w.Write(cmdComplete)
			_, _ = w.Write(ready)
		case 'P':
			_, _ = w.Write(msgParseComplete)
		case 'B':
			_, _ = w.Write(bindComplete)
		case 'D':
			_, _ = w.Write(rowDesc)
		case 'E':
			_, _ = w.Write(dataRow)
			_, _ = w.Write(cmdComplete)
		case 'C':
			_, _ = w.Write(msgCloseComplete)
		case 'S':
			_, _ = w.Write(ready)
		case 'X':
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// newTestServer returns a proxy whose pools talk to fakeBackend.
func newTestServer(tb testing.TB, mode string) (*Server, *config.Config) {
	tb.Helper()
	cfg := config.Defaults()
	cfg.Path = "test.yaml"
	cfg.AuthMethod = "trust"
	cfg.Users = []config.User{{Name: "app"}}
	cfg.Shards = []config.Shard{{Name: "s0", Primary: "127.0.0.1:1"}}
	cfg.Pool.Mode = mode
	cfg.Pool.Size = 4
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	// A loopback TCP listener, not net.Pipe: the proxy relies on socket
	// buffers as every real server connection has them (net.Pipe has none,
	// so any write waits for the other side's read).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go fakeBackend(c)
		}
	}()
	srv.connect = func(ctx context.Context, addr string) (net.Conn, pool.ServerInfo, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return nil, pool.ServerInfo{}, err
		}
		return c, pool.ServerInfo{PID: 42, SecretKey: []byte{1, 2, 3, 4}, Params: map[string]string{"server_version": "15.0"}}, nil
	}
	return srv, cfg
}

// startTestClient runs a session on one end of a pipe and logs in as app.
func startTestClient(tb testing.TB, srv *Server) (net.Conn, *bufio.Reader) {
	tb.Helper()
	client, proxySide := net.Pipe()
	return loginTestClient(tb, srv, client, proxySide)
}

// startTCPTestClient is startTestClient over a loopback socket, which the
// idle waiter can watch (a pipe it cannot).
func startTCPTestClient(tb testing.TB, srv *Server) (net.Conn, *bufio.Reader) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { client.Close() })
	proxySide, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	return loginTestClient(tb, srv, client, proxySide)
}

func loginTestClient(tb testing.TB, srv *Server, client, proxySide net.Conn) (net.Conn, *bufio.Reader) {
	tb.Helper()
	srv.wg.Add(1)
	go srv.serveConn(proxySide)
	if _, err := client.Write(startupPacket(3<<16, "user", "app", "database", "app")); err != nil {
		tb.Fatal(err)
	}
	r := bufio.NewReader(client)
	readUntilReady(tb, r)
	return client, r
}

// readUntilReady reads frames up to ReadyForQuery and returns its status and
// how many frames came before it.
func readUntilReady(tb testing.TB, r *bufio.Reader) (status byte, frames int) {
	tb.Helper()
	for {
		hdr, err := r.Peek(6)
		if err != nil {
			tb.Fatalf("read: %v", err)
		}
		typ, st := hdr[0], hdr[5]
		if _, err := r.Discard(int(binary.BigEndian.Uint32(hdr[1:])) + 1); err != nil {
			tb.Fatal(err)
		}
		if typ == 'Z' {
			return st, frames
		}
		frames++
	}
}
