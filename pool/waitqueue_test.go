package pool

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
)

// TestWaitQueue drives the ring and a plain slice with the same random
// operations and checks that they agree on order at every step, across
// growth and wrap-around.
func TestWaitQueue(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3, 4} {
		rng := rand.New(rand.NewPCG(seed, seed))
		var q waitQueue
		var model []*waiter
		pool := make([]*waiter, 64)
		for i := range pool {
			pool[i] = &waiter{}
		}
		for step := range 5000 {
			switch op := rng.IntN(10); {
			case op < 5:
				w := pool[rng.IntN(len(pool))]
				if slices.Contains(model, w) {
					continue // a waiter is queued at most once
				}
				q.push(w)
				model = append(model, w)
			case op < 8:
				got := q.pop()
				var want *waiter
				if len(model) > 0 {
					want, model = model[0], model[1:]
				}
				if got != want {
					t.Fatalf("seed %d step %d: pop %p, want %p", seed, step, got, want)
				}
			case op < 9:
				w := pool[rng.IntN(len(pool))]
				i := slices.Index(model, w)
				if got := q.remove(w); got != (i >= 0) {
					t.Fatalf("seed %d step %d: remove %v, want %v", seed, step, got, i >= 0)
				}
				if i >= 0 {
					model = slices.Delete(model, i, i+1)
				}
			default:
				drop := pool[rng.IntN(len(pool))]
				q.keepIf(func(w *waiter) bool { return w != drop })
				model = slices.DeleteFunc(model, func(w *waiter) bool { return w == drop })
			}
			if q.len() != len(model) {
				t.Fatalf("seed %d step %d: len %d, want %d", seed, step, q.len(), len(model))
			}
			for i, w := range model {
				if q.at(i) != w {
					t.Fatalf("seed %d step %d: at(%d) differs", seed, step, i)
				}
			}
			// Slots outside the queue hold no stale waiters.
			live := 0
			for _, w := range q.buf {
				if w != nil {
					live++
				}
			}
			if live != q.n {
				t.Fatalf("seed %d step %d: %d non-nil slots for %d waiters", seed, step, live, q.n)
			}
		}
	}
}

// BenchmarkContendedBorrow has more borrowers than connections, so most
// borrows wait in the queue and are handed a returned connection.
func BenchmarkContendedBorrow(b *testing.B) {
	var dials atomic.Int64
	p := New(Options{Addr: "x:1", Size: 4, Connect: pipeConnect(b, &dials)})
	defer p.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(4) // 4×GOMAXPROCS borrowers for 4 connections
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := p.Borrow(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			p.Return(c)
		}
	})
	if s := p.Stats(); s.Waiting != 0 {
		b.Fatalf("%d still waiting", s.Waiting)
	}
}
