//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/shardwire/shardwire/pool"
)

func (w *idleWaiter) parkedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.parked)
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestIdleWaiter: sessions idle between transactions are parked (no
// goroutine), wake on their next query, in any number at once, are forgotten
// when their client hangs up while parked, and are told at shutdown.
func TestIdleWaiter(t *testing.T) {
	t.Parallel()
	srv, _ := newTestServer(t, "transaction")
	if srv.idle == nil {
		t.Fatal("no idle waiter on Linux")
	}
	const n = 40
	clients := make([]net.Conn, n)
	readers := make([]*bufioReader, n)
	for i := range clients {
		c, r := startTCPTestClient(t, srv)
		clients[i], readers[i] = c, &bufioReader{r}
	}
	waitFor(t, "every idle client parked", func() bool { return srv.idle.parkedCount() == n })

	query := appendQuery(nil, "SELECT 1")
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := clients[i].Write(query); err != nil {
					errs <- err
					return
				}
				if st, frames, err := readers[i].untilReady(); err != nil {
					errs <- err
				} else if st != 'I' || frames != 3 {
					t.Errorf("client %d: status %c after %d frames, want I after 3", i, st, frames)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	waitFor(t, "every client parked again", func() bool { return srv.idle.parkedCount() == n })

	// A client hanging up while parked ends its session.
	for _, c := range clients[:n/2] {
		c.Close()
	}
	waitFor(t, "hung-up clients forgotten", func() bool { return srv.Clients() == n-n/2 && srv.idle.parkedCount() == n-n/2 })

	// Shutdown wakes the parked clients and says why it closes them.
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	for i := n / 2; i < n; i++ {
		_ = clients[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		if code := readers[i].fatalCode(t); code != codeAdminShutdown {
			t.Errorf("client %d at shutdown: SQLSTATE %q, want %s", i, code, codeAdminShutdown)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return with every client gone")
	}
	if srv.idle.park(&session{fd: 0}) {
		t.Error("a session was parked after shutdown")
	}
}

// TestIdleWaiterIdleTimeout: a parked client is ended by
// limits.client_idle_timeout although its socket has no deadline.
func TestIdleWaiterIdleTimeout(t *testing.T) {
	t.Parallel()
	srv, cfg := newTestServer(t, "transaction")
	c := *cfg
	c.Limits.ClientIdleTimeout = 100 * time.Millisecond
	srv.cfg.Store(&c)
	conn, r := startTCPTestClient(t, srv)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if code := (&bufioReader{r}).fatalCode(t); code != "57P05" {
		t.Fatalf("SQLSTATE %q, want 57P05", code)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("idle client ended after %v with a 100ms timeout", took)
	}
	waitFor(t, "the session forgotten", func() bool { return srv.Clients() == 0 })
}

type bufioReader struct{ r *bufio.Reader }

// untilReady reads up to ReadyForQuery; it is safe off the test goroutine.
func (b *bufioReader) untilReady() (status byte, frames int, err error) {
	for {
		hdr, err := b.r.Peek(6)
		if err != nil {
			return 0, frames, err
		}
		typ, st := hdr[0], hdr[5]
		if _, err := b.r.Discard(int(binary.BigEndian.Uint32(hdr[1:])) + 1); err != nil {
			return 0, frames, err
		}
		if typ == 'Z' {
			return st, frames, nil
		}
		frames++
	}
}

// fatalCode reads the next frame, which must be an ErrorResponse, and
// returns its SQLSTATE.
func (b *bufioReader) fatalCode(t *testing.T) string {
	t.Helper()
	hdr, err := b.r.Peek(5)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	body := make([]byte, int(binary.BigEndian.Uint32(hdr[1:]))+1)
	if _, err := io.ReadFull(b.r, body); err != nil {
		t.Fatal(err)
	}
	if body[0] != 'E' {
		t.Fatalf("got %q, want an ErrorResponse", body[0])
	}
	for f := body[5:]; len(f) > 1; {
		end := bytes.IndexByte(f, 0)
		if end < 0 {
			break
		}
		if f[0] == 'C' {
			return string(f[1:end])
		}
		f = f[end+1:]
	}
	t.Fatal("ErrorResponse without SQLSTATE")
	return ""
}

// TestLoginServerDownCountsOnce: a login refused because the server cannot
// be reached leaves the client count where it was (it was once taken off
// twice, which let max_clients be exceeded afterwards).
func TestLoginServerDownCountsOnce(t *testing.T) {
	t.Parallel()
	srv, _ := newTestServer(t, "transaction")
	srv.connect = func(context.Context, string) (net.Conn, pool.ServerInfo, error) {
		return nil, pool.ServerInfo{}, errors.New("connection refused")
	}
	for i := 0; i < 3; i++ {
		client, proxySide := net.Pipe()
		srv.wg.Add(1)
		go srv.serveConn(proxySide)
		if _, err := client.Write(startupPacket(3<<16, "user", "app", "database", "app")); err != nil {
			t.Fatal(err)
		}
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := &bufioReader{bufio.NewReader(client)}
		if code := r.fatalCode(t); code != codeConnectionFailure {
			t.Fatalf("SQLSTATE %q, want %s", code, codeConnectionFailure)
		}
		client.Close()
	}
	waitFor(t, "the refused logins' goroutines done", func() bool { return srv.Clients() <= 0 })
	if n := srv.Clients(); n != 0 {
		t.Fatalf("client count %d after three refused logins, want 0", n)
	}
}
