package proxy

import (
	"maps"
	"sync"
	"sync/atomic"

	"github.com/shardwire/shardwire/metrics"
	"github.com/shardwire/shardwire/pool"
)

// attachTarget is where a session's server connection comes from, with what
// every transaction there needs resolved once: the node's metrics and the
// shard's gate. Targets are made once per (shard, pool, role) and shared, so
// a session keeps a pointer to its last one and, when the next transaction
// goes to the same place (nearly always), looks nothing up.
type attachTarget struct {
	targetKey
	metrics *metrics.Node // nil without metrics
	gate    *shardGate
}

type targetKey struct {
	shard  string
	pool   *pool.Pool
	writer bool
}

// target returns the shared target for a connection from p serving shard.
func (s *Server) target(shard string, p *pool.Pool, writer bool) *attachTarget {
	key := targetKey{shard, p, writer}
	return s.targets.get(key, func() *attachTarget {
		return &attachTarget{targetKey: key, metrics: s.nodeMetrics(shard, p.Addr(), writer), gate: s.gate(shard)}
	})
}

// targetFor is Server.target, answered from the session's last target when
// it matches.
func (s *session) targetFor(shard string, p *pool.Pool, writer bool) *attachTarget {
	if t := s.target; t != nil && t.targetKey == (targetKey{shard, p, writer}) {
		return t
	}
	return s.srv.target(shard, p, writer)
}

// gateFor returns shard's gate, from the session's last target when it
// matches.
func (s *session) gateFor(shard string) *shardGate {
	if t := s.target; t != nil && t.shard == shard {
		return t.gate
	}
	return s.srv.gate(shard)
}

// metricsNode returns the metrics of the node the session is attached to
// (or was last), nil without metrics.
func (s *session) metricsNode() *metrics.Node {
	if s.target == nil {
		return nil
	}
	return s.target.metrics
}

// cowMap is a map read without a lock on every transaction and written
// rarely (once per key): writers copy it.
type cowMap[K comparable, V any] struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[K]V]
}

// get returns k's value, storing newV() for it first if there is none.
func (c *cowMap[K, V]) get(k K, newV func() V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var old map[K]V
	if m := c.m.Load(); m != nil {
		old = *m
	}
	if v, ok := old[k]; ok {
		return v
	}
	v := newV()
	next := make(map[K]V, len(old)+1)
	maps.Copy(next, old)
	next[k] = v
	c.m.Store(&next)
	return v
}
