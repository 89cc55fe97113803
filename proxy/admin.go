package proxy

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shardwire/shardwire/config"
)

// The admin console: database "shardwire" over the wire protocol, for users
// with admin: true. It speaks the simple query protocol (psql does) and
// answers SHOW POOLS | SHARDS | NODES | CLIENTS | STATS | CONFIG, RELOAD,
// PAUSE [shard] and RESUME [shard] with ordinary result sets.

// adminSession serves one admin console client.
type adminSession struct {
	srv    *Server
	client *clientConn
	user   config.User
}

func (a *adminSession) run() {
	defer a.client.Close()
	for {
		typ, body, err := a.client.read()
		if err != nil {
			if ce := asClientError(err); ce != nil {
				_ = a.client.send(appendError(nil, "FATAL", ce.code, ce.msg))
			}
			return
		}
		var out []byte
		switch typ {
		case 'X':
			return
		case 'Q':
			if len(body) == 0 || body[len(body)-1] != 0 {
				_ = a.client.send(appendError(nil, "FATAL", codeProtocolViolation, "malformed Query message"))
				return
			}
			out = a.query(strings.TrimSpace(string(body[:len(body)-1])))
			out = appendReady(out, 'I')
		case 'S':
			out = appendReady(nil, 'I')
		case 'P', 'B', 'D', 'E', 'C', 'H', 'F':
			// Extended protocol: refuse until Sync.
			out = appendError(nil, "ERROR", codeFeatureNotSupported, "the shardwire admin console speaks the simple query protocol only (use psql)")
			for typ != 'S' {
				if typ, _, err = a.client.read(); err != nil {
					return
				}
			}
			out = appendReady(out, 'I')
		default:
			_ = a.client.send(appendError(nil, "FATAL", codeProtocolViolation, fmt.Sprintf("invalid frontend message type %d", typ)))
			return
		}
		if err := a.client.send(out); err != nil {
			return
		}
	}
}

// table is a result set of text columns.
type table struct {
	cols []string
	rows [][]string
}

func (t *table) add(vals ...any) {
	row := make([]string, len(vals))
	for i, v := range vals {
		row[i] = fmt.Sprint(v)
	}
	t.rows = append(t.rows, row)
}

func (t *table) encode(dst []byte, tag string) []byte {
	var start int
	dst, start = beginFrame(dst, 'T')
	dst = append(dst, byte(len(t.cols)>>8), byte(len(t.cols)))
	for _, c := range t.cols {
		dst = append(dst, c...)
		dst = append(dst, 0)
		// table OID, column, type OID 25 (text), size -1, modifier -1, format text
		dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0)
	}
	dst = finishFrame(dst, start)
	for _, r := range t.rows {
		dst, start = beginFrame(dst, 'D')
		dst = append(dst, byte(len(r)>>8), byte(len(r)))
		for _, v := range r {
			n := len(v)
			dst = append(dst, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
			dst = append(dst, v...)
		}
		dst = finishFrame(dst, start)
	}
	return appendFrame(dst, 'C', []byte(tag+" "+strconv.Itoa(len(t.rows))+"\x00"))
}

func (a *adminSession) query(q string) []byte {
	q = strings.TrimRight(q, "; \t\n")
	words := strings.Fields(strings.ToUpper(q))
	if len(words) == 0 {
		return []byte{'I', 0, 0, 0, 4}
	}
	arg := ""
	if len(words) > 1 {
		arg = strings.ToLower(strings.Fields(q)[1])
	}
	switch words[0] {
	case "SHOW":
		if len(words) != 2 {
			break
		}
		var t *table
		switch words[1] {
		case "POOLS":
			t = a.srv.showPools()
		case "SHARDS":
			t = a.srv.showShards()
		case "NODES":
			t = a.srv.showNodes()
		case "CLIENTS":
			t = a.srv.showClients()
		case "STATS":
			t = a.srv.showStats()
		case "CONFIG":
			t = a.srv.showConfig()
		}
		if t != nil {
			return t.encode(nil, "SHOW")
		}
	case "RELOAD":
		if len(words) != 1 {
			break
		}
		if err := a.srv.Reload(); err != nil {
			return appendError(nil, "ERROR", "F0000", "reload failed, the old configuration stays: "+err.Error())
		}
		return appendFrame(nil, 'C', []byte("RELOAD\x00"))
	case "PAUSE", "RESUME":
		if len(words) > 2 {
			break
		}
		shards, err := a.srv.shardsNamed(arg)
		if err != nil {
			return appendError(nil, "ERROR", "42704", err.Error())
		}
		if words[0] == "PAUSE" {
			ctx, cancel := context.WithTimeout(context.Background(), a.srv.config().Limits.ShutdownTimeout)
			err := a.srv.pause(ctx, shards)
			cancel()
			if err != nil {
				return appendError(nil, "ERROR", "57014", err.Error())
			}
		} else {
			a.srv.resume(shards)
		}
		return appendFrame(nil, 'C', []byte(words[0]+"\x00"))
	}
	return appendError(nil, "ERROR", "42601", fmt.Sprintf("unknown admin command %q: use SHOW POOLS|SHARDS|NODES|CLIENTS|STATS|CONFIG, RELOAD, PAUSE [shard], RESUME [shard]", q))
}

func (s *Server) showPools() *table {
	t := &table{cols: []string{"shard", "node", "user", "active", "idle", "waiting", "borrows", "dials", "dial_errors", "discards", "wait_seconds"}}
	st := s.MetricsState()
	ps := s.PoolStats()
	sort.Slice(st.Pools, func(i, j int) bool {
		return st.Pools[i].Shard+st.Pools[i].Node+st.Pools[i].User < st.Pools[j].Shard+st.Pools[j].Node+st.Pools[j].User
	})
	for _, p := range st.Pools {
		raw := ps[[2]string{p.Node, p.User}]
		t.add(p.Shard, p.Node, p.User, p.Active, p.Idle, p.Waiting, raw.Borrows, p.Dials, p.DialErrors, raw.Discards, fmt.Sprintf("%.3f", p.WaitSeconds))
	}
	return t
}

func (s *Server) showShards() *table {
	t := &table{cols: []string{"shard", "writer", "state", "readers", "timeline", "failovers", "paused"}}
	for _, sh := range s.config().Shards {
		writer, state, readers, timeline, failovers := sh.Primary, "configured", "", "", ""
		if s.health() != nil {
			ts := s.health().Topology().Shard(sh.Name)
			if ts != nil {
				writer, state = "", "writable"
				if ts.Writer != nil {
					writer = ts.Writer.Addr
				} else {
					state = "no writer: " + ts.WriterReason
				}
				var rs []string
				for _, r := range ts.Readers {
					rs = append(rs, r.Addr)
				}
				readers = strings.Join(rs, ",")
				timeline = strconv.Itoa(int(ts.Timeline))
				failovers = strconv.FormatUint(ts.Failovers, 10)
			}
		}
		t.add(sh.Name, writer, state, readers, timeline, failovers, s.isPaused(sh.Name))
	}
	return t
}

func (s *Server) showNodes() *table {
	t := &table{cols: []string{"shard", "node", "configured_role", "role", "state", "readable", "timeline", "lsn", "lag_seconds", "lag_bytes", "last_error"}}
	if s.health() == nil {
		for _, sh := range s.config().Shards {
			t.add(sh.Name, sh.Primary, "primary", "unknown", "unchecked", false, "", "", "", "", "")
		}
		return t
	}
	for _, sh := range s.health().Topology().Shards {
		for _, n := range sh.Nodes {
			lsn := n.CurrentLSN
			if n.Role.String() == "replica" {
				lsn = n.ReplayLSN
			}
			t.add(sh.Name, n.Addr, n.ConfiguredRole, n.Role, n.State, n.Readable, n.Timeline, lsn,
				fmt.Sprintf("%.3f", n.Lag.Seconds()), n.LagBytes, n.LastError)
		}
	}
	return t
}

func (s *Server) showClients() *table {
	t := &table{cols: []string{"id", "user", "remote", "connected_seconds", "state", "node", "pinned"}}
	s.sessionsMu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		list = append(list, sess)
	}
	s.sessionsMu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].started < list[j].started })
	for _, sess := range list {
		sess.mu.Lock()
		state, node := "idle", ""
		if sess.server != nil {
			state, node = "active", sess.server.Addr()
			switch sess.txStatus {
			case 'T':
				state = "in transaction"
			case 'E':
				state = "in failed transaction"
			}
		}
		pinned := sess.pinned
		sess.mu.Unlock()
		t.add(sess.pid, sess.user.Name, sess.addr, int(time.Since(time.Unix(0, sess.started)).Seconds()), state, node, pinned)
	}
	return t
}

func (s *Server) showStats() *table {
	t := &table{cols: []string{"name", "value"}}
	t.add("clients", s.clients.Load())
	var borrows, dials, dialErrors, discards uint64
	var wait time.Duration
	for _, p := range s.PoolStats() {
		borrows += p.Borrows
		dials += p.Dials
		dialErrors += p.DialErrors
		discards += p.Discards
		wait += p.WaitTime
	}
	t.add("server_borrows", borrows)
	t.add("server_dials", dials)
	t.add("server_dial_errors", dialErrors)
	t.add("server_discards", discards)
	t.add("borrow_wait_seconds", fmt.Sprintf("%.3f", wait.Seconds()))
	t.add("known_statements", s.statements.size())
	st := s.analyzer.Stats()
	t.add("shape_cache_entries", st.Entries)
	t.add("shape_cache_bytes", st.Bytes)
	t.add("shape_cache_misses", st.Misses)
	return t
}

func (s *Server) showConfig() *table {
	c := s.config()
	t := &table{cols: []string{"key", "value"}}
	t.add("config", c.Path)
	t.add("listen", c.Listen)
	t.add("admin_listen", c.AdminListen)
	t.add("database", c.Database)
	t.add("auth_method", c.AuthMethod)
	t.add("tls", c.TLS != nil)
	t.add("pool.mode", c.Pool.Mode)
	t.add("pool.size", c.Pool.Size)
	t.add("pool.max_clients", c.Pool.MaxClients)
	t.add("pool.acquire_timeout", c.Pool.AcquireTimeout)
	t.add("pool.idle_timeout", c.Pool.IdleTimeout)
	t.add("pool.max_lifetime", c.Pool.MaxLifetime)
	t.add("routing.reads", c.Routing.Reads)
	t.add("routing.balance", c.Routing.Balance)
	t.add("routing.fallback", c.Routing.Fallback)
	t.add("routing.max_replica_lag", c.Routing.MaxReplicaLag)
	t.add("routing.read_your_writes", c.Routing.ReadYourWrites)
	t.add("health.interval", c.Health.Interval)
	t.add("health.timeout", c.Health.Timeout)
	t.add("health.failures_before_down", c.Health.FailuresBeforeDown)
	t.add("failover.mode", c.Failover.Mode)
	t.add("default_shard", c.DefaultShardName())
	t.add("ring.vnodes", c.Ring.VNodes)
	t.add("limits.max_message_size", int64(c.Limits.MaxMessageSize))
	t.add("limits.shutdown_timeout", c.Limits.ShutdownTimeout)
	return t
}

// shardsNamed resolves PAUSE/RESUME's argument: one shard, or all.
func (s *Server) shardsNamed(name string) ([]string, error) {
	if name == "" {
		out := make([]string, 0, len(s.config().Shards))
		for _, sh := range s.config().Shards {
			out = append(out, sh.Name)
		}
		return out, nil
	}
	if _, ok := s.config().Shard(name); !ok {
		return nil, fmt.Errorf("no shard %q", name)
	}
	return []string{name}, nil
}

// adminHandoff carries an authenticated admin console client out of the
// handshake.
type adminHandoff struct{ a *adminSession }

func (*adminHandoff) Error() string { return "admin console" }
