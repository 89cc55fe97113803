package router

import (
	"sync"
	"sync/atomic"
)

// shapeCache maps a shape's hash to its Analysis, bounded by an estimate of
// the bytes its entries hold. Lookups take no lock (sync.Map reads are
// lock-free for keys that are not being written), so many sessions hitting
// the same hot shape do not contend; only a miss takes the mutex, to insert
// and evict. Eviction is CLOCK: each entry has a referenced bit set by hits
// and a hand sweeps the entries, clearing set bits and evicting the first
// entry found clear. New entries start clear, so a burst of one-off shapes
// evicts itself before it evicts the hot ones.
type shapeCache struct {
	m sync.Map // uint64 -> *cacheEntry

	mu        sync.Mutex
	ring      []*cacheEntry // all entries, in no particular order
	hand      int
	used      int64
	budget    int64
	maxEntry  int64
	evictions atomic.Uint64
}

type cacheEntry struct {
	hash uint64
	an   *Analysis
	cost int64
	ref  atomic.Bool
}

// entryOverhead estimates the bytes an entry costs beyond its strings: the
// entry, the Analysis, the map's node and slice headers.
const entryOverhead = 256

func newShapeCache(budget int64) *shapeCache {
	return &shapeCache{budget: budget, maxEntry: budget / 8}
}

// get returns the cached analysis of shape, whose hash is h, or nil.
func (c *shapeCache) get(h uint64, shape []byte) *Analysis {
	v, ok := c.m.Load(h)
	if !ok {
		return nil
	}
	e := v.(*cacheEntry)
	if e.an.Shape != string(shape) { // a hash collision: treat as a miss
		return nil
	}
	if !e.ref.Load() { // avoid writing a shared cache line on every hit
		e.ref.Store(true)
	}
	return e.an
}

// add caches an under hash h and returns the analysis to use: an, or the
// entry another goroutine cached for the same shape meanwhile. An analysis
// costing more than an eighth of the budget is returned uncached.
func (c *shapeCache) add(h uint64, an *Analysis) *Analysis {
	cost := an.cost()
	if cost > c.maxEntry {
		return an
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m.Load(h); ok {
		if old := v.(*cacheEntry); old.an.Shape == an.Shape {
			return old.an
		}
		return an // collision with another shape: keep the resident one
	}
	for c.used+cost > c.budget && len(c.ring) > 0 {
		c.evictOne()
	}
	e := &cacheEntry{hash: h, an: an, cost: cost}
	c.ring = append(c.ring, e)
	c.used += cost
	c.m.Store(h, e)
	return an
}

// evictOne removes one entry by CLOCK. c.mu is held. Hits running
// meanwhile may set bits again behind the hand, so after two full turns it
// evicts the entry under the hand whatever its bit.
func (c *shapeCache) evictOne() {
	for steps := 0; ; steps++ {
		if c.hand >= len(c.ring) {
			c.hand = 0
		}
		e := c.ring[c.hand]
		if e.ref.Load() && steps < 2*len(c.ring) {
			e.ref.Store(false)
			c.hand++
			continue
		}
		last := len(c.ring) - 1
		c.ring[c.hand] = c.ring[last]
		c.ring[last] = nil
		c.ring = c.ring[:last]
		c.m.CompareAndDelete(e.hash, e)
		c.used -= e.cost
		c.evictions.Add(1)
		return
	}
}

// CacheStats describes an Analyzer's shape cache.
type CacheStats struct {
	Misses    uint64 // analyses run (cache misses and uncacheable text)
	Entries   int
	Bytes     int64 // estimated bytes held
	Budget    int64
	Evictions uint64
}

func (c *shapeCache) stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Entries: len(c.ring), Bytes: c.used, Budget: c.budget, Evictions: c.evictions.Load()}
}
