package health

import (
	"sync"
	"sync/atomic"
	"time"
)

// breaker is a circuit breaker for connection attempts to one node. After
// threshold consecutive failed dials it opens: dials are refused for a
// back-off that doubles with every further failure (base, 2·base, … up to
// ceiling). When the back-off has passed it lets one dial through (half
// open); that dial's success closes it, its failure re-opens it for longer.
// A successful dial by the checker closes it too, so a node that came back
// does not wait out the back-off.
type breaker struct {
	threshold int
	base      time.Duration
	ceiling   time.Duration
	probe     time.Duration // how long one half-open dial may take before another is allowed

	tripped atomic.Bool // fails >= threshold: the lock-free fast path of allow

	mu         sync.Mutex
	fails      int
	openUntil  time.Time
	probeUntil time.Time
	opens      uint64 // times it opened
	refused    uint64 // dials it refused
}

func newBreaker(set settings) *breaker {
	return &breaker{
		threshold: set.failuresBeforeDown,
		base:      set.interval,
		ceiling:   maxRetryBackoff,
		probe:     max(2*set.timeout, set.interval),
	}
}

// allow reports whether a dial may start now.
func (b *breaker) allow(now time.Time) bool {
	if !b.tripped.Load() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fails < b.threshold {
		return true
	}
	if now.Before(b.openUntil) || now.Before(b.probeUntil) {
		b.refused++
		return false
	}
	b.probeUntil = now.Add(b.probe)
	return true
}

// result records the outcome of a dial; it returns true when the breaker
// opened because of it.
func (b *breaker) result(err error, now time.Time) bool {
	cl := classify(err)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probeUntil = time.Time{}
	if err == nil {
		b.fails, b.openUntil = 0, time.Time{}
		b.tripped.Store(false)
		return false
	}
	if cl == classIgnore {
		return false // a bad password or a caller giving up says nothing about the node
	}
	b.fails++
	if b.fails < b.threshold {
		return false
	}
	d := b.base << min(b.fails-b.threshold, 20)
	if d <= 0 || d > b.ceiling {
		d = b.ceiling
	}
	b.openUntil = now.Add(d)
	b.tripped.Store(true)
	if b.fails == b.threshold {
		b.opens++
		return true
	}
	return false
}

func (b *breaker) reset() {
	b.mu.Lock()
	b.fails, b.openUntil, b.probeUntil = 0, time.Time{}, time.Time{}
	b.tripped.Store(false)
	b.mu.Unlock()
}

func (b *breaker) counts(now time.Time) (opens, refused uint64, open bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opens, b.refused, b.fails >= b.threshold && now.Before(b.openUntil)
}
