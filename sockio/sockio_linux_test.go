package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// pair returns the two ends of a real socket of the given network, the
// client end wrapped.
func pair(t testing.TB, network string) (wrapped net.Conn, peer net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer = <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	wrapped = Wrap(c)
	if _, ok := wrapped.(*Conn); !ok {
		t.Fatalf("Wrap(%T) = %T, want *Conn", c, wrapped)
	}
	t.Cleanup(func() { wrapped.Close(); peer.Close() })
	return wrapped, peer
}

func TestWrapLeavesOtherConns(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(pipe) = %T, want the pipe itself", got)
	}
	if fd := FD(a); fd != -1 {
		t.Fatalf("FD(pipe) = %d, want -1", fd)
	}
}

func TestFDAndRewrap(t *testing.T) {
	t.Parallel()
	c, _ := pair(t, "tcp")
	inner := c.(*Conn).Conn
	if fd := FD(c); fd < 0 || fd != FD(inner) {
		t.Fatalf("FD(wrapped) = %d, FD(socket) = %d; want the same descriptor", fd, FD(inner))
	}
	if again := Wrap(c); again != c {
		t.Fatal("Wrap of a *Conn wrapped it again")
	}
}

func TestConn(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network+"/round trip", func(t *testing.T) {
			t.Parallel()
			c, peer := pair(t, network)
			if n, err := c.Write([]byte("ping")); n != 4 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("peer read %q, %v", buf, err)
			}
			if _, err := peer.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("Read = %q, %v", buf[:n], err)
			}
		})
		t.Run(network+"/write bigger than the socket buffer", func(t *testing.T) {
			t.Parallel()
			c, peer := pair(t, network)
			want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(peer)
				got <- b
			}()
			if n, err := c.Write(want); n != len(want) || err != nil {
				t.Fatalf("Write = %d, %v; want %d", n, err, len(want))
			}
			c.Close()
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("peer got %d bytes, want %d identical ones", len(b), len(want))
			}
		})
		t.Run(network+"/EOF", func(t *testing.T) {
			t.Parallel()
			c, peer := pair(t, network)
			peer.Close()
			n, err := c.Read(make([]byte, 8))
			if n != 0 || err != io.EOF {
				t.Fatalf("Read after peer close = %d, %v; want 0, io.EOF", n, err)
			}
		})
		t.Run(network+"/read deadline", func(t *testing.T) {
			t.Parallel()
			c, _ := pair(t, network)
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := c.Read(make([]byte, 8))
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read past deadline = %v, want a timeout", err)
			}
		})
		t.Run(network+"/close while reading", func(t *testing.T) {
			t.Parallel()
			c, _ := pair(t, network)
			done := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 8))
				done <- err
			}()
			time.Sleep(10 * time.Millisecond)
			c.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Read on closed conn = %v, want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Read did not return after Close")
			}
		})
		t.Run(network+"/concurrent writes stay whole", func(t *testing.T) {
			t.Parallel()
			c, peer := pair(t, network)
			const writers, each, size = 4, 12, 200 << 10 // writes that fill the socket buffer midway
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(peer)
				got <- b
			}()
			var wg sync.WaitGroup
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					msg := bytes.Repeat([]byte{byte('a' + w)}, size)
					for i := 0; i < each; i++ {
						if _, err := c.Write(msg); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			c.Close()
			b := <-got
			if len(b) != writers*each*size {
				t.Fatalf("peer got %d bytes, want %d", len(b), writers*each*size)
			}
			for i := 0; i < len(b); i += size {
				if bytes.Count(b[i:i+size], b[i:i+1]) != size {
					t.Fatalf("write %d was interleaved with another", i/size)
				}
			}
		})
		t.Run(network+"/close under writers", func(t *testing.T) {
			t.Parallel()
			c, peer := pair(t, network)
			go func() { _, _ = io.Copy(io.Discard, peer) }()
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for i := 0; i < 4; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if _, err := c.Write(make([]byte, 512)); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			time.Sleep(10 * time.Millisecond)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
				}
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Write on a closed Conn = %v, want net.ErrClosed", err)
			}
		})
		t.Run(network+"/write to a peer that left", func(t *testing.T) {
			t.Parallel()
			c, peer := pair(t, network)
			peer.Close()
			var err error
			// The first write may still be accepted; a later one fails
			// with EPIPE or ECONNRESET, and no SIGPIPE ends the test.
			for i := 0; i < 100 && err == nil; i++ {
				_, err = c.Write(make([]byte, 1024))
				time.Sleep(time.Millisecond)
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "write" {
				t.Fatalf("Write to a gone peer = %v, want a write *net.OpError", err)
			}
		})
	}
}

// BenchmarkPingPong measures a one-byte round trip over loopback TCP, the
// shape of a proxy's per-query work, with the runtime's net.Conn and with
// Conn on the side under test.
func BenchmarkPingPong(b *testing.B) {
	for _, wrap := range []bool{false, true} {
		name := "net.Conn"
		if wrap {
			name = "sockio.Conn"
		}
		b.Run(name, func(b *testing.B) {
			c, peer := pair(b, "tcp")
			if !wrap {
				c = c.(*Conn).Conn
			}
			go func() {
				buf := make([]byte, 1)
				for {
					if _, err := peer.Read(buf); err != nil {
						return
					}
					if _, err := peer.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 1)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestWriteAwaitReadable checks the request-then-wait of a proxy: it returns
// once the reply starts to arrive, even with older unread bytes in the
// socket (each arrival reports it readable again), and leaves the reply
// unread; a full send buffer and a past deadline hand the rest back.
func TestWriteAwaitReadable(t *testing.T) {
	t.Parallel()
	t.Run("reply", func(t *testing.T) {
		t.Parallel()
		for _, stale := range []bool{false, true} {
			c, peer := pair(t, "tcp")
			sc := c.(*Conn)
			if stale {
				// Unsolicited bytes the waiter has not read (a server's
				// NOTICE): they must not make it miss the reply.
				if _, err := peer.Write([]byte("old")); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
				buf := make([]byte, 1)
				// Seen readable once and consumed a little: the state
				// a relay is in after reading a reply.
				if _, err := sc.Read(buf); err != nil {
					t.Fatal(err)
				}
			}
			replied := make(chan struct{})
			go func() {
				defer close(replied)
				req := make([]byte, 4)
				if _, err := io.ReadFull(peer, req); err != nil {
					return
				}
				time.Sleep(30 * time.Millisecond)
				_, _ = peer.Write(append([]byte("re:"), req...))
			}()
			start := time.Now()
			n, err := sc.WriteAwaitReadable([]byte("ping"))
			if err != nil || n != 4 {
				t.Fatalf("stale=%v: WriteAwaitReadable = %d, %v", stale, n, err)
			}
			if !stale && time.Since(start) < 20*time.Millisecond {
				t.Fatalf("returned after %v, before the reply was sent", time.Since(start))
			}
			<-replied
			want := "re:ping"
			if stale {
				want = "ld" + want
			}
			got := make([]byte, len(want))
			if _, err := io.ReadFull(sc, got); err != nil || string(got) != want {
				t.Fatalf("stale=%v: read %q, %v; want %q", stale, got, err, want)
			}
		}
	})
	t.Run("past deadline", func(t *testing.T) {
		t.Parallel()
		c, peer := pair(t, "tcp")
		sc := c.(*Conn)
		_ = sc.SetReadDeadline(time.Now().Add(-time.Second))
		n, err := sc.WriteAwaitReadable([]byte("ping"))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("err = %v, want a timeout", err)
		}
		// Whatever did not go is the caller's to write.
		_ = sc.SetReadDeadline(time.Time{})
		if _, err := sc.Write([]byte("ping")[n:]); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4)
		if _, err := io.ReadFull(peer, got); err != nil || string(got) != "ping" {
			t.Fatalf("peer read %q, %v", got, err)
		}
	})
	t.Run("full send buffer", func(t *testing.T) {
		t.Parallel()
		c, peer := pair(t, "unix")
		sc := c.(*Conn)
		big := bytes.Repeat([]byte("x"), 16<<20) // more than a socket buffers
		n, err := sc.WriteAwaitReadable(big)
		if !errors.Is(err, ErrWouldBlock) || n <= 0 || n >= len(big) {
			t.Fatalf("WriteAwaitReadable(16 MiB) = %d, %v; want part of it and ErrWouldBlock", n, err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := sc.Write(big[n:])
			done <- err
		}()
		got, err := io.ReadAll(io.LimitReader(peer, int64(len(big))))
		if err != nil || len(got) != len(big) {
			t.Fatalf("peer read %d bytes, %v", len(got), err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
