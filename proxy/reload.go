package proxy

import (
	"fmt"
	"reflect"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/shardmap"
)

// ShardMap returns the shard map in force.
func (s *Server) ShardMap() *shardmap.Map { return s.shards.Load() }

// ApplyConfig makes cfg the configuration in force: users and passwords,
// routing settings, the shard map, and everything read per transaction.
// Running transactions finish where they started; no client is dropped.
// It returns the keys whose change needs a restart to take effect (they
// keep their old values meanwhile).
func (s *Server) ApplyConfig(cfg *config.Config) (needRestart []string, err error) {
	old := s.config()
	auth, err := newAuthenticator(cfg)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	next := *cfg
	keep := func(name string, oldV, newV any, restore func()) {
		if !reflect.DeepEqual(oldV, newV) {
			needRestart = append(needRestart, name)
			restore()
		}
	}
	keep("listen", old.Listen, cfg.Listen, func() { next.Listen = old.Listen })
	keep("admin_listen", old.AdminListen, cfg.AdminListen, func() { next.AdminListen = old.AdminListen })
	keep("database", old.Database, cfg.Database, func() { next.Database = old.Database })
	keep("tls", old.TLS, cfg.TLS, func() { next.TLS = old.TLS })
	// Pools and the health checker read it when they are made.
	keep("server_tls", old.ServerTLS, cfg.ServerTLS, func() { next.ServerTLS = old.ServerTLS })
	keep("pool.mode", old.Pool.Mode, cfg.Pool.Mode, func() { next.Pool.Mode = old.Pool.Mode })
	keep("pool.size", old.Pool.Size, cfg.Pool.Size, func() { next.Pool.Size = old.Pool.Size })
	keep("routing.read_only_functions", old.Routing.ReadOnlyFunctions, cfg.Routing.ReadOnlyFunctions,
		func() { next.Routing.ReadOnlyFunctions = old.Routing.ReadOnlyFunctions })
	m, err := shardmap.New(&next)
	if err != nil {
		return nil, err
	}
	s.auth.Store(auth)
	s.shards.Store(m)
	s.cfg.Store(&next)
	return needRestart, nil
}
