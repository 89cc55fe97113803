package proxy

import (
	"context"
	"errors"
	"fmt"
	"github.com/shardwire/shardwire/shardmap"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/shardwire/shardwire/health"
	"github.com/shardwire/shardwire/pool"
	"github.com/shardwire/shardwire/router"
)

// routeRequest is what the session knows when it must pick a server
// connection for the work that starts now.
type routeRequest struct {
	read  bool        // every statement of the work may run on a replica
	hint  router.Role // a statement's /* shardwire: role=… */ hint
	shard string      // the shard the work needs; "" for any (the current one, or default_shard)
}

// rywMark is a client's last commit on a shard's primary, for
// read-your-writes: its reads go only to replicas that have replayed past
// lsn, and until lsn is known (a primary position sampled after the
// commit), to the primary.
type rywMark struct {
	shard string
	after time.Time
	lsn   health.LSN
}

// chooseNodeExcept picks the pool for new work on shard, leaving out the
// replica at skip. It reports whether the node is the shard's writer.
func (s *session) chooseNodeExcept(shard string, req routeRequest, skip string) (*pool.Pool, bool, error) {
	cfg := s.srv.config()
	role := req.hint
	if role == router.RoleAuto {
		role = s.roleSetting
	}
	if role == router.RoleAuto {
		role = router.RolePrimary
		// Session mode keeps the first connection for the whole session,
		// so it must be able to write.
		if req.read && cfg.Routing.Reads == "replicas" && s.txnMode && s.pinned == "" {
			role = router.RoleReplica
		}
	}
	if role == router.RoleReplica {
		if p := s.pickReplicaExcept(shard, skip); p != nil {
			return p, false, nil
		}
		if cfg.Routing.Fallback == "error" && req.hint != router.RolePrimary {
			return nil, false, &clientError{code: codeConnectionFailure, msg: fmt.Sprintf(
				"no replica of shard %s can take reads now (routing.fallback: error)", shard)}
		}
	}
	addr, err := s.writer(shard)
	if err != nil {
		return nil, false, err
	}
	if t := s.target; t != nil && t.pool.Addr() == addr {
		return t.pool, true, nil // the session's user's pool for addr
	}
	return s.srv.pool(addr, s.user), true, nil
}

// writer returns the address writes to shard go to, waiting up to
// pool.acquire_timeout while a failover is under way.
func (s *session) writer(shard string) (string, error) {
	ch := s.srv.health()
	if ch == nil {
		sh, ok := s.srv.config().Shard(shard)
		if !ok {
			return "", &clientError{code: codeInternalError, msg: fmt.Sprintf("unknown shard %q", shard)}
		}
		return sh.Primary, nil
	}
	if w := ch.Topology().Writer(shard); w != nil {
		return w.Addr, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.config().Pool.AcquireTimeout)
	defer cancel()
	w, err := ch.WaitWriter(ctx, shard)
	if err != nil {
		return "", &clientError{code: codeConnectionFailure, msg: fmt.Sprintf(
			"no writable primary within pool.acquire_timeout (%s): %v", s.srv.config().Pool.AcquireTimeout, err)}
	}
	return w.Addr, nil
}

// pickReplicaExcept returns the pool of a replica that may take this
// client's reads now, leaving out the node at skip, or nil.
func (s *session) pickReplicaExcept(shard, skip string) *pool.Pool {
	ch := s.srv.health()
	if ch == nil {
		return nil // without health checks no replica is known to be fit
	}
	topo := ch.Topology()
	readers := topo.Readers(shard)
	if len(readers) == 0 {
		return nil
	}
	minLSN, ok := s.readYourWrites(topo, shard)
	if !ok {
		return nil
	}
	var best *pool.Pool
	var bestLoad float64
	var eligible []*health.Node
	for _, n := range readers {
		if (minLSN != 0 && n.ReplayLSN < minLSN) || n.Addr == skip {
			continue
		}
		eligible = append(eligible, n)
	}
	switch len(eligible) {
	case 0:
		return nil
	case 1:
		return s.srv.pool(eligible[0].Addr, s.user)
	}
	switch s.srv.config().Routing.Balance {
	case "round_robin":
		i := s.srv.roundRobin.Add(1)
		return s.srv.pool(eligible[int(i%uint64(len(eligible)))].Addr, s.user)
	case "random":
		return s.srv.pool(eligible[rand.IntN(len(eligible))].Addr, s.user)
	}
	// Least outstanding work per weight; ties (an idle shard's usual case)
	// rotate, so sequential reads spread too.
	start := int(s.srv.roundRobin.Add(1) % uint64(len(eligible)))
	for i := range eligible {
		n := eligible[(start+i)%len(eligible)]
		p := s.srv.pool(n.Addr, s.user)
		w := float64(n.Weight)
		if w <= 0 {
			w = 1
		}
		load := float64(p.InUse()+1) / w
		if best == nil || load < bestLoad {
			best, bestLoad = p, load
		}
	}
	return best
}

// readYourWrites returns the replay position a replica needs for this
// client's reads on shard (0: any), or false when only the primary will do:
// the client committed there and no primary position sampled after that
// commit is known yet (at most one health interval).
func (s *session) readYourWrites(topo *health.Topology, shard string) (health.LSN, bool) {
	if !s.srv.config().Routing.ReadYourWrites {
		return 0, true
	}
	for i := range s.ryw {
		m := &s.ryw[i]
		if m.shard != shard {
			continue
		}
		if m.lsn == 0 {
			lsn, ok := topo.WriterLSNAfter(shard, m.after)
			if !ok {
				return 0, false
			}
			m.lsn = lsn
		}
		return m.lsn, true
	}
	return 0, true
}

// markWrite records a commit on shard's primary for read-your-writes.
func (s *session) markWrite(shard string) {
	if !s.srv.config().Routing.ReadYourWrites {
		return
	}
	now := monoTime() // compared with health samples' monotonic readings
	for i := range s.ryw {
		if s.ryw[i].shard == shard {
			s.ryw[i] = rywMark{shard: shard, after: now}
			return
		}
	}
	s.ryw = append(s.ryw, rywMark{shard: shard, after: now})
}

// queryInfo is what the lexer says of a simple Query for routing.
type queryInfo struct {
	effects *queryEffects
	single  bool // exactly one statement
	stmt    router.Statement
	hints   router.Hints
}

// plain reports a single SELECT, INSERT, UPDATE, DELETE or MERGE with no
// session effect and no hint: a statement whose analysis holds no part of
// its text.
func (q *queryInfo) plain() bool {
	if !q.single || q.effects != nil || q.hints.Any() {
		return false
	}
	switch q.stmt.Command {
	case router.CmdSelect, router.CmdInsert, router.CmdUpdate, router.CmdDelete, router.CmdMerge:
		return true
	}
	return false
}

// shardwireSetting handles SET/RESET shardwire.role, the session-level
// routing override; it reports whether the statement was one.
func (s *session) shardwireSetting(st *router.Statement) (bool, error) {
	if st.Command != router.CmdSet && st.Command != router.CmdReset {
		return false, nil
	}
	name := st.Set.Name
	if !strings.HasPrefix(name, "shardwire.") {
		return false, nil
	}
	value := strings.Trim(st.Set.Value, "'\"")
	switch name {
	case "shardwire.shard":
		if st.Set.Reset {
			s.shardSetting = ""
			return true, nil
		}
		if !s.srv.ShardMap().HasShard(value) {
			return true, &clientError{code: "22023", msg: fmt.Sprintf("invalid value for shardwire.shard: no shard %q", value)}
		}
		s.shardSetting = value
		return true, nil
	case "shardwire.key":
		s.keySetting, s.hasKey = value, !st.Set.Reset
		return true, nil
	case "shardwire.role":
		if st.Set.Reset {
			s.roleSetting = router.RoleAuto
			return true, nil
		}
		v := strings.Trim(st.Set.Value, "'\"")
		role, ok := router.ParseRole(v)
		if !ok {
			return true, &clientError{code: "22023", msg: fmt.Sprintf("invalid value for shardwire.role: %q (primary, replica or auto)", v)}
		}
		s.roleSetting = role
		return true, nil
	default:
		return true, &clientError{code: "42704", msg: fmt.Sprintf("unrecognized shardwire setting %q", name)}
	}
}

// waitNewWriter waits, after a failed attempt on the writer at failed, for
// a reason to try again: the topology names another writer, or the next
// snapshot still has one (a blip shorter than failures_before_down). It
// gives up at deadline.
func (s *session) waitNewWriter(shard, failed string, deadline time.Time) bool {
	ch := s.srv.health()
	if ch == nil {
		return false
	}
	t := ch.Topology()
	if w := t.Writer(shard); w != nil && w.Addr != failed {
		return true
	}
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return false
		}
		timer := time.NewTimer(wait)
		select {
		case <-t.Changed():
			timer.Stop()
		case <-timer.C:
			return false
		}
		t = ch.Topology()
		if t.Writer(shard) != nil {
			return true
		}
	}
}

// isConnectionError reports whether err broke the connection itself (as
// opposed to a deadline the proxy set to stop a relay).
func isConnectionError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

// routeShard returns the shard a statement must run on ("" when any will
// do), or an error the client gets: the statement's key has no shard, it
// spans several shards, or it cannot be routed.
func (s *session) routeShard(an *router.Analysis, sql string, lits []router.Literal, params router.Params, hints router.Hints) (string, error) {
	shard, multi, err := s.route(an, sql, lits, params, hints)
	if err != nil {
		return "", err
	}
	if multi != nil {
		return "", multiRefusal(*multi, "cross-shard statements are not supported here")
	}
	return shard, nil
}

// fixedShard returns the shard a statement goes to, and true, when nothing
// in its text or parameters can change where it runs: the shard map has one shard
// and no tables, no hint comment or SET shardwire.* steers routing, and no
// read would go to a replica (routing.reads: primary, or a shard without
// replicas whose reads fall back to the primary). Routing, and for a
// simple Query the SQL analysis, would only confirm it and are skipped;
// such a Query is treated as a write, which goes to the same primary.
func (s *session) fixedShard(hints router.Hints) (string, bool) {
	if hints.Any() || s.roleSetting != router.RoleAuto || s.shardSetting != "" || s.hasKey {
		return "", false
	}
	shard, ok := s.shardMap().Only()
	if !ok {
		return "", false
	}
	cfg := s.srv.config()
	if cfg.Routing.Reads == "primary" {
		return shard, true
	}
	if cfg.Routing.Fallback == "error" {
		return "", false
	}
	sh, ok := cfg.Shard(shard)
	return shard, ok && len(sh.Replicas) == 0
}

// route decides where a statement runs: one shard ("" when any will do),
// or, for a statement that must run on several, their route (multi).
func (s *session) route(an *router.Analysis, sql string, lits []router.Literal, params router.Params, hints router.Hints) (shard string, multi *router.Route, err error) {
	if shard, ok := s.fixedShard(hints); ok {
		return shard, nil, nil
	}
	return s.routeAnalyzed(an, sql, lits, params, hints)
}

// routeAnalyzed is route for a caller that has already found fixedShard
// false.
func (s *session) routeAnalyzed(an *router.Analysis, sql string, lits []router.Literal, params router.Params, hints router.Hints) (shard string, multi *router.Route, err error) {
	m := s.shardMap()
	r, err := s.srv.analyzer.Route(an, sql, lits, params, m, s.routeOptionsWith(hints))
	if err != nil {
		var re *router.RouteError
		if errors.As(err, &re) {
			return "", nil, &clientError{code: re.Code, msg: re.Msg}
		}
		return "", nil, &clientError{code: codeInternalError, msg: err.Error()}
	}
	if r.NoTables {
		return "", nil, nil
	}
	if one, ok := r.Single(); ok {
		return one, nil, nil
	}
	if r.AnyShard {
		s.mu.Lock()
		current := ""
		if s.server != nil {
			current = s.attachShard
		}
		s.mu.Unlock()
		for _, sh := range r.Shards {
			if sh == current {
				return sh, nil, nil
			}
		}
		for _, sh := range r.Shards {
			if sh == m.DefaultShard() {
				return sh, nil, nil
			}
		}
		return r.Shards[0], nil, nil
	}
	// A copy: taking r's own address would move r to the heap on every
	// call, not only on this rare path.
	multiRoute := r
	return "", &multiRoute, nil
}

// timeZone is the session's TimeZone (UTC for a zone Go's database does
// not know).
func (s *session) timeZone() *time.Location {
	if l := s.loc.Load(); l != nil {
		return l
	}
	return loadLocation(s.seenBase["TimeZone"])
}

var locations sync.Map // TimeZone name → *time.Location

// loadLocation resolves a Postgres TimeZone name, cached; unknown names
// (POSIX-style zones Go cannot read) give UTC.
func loadLocation(name string) *time.Location {
	if name == "" || name == "UTC" || name == "Etc/UTC" {
		return time.UTC
	}
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		l = time.UTC
	}
	locations.Store(name, l)
	return l
}

// routeOptionsWith are the routing options of this session for a
// statement with the given hints.
func (s *session) routeOptionsWith(hints router.Hints) router.RouteOptions {
	return router.RouteOptions{Hints: hints, Shard: s.shardSetting, Key: s.keySetting, HasKey: s.hasKey, Loc: s.timeZone()}
}

// shardMap is the map a statement routes by: the current one, or inside a
// transaction block the one its first statement routed by, so that a
// reload does not move a running transaction's later statements.
func (s *session) shardMap() *shardmap.Map {
	s.mu.Lock()
	inTx := len(s.deferred) > 0 || s.txStatus == 'T' || s.txStatus == 'E'
	s.mu.Unlock()
	if !inTx {
		s.txMap = nil
		return s.srv.ShardMap()
	}
	if s.txMap == nil {
		s.txMap = s.srv.ShardMap()
	}
	return s.txMap
}
