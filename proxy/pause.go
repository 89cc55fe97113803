package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// shardGate holds new transactions of a paused shard and counts the
// sessions attached to it, so PAUSE can wait for them to finish.
type shardGate struct {
	active atomic.Int64
	mu     sync.Mutex                    // serialises PAUSE and RESUME
	held   atomic.Pointer[chan struct{}] // non-nil while paused; closed by RESUME
}

// gate returns shard's gate, made on first use.
func (s *Server) gate(shard string) *shardGate {
	return s.gates.get(shard, func() *shardGate { return &shardGate{} })
}

// waitUnpaused blocks a new transaction while its shard is paused.
func (g *shardGate) waitUnpaused() {
	if held := g.held.Load(); held != nil {
		<-*held
	}
}

func (s *Server) isPaused(shard string) bool {
	return s.gate(shard).held.Load() != nil
}

// pause holds new transactions on shards and waits until their running ones
// have finished, or ctx ends (the shards stay paused then too).
func (s *Server) pause(ctx context.Context, shards []string) error {
	for _, sh := range shards {
		g := s.gate(sh)
		g.mu.Lock()
		if g.held.Load() == nil {
			held := make(chan struct{})
			g.held.Store(&held)
		}
		g.mu.Unlock()
	}
	s.log.Info("pausing", "shards", shards)
	for _, sh := range shards {
		g := s.gate(sh)
		for g.active.Load() > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("shard %s still has %d transactions running (it stays paused): %w", sh, g.active.Load(), errors.Unwrap(ctx.Err()))
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// resume releases held transactions.
func (s *Server) resume(shards []string) {
	for _, sh := range shards {
		g := s.gate(sh)
		g.mu.Lock()
		if held := g.held.Load(); held != nil {
			close(*held)
			g.held.Store(nil)
		}
		g.mu.Unlock()
	}
	s.log.Info("resumed", "shards", shards)
}

// SetReload installs what RELOAD runs (the binary's config reload).
func (s *Server) SetReload(fn func() error) { s.reloadFn = fn }

// Reload runs the installed reload.
func (s *Server) Reload() error {
	if s.reloadFn == nil {
		return errors.New("no configuration file to reload")
	}
	return s.reloadFn()
}
