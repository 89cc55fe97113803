package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pipeConnect returns a Connect func over in-memory pipes whose far ends are
// closed when the test ends; dials counts calls.
func pipeConnect(t testing.TB, dials *atomic.Int64) func(context.Context) (net.Conn, ServerInfo, error) {
	var mu sync.Mutex
	var far []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range far {
			c.Close()
		}
	})
	return func(ctx context.Context) (net.Conn, ServerInfo, error) {
		dials.Add(1)
		a, b := net.Pipe()
		mu.Lock()
		far = append(far, b)
		mu.Unlock()
		return a, ServerInfo{PID: uint32(dials.Load())}, nil
	}
}

func TestBorrowReturnAndBound(t *testing.T) {
	t.Parallel()
	var dials atomic.Int64
	p := New(Options{Addr: "x:1", Size: 2, Connect: pipeConnect(t, &dials)})
	defer p.Close()
	ctx := context.Background()
	a, err := p.Borrow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Borrow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.InUse() != 2 {
		t.Fatalf("in use %d, want 2", p.InUse())
	}
	// The pool is full: a third borrower times out with ErrTimeout.
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = p.Borrow(tctx)
	cancel()
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	// A waiter gets the connection handed back.
	got := make(chan *Conn)
	go func() {
		c, err := p.Borrow(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	time.Sleep(20 * time.Millisecond)
	p.Return(a)
	if c := <-got; c != a {
		t.Fatalf("waiter got %p, want the returned %p", c, a)
	}
	// A discarded connection frees its slot for a new dial.
	p.Discard(b)
	c, err := p.Borrow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dials.Load() != 3 || c == b {
		t.Fatalf("dials %d, want a third after a discard", dials.Load())
	}
	p.Return(a)
	p.Return(c)
	if p.InUse() != 0 || p.Stats().Idle != 2 {
		t.Fatalf("in use %d idle %d", p.InUse(), p.Stats().Idle)
	}
	if tc, ok := p.TryBorrow(); !ok || tc == nil {
		t.Fatal("TryBorrow found no idle connection")
	}
}

type refusingBreaker struct{ asked atomic.Int64 }

func (b *refusingBreaker) AllowDial(string) bool    { b.asked.Add(1); return false }
func (b *refusingBreaker) DialResult(string, error) {}

func TestBreakerStopsDials(t *testing.T) {
	t.Parallel()
	var dials atomic.Int64
	br := &refusingBreaker{}
	p := New(Options{Addr: "x:1", Size: 1, Connect: pipeConnect(t, &dials), Breaker: br})
	defer p.Close()
	_, err := p.Borrow(context.Background())
	if !errors.Is(err, ErrBreakerOpen) || dials.Load() != 0 || br.asked.Load() != 1 {
		t.Fatalf("err %v dials %d asked %d", err, dials.Load(), br.asked.Load())
	}
	if p.Stats().Open != 0 {
		t.Fatalf("a refused dial kept its slot: open %d", p.Stats().Open)
	}
}

func TestStatementCacheEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	c := NewStatementCache(2)
	if ev := c.Add("a", "qa"); ev != nil {
		t.Fatal(ev)
	}
	c.Add("b", "qb")
	if !c.Has("a", "qa") { // a is now the most recent
		t.Fatal("a missing")
	}
	ev := c.Add("c", "qc")
	if len(ev) != 1 || ev[0] != "b" {
		t.Fatalf("evicted %v, want [b]", ev)
	}
	if c.Has("a", "other text") {
		t.Fatal("Has matched a different query under the same name")
	}
	c.Clear()
	if c.Len() != 0 || c.Contains("a") {
		t.Fatal("Clear left entries")
	}
}

func TestConcurrentBorrowers(t *testing.T) {
	t.Parallel()
	var dials atomic.Int64
	p := New(Options{Addr: "x:1", Size: 3, Connect: pipeConnect(t, &dials)})
	defer p.Close()
	var wg sync.WaitGroup
	var maxInUse atomic.Int64
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				c, err := p.Borrow(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if n := p.InUse(); n > maxInUse.Load() {
					maxInUse.Store(n)
				}
				p.Return(c)
			}
		}()
	}
	wg.Wait()
	if maxInUse.Load() > 3 || dials.Load() > 3 || p.InUse() != 0 {
		t.Fatalf("max in use %d, dials %d, in use now %d (size 3)", maxInUse.Load(), dials.Load(), p.InUse())
	}
}

// TestIdleConnectionClosedByServer: a server that closed an idle connection
// (a restart, with or without a parting FATAL) makes the next borrow dial a
// fresh one instead of handing out the dead one.
func TestIdleConnectionClosedByServer(t *testing.T) {
	t.Parallel()
	for _, parting := range []string{"", "E"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		far := make(chan net.Conn, 4)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				far <- c
			}
		}()
		var dials atomic.Int64
		p := New(Options{Addr: "x:1", Size: 2, Connect: func(ctx context.Context) (net.Conn, ServerInfo, error) {
			dials.Add(1)
			c, err := net.Dial("tcp", ln.Addr().String())
			return c, ServerInfo{}, err
		}})
		c, err := p.Borrow(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p.Return(c)
		server := <-far
		if parting != "" {
			if _, err := server.Write([]byte(parting)); err != nil {
				t.Fatal(err)
			}
		}
		server.Close()
		time.Sleep(checkIdleAfter + 50*time.Millisecond)
		if _, ok := p.TryBorrow(); ok {
			t.Fatalf("parting %q: TryBorrow handed out a connection the server had closed", parting)
		}
		c2, err := p.Borrow(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if c2 == c || dials.Load() != 2 {
			t.Fatalf("parting %q: got the old connection back (dials %d)", parting, dials.Load())
		}
		// A live idle connection passes the check and is reused.
		p.Return(c2)
		time.Sleep(checkIdleAfter + 50*time.Millisecond)
		c3, ok := p.TryBorrow()
		if !ok || c3 != c2 {
			t.Fatalf("parting %q: a live idle connection was not reused", parting)
		}
		p.Discard(c3)
		p.Close()
		for len(far) > 0 {
			(<-far).Close()
		}
	}
}

// TestBorrowUntil: waiters give up at their own deadlines (the pool's one
// timer serves them all), on their context, or when the pool closes, and a
// waiter with neither gets the next connection back.
func TestBorrowUntil(t *testing.T) {
	t.Parallel()
	var dials atomic.Int64
	p := New(Options{Addr: "x:1", Size: 1, Connect: pipeConnect(t, &dials)})
	defer p.Close()
	a, err := p.Borrow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		c   *Conn
		err error
	}
	wait := func(ctx context.Context, deadline time.Time) chan result {
		out := make(chan result, 1)
		go func() {
			c, err := p.BorrowUntil(ctx, deadline)
			out <- result{c, err}
		}()
		return out
	}
	start := time.Now()
	late := wait(context.Background(), start.Add(400*time.Millisecond))
	early := wait(context.Background(), start.Add(50*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := wait(ctx, time.Time{})
	patient := wait(context.Background(), time.Time{})

	if r := <-early; !errors.Is(r.err, ErrTimeout) {
		t.Fatalf("early waiter: %v, want ErrTimeout", r.err)
	}
	if since := time.Since(start); since < 50*time.Millisecond {
		t.Fatalf("early waiter gave up after %v, before its deadline", since)
	}
	select {
	case r := <-late:
		t.Fatalf("the later waiter gave up with the earlier one: %v", r.err)
	default:
	}
	cancel()
	if r := <-cancelled; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v, want context.Canceled", r.err)
	}
	if r := <-late; !errors.Is(r.err, ErrTimeout) || time.Since(start) < 400*time.Millisecond {
		t.Fatalf("late waiter: %v after %v, want ErrTimeout after 400ms", r.err, time.Since(start))
	}
	p.Return(a)
	if r := <-patient; r.err != nil || r.c != a {
		t.Fatalf("patient waiter got %p, %v; want the returned %p", r.c, r.err, a)
	}
	closed := wait(context.Background(), time.Now().Add(time.Minute))
	for p.Stats().Waiting == 0 {
		time.Sleep(time.Millisecond)
	}
	p.Close()
	if r := <-closed; !errors.Is(r.err, ErrClosed) {
		t.Fatalf("waiter on a closed pool: %v, want ErrClosed", r.err)
	}
	if dials.Load() != 1 {
		t.Fatalf("%d dials, want 1", dials.Load())
	}
}

// TestBorrowUntilLosesNothing: borrowers that give up (deadline or context)
// while connections are returned and handed over must not lose one: after
// the storm every connection can be borrowed again without a new dial.
func TestBorrowUntilLosesNothing(t *testing.T) {
	t.Parallel()
	const size = 3
	var dials atomic.Int64
	p := New(Options{Addr: "x:1", Size: size, Connect: pipeConnect(t, &dials)})
	defer p.Close()
	var wg sync.WaitGroup
	var served, gaveUp atomic.Int64
	for i := 0; i < 24; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 300; j++ {
				ctx, cancel := context.WithCancel(context.Background())
				if j%3 == 0 {
					go cancel() // races with the grant
				}
				c, err := p.BorrowUntil(ctx, time.Now().Add(time.Duration(j%5)*100*time.Microsecond))
				cancel()
				if err != nil {
					if !errors.Is(err, ErrTimeout) && !errors.Is(err, context.Canceled) {
						t.Error(err)
						return
					}
					gaveUp.Add(1)
					continue
				}
				served.Add(1)
				time.Sleep(50 * time.Microsecond) // so that others wait
				p.Return(c)
			}
		}()
	}
	wg.Wait()
	if served.Load() == 0 || gaveUp.Load() == 0 {
		t.Fatalf("served %d, gave up %d: the test did not exercise both", served.Load(), gaveUp.Load())
	}
	var held []*Conn
	for i := 0; i < size; i++ {
		c, ok := p.TryBorrow()
		if !ok {
			t.Fatalf("only %d of %d connections are idle after the storm (in use %d, stats %+v)", i, size, p.InUse(), p.Stats())
		}
		held = append(held, c)
	}
	if dials.Load() != size || p.InUse() != size || p.Stats().Waiting != 0 {
		t.Fatalf("dials %d in use %d stats %+v", dials.Load(), p.InUse(), p.Stats())
	}
	for _, c := range held {
		p.Return(c)
	}
}

// agingPool is a pool of one connection with a 60 ms lifetime, and that
// connection, borrowed.
func agingPool(t *testing.T) (*Pool, *Conn, *atomic.Int64) {
	var dials atomic.Int64
	p := New(Options{Addr: "x:1", Size: 1, MaxLifetime: 60 * time.Millisecond, Connect: pipeConnect(t, &dials)})
	t.Cleanup(p.Close)
	c, err := p.Borrow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p, c, &dials
}

// TestConnectionLimits checks max_lifetime (a connection past it is never
// handed out again, whether borrowed from idle or handed to a waiter on
// Return) and idle_timeout (idle connections are closed, keeping MinIdle).
func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("lifetime, borrowed from idle", func(t *testing.T) {
		t.Parallel()
		p, c1, dials := agingPool(t)
		p.Return(c1)
		if c, ok := p.TryBorrow(); !ok || c != c1 {
			t.Fatalf("a young idle connection was not reused: %v %v", c, ok)
		} else {
			p.Return(c)
		}
		time.Sleep(100 * time.Millisecond)
		c2, err := p.Borrow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c2 == c1 || dials.Load() != 2 {
			t.Fatalf("after max lifetime: same connection %v, %d dials; want a new one, 2 dials", c2 == c1, dials.Load())
		}
		p.Return(c2)
	})
	t.Run("lifetime, handed to a waiter", func(t *testing.T) {
		t.Parallel()
		p, c1, dials := agingPool(t)
		got := make(chan *Conn, 1)
		go func() {
			c, err := p.Borrow(ctx)
			if err != nil {
				t.Error(err)
			}
			got <- c
		}()
		time.Sleep(100 * time.Millisecond) // c1 ages while the waiter waits
		p.Return(c1)
		c2 := <-got
		if c2 == nil || c2 == c1 || dials.Load() != 2 {
			t.Fatalf("the waiter got the expired connection (%v) or no new one (%d dials)", c2 == c1, dials.Load())
		}
		p.Return(c2)
	})
	for _, tc := range []struct {
		minIdle, want int
	}{{0, 0}, {1, 1}} {
		t.Run(fmt.Sprintf("idle timeout, min idle %d", tc.minIdle), func(t *testing.T) {
			t.Parallel()
			var dials atomic.Int64
			p := New(Options{Addr: "x:1", Size: 3, MinIdle: tc.minIdle, IdleTimeout: 100 * time.Millisecond, Connect: pipeConnect(t, &dials)})
			defer p.Close()
			var cs []*Conn
			for range 3 {
				c, err := p.Borrow(ctx)
				if err != nil {
					t.Fatal(err)
				}
				cs = append(cs, c)
			}
			for _, c := range cs {
				p.Return(c)
			}
			if st := p.Stats(); st.Open != 3 || st.Idle != 3 {
				t.Fatalf("before the timeout: %+v, want 3 open and idle", st)
			}
			deadline := time.Now().Add(3 * time.Second)
			for p.Stats().Open != tc.want && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if st := p.Stats(); st.Open != tc.want || st.Idle != tc.want {
				t.Fatalf("after the idle timeout: %+v, want %d open and idle", st, tc.want)
			}
			// What is left is still usable.
			if tc.want > 0 {
				if _, ok := p.TryBorrow(); !ok {
					t.Fatal("the connection kept for MinIdle cannot be borrowed")
				}
			}
		})
	}
}
