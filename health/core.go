package health

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/shardwire/shardwire/config"
)

// This file is the checker's brain: a state machine fed with check results,
// session reports and action results, deciding node states, the writer of
// each shard, fencing and failover actions. It does no I/O and reads no
// clock (every input carries its time), so tests drive it with scripted
// histories. One goroutine owns it (Checker.run).

// settings are the parts of the configuration the checker uses.
type settings struct {
	interval           time.Duration
	timeout            time.Duration
	failuresBeforeDown int
	successesBeforeUp  int
	mode               Mode
	grace              time.Duration
	maxLag             time.Duration // 0: no limit
	maxLagBytes        int64         // 0: no limit
}

func settingsFrom(cfg *config.Config) settings {
	s := settings{
		interval:           cfg.Health.Interval,
		timeout:            cfg.Health.Timeout,
		failuresBeforeDown: max(1, cfg.Health.FailuresBeforeDown),
		successesBeforeUp:  max(1, cfg.Health.SuccessesBeforeUp),
		mode:               Mode(cfg.Failover.Mode),
		grace:              cfg.Failover.Grace,
		maxLag:             cfg.Routing.MaxReplicaLag,
		maxLagBytes:        cfg.Routing.MaxReplicaLagBytes,
	}
	if s.mode == "" {
		s.mode = ModeFollow
	}
	return s
}

// maxRetryBackoff caps the wait between failed promotions or re-points.
const maxRetryBackoff = 30 * time.Second

// observation is the outcome of one check of one node.
type observation struct {
	Addr   string
	At     time.Time
	Err    error
	Dialed bool // the check opened a new connection: dialling works

	// Sent is when the check's query was sent: every commit acknowledged
	// before it is at or below InsertLSN.
	Sent time.Time

	InRecovery bool
	Timeline   uint32
	CurrentLSN LSN // primary
	InsertLSN  LSN // primary
	ReceiveLSN LSN // replica; equal to ReplayLSN when unknown
	ReplayLSN  LSN // replica
	// ReplayAge is now() - pg_last_xact_replay_timestamp() on a replica
	// whose received WAL awaits replay, else 0.
	ReplayAge time.Duration
}

type actionKind uint8

const (
	actPromote actionKind = iota + 1
	actRepoint
)

// action is I/O the checker must do for a decision.
type action struct {
	kind  actionKind
	shard string
	node  string // promote: the replica to promote; repoint: the replica to re-point
	// promote: the failed primary; repoint: the primary to stream from.
	primary string
	// promote: the shard's other nodes, asked again just before promoting.
	others []string
	// promote: the failed primary's timeline; a node reporting primary on
	// this timeline or a newer one aborts the promotion.
	timeline uint32
}

type promoteResult struct {
	shard, node string
	timeline    uint32
	lsn         LSN
	at          time.Time
	err         error
}

type repointResult struct {
	shard, node string
	at          time.Time
	err         error
}

type retry struct {
	inflight bool
	next     time.Time
	backoff  time.Duration
}

func (r *retry) failed(at time.Time, base time.Duration) time.Duration {
	r.inflight = false
	r.backoff = min(max(2*r.backoff, base), maxRetryBackoff)
	r.next = at.Add(r.backoff)
	return r.backoff
}

type nodeState struct {
	addr       string
	shard      *shardState
	configured Role
	weight     int

	health      State // StateUnknown, StateUp or StateDown
	fails       int   // consecutive failures: checks and session reports
	succs       int   // consecutive successful checks
	checkFails  int   // consecutive failed checks (reports excluded)
	firstFailAt time.Time
	downAt      time.Time // when checkFails reached failures_before_down
	since       time.Time
	lastErr     error
	lastErrAt   time.Time
	lastCheck   time.Time
	lastOK      time.Time
	reported    bool // a session report was counted since the last check

	// From the last successful check.
	role      Role
	timeline  uint32
	current   LSN
	insert    LSN
	insertAt  time.Time
	receive   LSN
	replay    LSN
	replayAge time.Duration

	// Derived by decide.
	lag      time.Duration
	lagBytes uint64
	readable bool

	fenced      bool
	fencedAt    time.Time
	fenceReason string

	roleChanges, stateChanges uint64
}

// position is how much WAL the node has: what it received (flushed to its
// disk) or replayed, whichever is further.
func (n *nodeState) position() LSN { return max(n.receive, n.replay) }

type shardState struct {
	name       string
	nodes      []*nodeState // configured primary first
	configured *nodeState
	// leader is the node the shard's writes belong to: the configured
	// primary until a failover moves them. Only a node reporting primary on
	// a newer timeline, or a promotion, changes it.
	leader   *nodeState
	leaderTL uint32 // highest timeline the leader reported
	maxTL    uint32 // highest timeline any node reported

	writer        *nodeState
	writerReason  string
	noWriterSince time.Time
	noWriterTotal time.Duration
	failovers     uint64
	promotions    uint64

	samples samples // the leader's WAL positions, for replica lag

	promoting bool
	promote   retry
	repoint   map[*nodeState]*retry // replicas to point at a promoted primary
	lastNote  string
}

type core struct {
	set    settings
	log    *slog.Logger
	shards []*shardState
	nodes  map[string]*nodeState
	dirty  bool // something changed since the last snapshot
}

func newCore(cfg *config.Config, log *slog.Logger, now time.Time) *core {
	c := &core{set: settingsFrom(cfg), log: log, nodes: map[string]*nodeState{}, dirty: true}
	for _, sh := range cfg.Shards {
		s := &shardState{name: sh.Name, noWriterSince: now}
		for i, addr := range append([]string{sh.Primary}, sh.Replicas...) {
			n := &nodeState{addr: addr, shard: s, configured: RoleReplica, weight: sh.Weights[addr], since: now}
			if i == 0 {
				n.configured = RolePrimary
				s.configured, s.leader = n, n
			}
			s.nodes = append(s.nodes, n)
			c.nodes[addr] = n
		}
		c.shards = append(c.shards, s)
	}
	return c
}

// observe takes the outcome of one check.
func (c *core) observe(o observation) {
	n := c.nodes[o.Addr]
	if n == nil {
		return
	}
	c.dirty = true
	n.lastCheck = o.At
	n.reported = false
	s := n.shard
	if o.Err != nil {
		n.lastErr, n.lastErrAt = o.Err, o.At
		n.succs = 0
		n.fails++
		n.checkFails++
		if n.checkFails == 1 {
			n.firstFailAt = o.At
		}
		if n.checkFails == c.set.failuresBeforeDown {
			n.downAt = o.At
		}
		c.failed(n, o.At, o.Err, "check failed")
		return
	}
	n.fails, n.checkFails = 0, 0
	n.succs++
	n.lastOK = o.At
	role := RolePrimary
	if o.InRecovery {
		role = RoleReplica
	}
	if role != n.role {
		if n.role != RoleUnknown {
			n.roleChanges++
			c.log.Warn("health: node changed role", "shard", s.name, "node", n.addr, "from", n.role, "to", role, "timeline", o.Timeline)
		}
		n.role = role
	}
	n.timeline = o.Timeline
	n.current, n.receive, n.replay, n.replayAge = o.CurrentLSN, o.ReceiveLSN, o.ReplayLSN, o.ReplayAge
	n.insert, n.insertAt = o.InsertLSN, o.Sent
	s.maxTL = max(s.maxTL, o.Timeline)
	if n.health != StateUp && (n.health == StateUnknown || n.succs >= c.set.successesBeforeUp) {
		c.setHealth(n, StateUp, o.At, fmt.Sprintf("%d successful checks", n.succs))
	}
	if n == s.leader && role == RolePrimary && !n.fenced {
		s.samples.add(o.At, o.CurrentLSN)
	}
}

// report takes a connection error a session or a pool met on a node.
// Reports between two checks count as one failure; an error saying the node
// is certainly not serving (connection refused, shutting down) marks it down
// at once. Reports never start a failover: that takes failed checks.
func (c *core) report(addr string, err error, at time.Time) {
	n := c.nodes[addr]
	cl := classify(err)
	if n == nil || cl == classIgnore || cl == classBusy || !at.After(n.lastOK) {
		// A report older than the last good check says nothing new.
		return
	}
	c.dirty = true
	n.lastErr, n.lastErrAt = err, at
	n.succs = 0
	if !n.reported {
		n.reported = true
		n.fails++
	}
	c.failed(n, at, err, "reported by a session")
}

func (c *core) failed(n *nodeState, at time.Time, err error, how string) {
	switch {
	case n.health == StateUnknown:
		c.setHealth(n, StateDown, at, how+": "+err.Error())
	case n.health == StateUp && classify(err) == classGone:
		c.setHealth(n, StateDown, at, how+", node not serving: "+err.Error())
	case n.health == StateUp && n.fails >= c.set.failuresBeforeDown:
		c.setHealth(n, StateDown, at, fmt.Sprintf("%s %d times in a row: %v", how, n.fails, err))
	}
}

func (c *core) setHealth(n *nodeState, st State, at time.Time, reason string) {
	if n.health == st {
		return
	}
	old := n.health
	n.health, n.since = st, at
	c.dirty = true
	if old == StateUnknown && st == StateUp {
		c.log.Info("health: node up", "shard", n.shard.name, "node", n.addr, "role", n.role, "timeline", n.timeline)
		return
	}
	n.stateChanges++
	if st == StateDown {
		c.log.Warn("health: node down", "shard", n.shard.name, "node", n.addr, "reason", reason)
	} else {
		c.log.Info("health: node up", "shard", n.shard.name, "node", n.addr, "role", n.role, "timeline", n.timeline, "reason", reason)
	}
}

func (c *core) fence(n *nodeState, at time.Time, reason string) {
	if n.fenced {
		return
	}
	n.fenced, n.fencedAt, n.fenceReason = true, at, reason
	n.stateChanges++
	c.dirty = true
	c.log.Warn("health: node fenced: no reads, no writes until it is re-attached as a replica of the current primary",
		"shard", n.shard.name, "node", n.addr, "reason", reason)
}

func (c *core) unfence(n *nodeState, at time.Time, reason string) {
	if !n.fenced {
		return
	}
	n.fenced, n.fenceReason = false, ""
	n.stateChanges++
	n.since = at
	c.dirty = true
	c.log.Info("health: node unfenced", "shard", n.shard.name, "node", n.addr, "reason", reason)
}

// adminUnfence is the operator's Unfence. A node still reporting primary
// on an old timeline is fenced again by the next decide.
func (c *core) adminUnfence(addr string, at time.Time) error {
	n := c.nodes[addr]
	if n == nil {
		return fmt.Errorf("health: unfence %s: not a configured node", addr)
	}
	if !n.fenced {
		return fmt.Errorf("health: unfence %s: node is not fenced", addr)
	}
	c.unfence(n, at, "operator")
	return nil
}

// decide re-evaluates every shard at time now and returns the actions to run.
func (c *core) decide(now time.Time) []action {
	var acts []action
	for _, s := range c.shards {
		if c.set.mode != ModeOff {
			c.fencePass(s, now)
		}
		c.chooseWriter(s, now)
		c.measureLag(s)
		if c.set.mode == ModePromote {
			if a, ok := c.maybePromote(s, now); ok {
				acts = append(acts, a)
			}
		}
		acts = append(acts, c.repoints(s, now)...)
	}
	return acts
}

// fencePass fences primaries left behind by a newer timeline and unfences
// nodes re-attached as replicas on the current timeline.
func (c *core) fencePass(s *shardState, now time.Time) {
	for _, n := range s.nodes {
		if n.lastOK.IsZero() {
			continue
		}
		switch {
		case !n.fenced && n.role == RolePrimary && n.timeline < s.maxTL:
			c.fence(n, now, fmt.Sprintf("reports primary on timeline %d, behind the shard's timeline %d", n.timeline, s.maxTL))
		case n.fenced && n.role == RoleReplica && n.lastOK.After(n.fencedAt) && s.leaderTL > 0 && n.timeline >= s.leaderTL && n != s.leader:
			c.unfence(n, now, fmt.Sprintf("re-attached: a replica on timeline %d", n.timeline))
		}
	}
}

// chooseWriter sets the shard's writer: the one reachable, unfenced node
// reporting primary on the highest timeline, if it is the leader or newer
// than the leader; else none.
func (c *core) chooseWriter(s *shardState, now time.Time) {
	var top []*nodeState
	var topTL uint32
	for _, n := range s.nodes {
		if n.health != StateUp || n.fenced || n.role != RolePrimary {
			continue
		}
		switch {
		case len(top) == 0 || n.timeline > topTL:
			top, topTL = []*nodeState{n}, n.timeline
		case n.timeline == topTL:
			top = append(top, n)
		}
	}
	var w *nodeState
	var reason string
	switch {
	case len(top) == 0:
		reason = c.noPrimaryReason(s)
	case len(top) > 1:
		addrs := make([]string, len(top))
		for i, n := range top {
			addrs[i] = n.addr
		}
		reason = fmt.Sprintf("undecidable: %s all report primary on timeline %d; refusing writes rather than risking split brain",
			strings.Join(addrs, ", "), topTL)
	default:
		x := top[0]
		switch {
		case c.set.mode == ModeOff:
			if x == s.configured {
				w = x
			} else {
				reason = fmt.Sprintf("failover.mode off: %s reports primary on timeline %d, the configured primary %s does not",
					x.addr, x.timeline, s.configured.addr)
			}
		case x == s.leader:
			w = x
		case s.leader.health == StateUnknown:
			// Until the leader's first check, another node's claim cannot be
			// weighed against it.
			reason = fmt.Sprintf("%s reports primary, waiting for the first check of the primary %s", x.addr, s.leader.addr)
		case x.timeline > s.leaderTL:
			c.follow(s, x, now, fmt.Sprintf("%s reports primary on timeline %d, newer than %s's timeline %d",
				x.addr, x.timeline, s.leader.addr, s.leaderTL))
			w = x
		default:
			reason = fmt.Sprintf("%s reports primary on timeline %d, which is not newer than the primary %s's timeline %d",
				x.addr, x.timeline, s.leader.addr, s.leaderTL)
		}
	}
	if w != nil && w == s.leader {
		s.leaderTL = max(s.leaderTL, w.timeline)
	}
	if s.promoting && w == nil {
		reason = "promoting a replica; " + reason
	}
	c.setWriter(s, w, reason, now)
}

func (c *core) noPrimaryReason(s *shardState) string {
	l := s.leader
	switch {
	case l.fenced:
		return fmt.Sprintf("primary %s is fenced (%s)", l.addr, l.fenceReason)
	case l.health == StateUnknown:
		return fmt.Sprintf("primary %s not checked yet", l.addr)
	case l.health == StateDown:
		return fmt.Sprintf("primary %s is down: %v", l.addr, l.lastErr)
	case l.role == RoleReplica:
		return fmt.Sprintf("primary %s is in recovery and no other node reports primary", l.addr)
	}
	return "no node reports primary"
}

func (c *core) setWriter(s *shardState, w *nodeState, reason string, now time.Time) {
	if w != s.writer {
		if s.writer == nil && !s.noWriterSince.IsZero() {
			s.noWriterTotal += now.Sub(s.noWriterSince)
			s.noWriterSince = time.Time{}
		}
		if w == nil {
			s.noWriterSince = now
			c.log.Warn("health: no writable primary", "shard", s.name, "reason", reason)
		} else {
			c.log.Info("health: writable primary", "shard", s.name, "node", w.addr, "timeline", w.timeline)
		}
		s.writer = w
		c.dirty = true
	} else if w == nil && reason != s.writerReason {
		c.log.Info("health: still no writable primary", "shard", s.name, "reason", reason)
	}
	if reason != s.writerReason {
		s.writerReason = reason
		c.dirty = true
	}
}

// follow moves the shard's writes to x and fences the node they leave.
func (c *core) follow(s *shardState, x *nodeState, now time.Time, reason string) {
	old := s.leader
	s.leader, s.leaderTL = x, x.timeline
	s.failovers++
	s.samples.reset()
	s.repoint = nil
	c.dirty = true
	c.log.Warn("health: writes move to a new primary", "shard", s.name, "from", old.addr, "to", x.addr, "timeline", x.timeline, "reason", reason)
	if old != x {
		c.fence(old, now, fmt.Sprintf("former primary, replaced by %s on timeline %d", x.addr, x.timeline))
	}
}

// measureLag derives every replica's lag and whether it may take reads.
func (c *core) measureLag(s *shardState) {
	l := s.leader
	leaderUp := l.health == StateUp && l.role == RolePrimary && !l.fenced
	for _, n := range s.nodes {
		n.lag, n.lagBytes = 0, 0
		if n.role == RoleReplica && !n.lastOK.IsZero() {
			ok := false
			if leaderUp {
				n.lag, n.lagBytes, ok = s.samples.lag(n.lastOK, n.replay)
			}
			if !ok {
				// No primary to compare with: nothing new arrives, so a
				// replica that replayed what it received is as fresh as it
				// can be.
				n.lag = n.replayAge
				if n.receive > n.replay {
					n.lagBytes = uint64(n.receive - n.replay)
				}
			}
		}
		lagOK := (c.set.maxLag <= 0 || n.lag <= c.set.maxLag) &&
			(c.set.maxLagBytes <= 0 || n.lagBytes <= uint64(c.set.maxLagBytes))
		readable := n.health == StateUp && !n.fenced && n.role == RoleReplica && lagOK
		if readable != n.readable {
			c.dirty = true
			n.readable = readable
			switch {
			case readable:
				c.log.Info("health: replica takes reads", "shard", s.name, "node", n.addr, "lag", n.lag, "lag_bytes", n.lagBytes)
			case !lagOK && n.health == StateUp && !n.fenced && n.role == RoleReplica:
				c.log.Warn("health: replica lagging, no reads", "shard", s.name, "node", n.addr,
					"lag", n.lag, "max_lag", c.set.maxLag, "lag_bytes", n.lagBytes, "max_lag_bytes", c.set.maxLagBytes)
			}
		}
	}
}

// maybePromote decides whether to promote a replica of s now, and which.
func (c *core) maybePromote(s *shardState, now time.Time) (action, bool) {
	l := s.leader
	if s.writer != nil || s.promoting || l.health != StateDown || l.checkFails < c.set.failuresBeforeDown ||
		now.Before(l.downAt.Add(c.set.grace)) || now.Before(s.promote.next) {
		return action{}, false
	}
	// The one-promoter guard, as far as the checks tell: if another node
	// already claims primary, whoever promoted it wins; never add a second.
	for _, n := range s.nodes {
		if n != l && n.health == StateUp && !n.fenced && n.role == RolePrimary {
			c.note(s, "not promoting: another node already reports primary", "node", n.addr, "timeline", n.timeline)
			return action{}, false
		}
	}
	var best *nodeState
	var cands []string
	for _, n := range s.nodes {
		// Only replicas checked after the primary began failing: their
		// positions include everything they will ever get from it.
		if n == l || n.health != StateUp || n.fenced || n.role != RoleReplica || !n.lastOK.After(l.firstFailAt) {
			continue
		}
		cands = append(cands, fmt.Sprintf("%s@%s", n.addr, n.position()))
		if best == nil || n.position() > best.position() || (n.position() == best.position() && n.replay > best.replay) {
			best = n
		}
	}
	if best == nil {
		c.note(s, "not promoting: no healthy replica checked since the primary failed", "primary", l.addr)
		return action{}, false
	}
	s.promoting = true
	s.lastNote = ""
	s.writerReason = fmt.Sprintf("promoting %s; %s", best.addr, s.writerReason)
	c.dirty = true
	var others []string
	for _, n := range s.nodes {
		if n != best {
			others = append(others, n.addr)
		}
	}
	c.log.Warn("health: promoting the most advanced replica", "shard", s.name, "node", best.addr, "position", best.position(),
		"candidates", strings.Join(cands, " "),
		"reason", fmt.Sprintf("primary %s down since %s (%d failed checks, grace %v): %v",
			l.addr, l.firstFailAt.Format(time.RFC3339Nano), l.checkFails, c.set.grace, l.lastErr))
	return action{kind: actPromote, shard: s.name, node: best.addr, primary: l.addr, others: others, timeline: s.leaderTL}, true
}

// note logs a reason for doing nothing once, not at every decide.
func (c *core) note(s *shardState, msg string, args ...any) {
	key := msg + fmt.Sprint(args...)
	if key == s.lastNote {
		return
	}
	s.lastNote = key
	c.log.Warn("health: "+msg, append([]any{"shard", s.name}, args...)...)
}

// promoted takes the outcome of a promotion.
func (c *core) promoted(r promoteResult) {
	n := c.nodes[r.node]
	if n == nil {
		return
	}
	s := n.shard
	s.promoting = false
	c.dirty = true
	if r.err != nil {
		if s.leader != n || n.role != RolePrimary || n.health != StateUp {
			wait := s.promote.failed(r.at, c.set.interval)
			c.log.Error("health: promotion failed", "shard", s.name, "node", n.addr, "err", r.err, "retry_in", wait)
			return
		}
		// The checks already see it as the primary (writes moved there):
		// the promotion took effect whatever its last step said, and the
		// other replicas still need re-pointing.
		c.log.Warn("health: promotion reported an error, but the node reports primary: carrying on",
			"shard", s.name, "node", n.addr, "err", r.err)
		r.timeline, r.lsn = n.timeline, n.current
	}
	s.promote = retry{}
	s.promotions++
	// What the promotion saw is as good as a check.
	if n.role != RolePrimary {
		n.roleChanges++
		n.role = RolePrimary
	}
	n.timeline, n.current, n.lastOK = r.timeline, r.lsn, r.at
	s.maxTL = max(s.maxTL, r.timeline)
	c.log.Warn("health: promoted", "shard", s.name, "node", n.addr, "timeline", r.timeline, "lsn", r.lsn)
	if s.leader != n {
		c.follow(s, n, r.at, "promoted by shardwire")
	}
	s.leaderTL = max(s.leaderTL, r.timeline)
	s.repoint = map[*nodeState]*retry{}
	for _, m := range s.nodes {
		if m != n && !m.fenced {
			s.repoint[m] = &retry{}
		}
	}
}

// repoints returns the re-point actions due for s.
func (c *core) repoints(s *shardState, now time.Time) []action {
	var acts []action
	for _, m := range s.nodes {
		r := s.repoint[m]
		if r == nil {
			continue
		}
		if m.fenced || m == s.leader {
			delete(s.repoint, m)
			continue
		}
		if r.inflight || now.Before(r.next) || m.health != StateUp {
			continue
		}
		if m.role != RoleReplica {
			delete(s.repoint, m)
			c.log.Warn("health: not re-pointing a node that is no replica", "shard", s.name, "node", m.addr)
			continue
		}
		r.inflight = true
		acts = append(acts, action{kind: actRepoint, shard: s.name, node: m.addr, primary: s.leader.addr})
	}
	return acts
}

// repointed takes the outcome of a re-point.
func (c *core) repointed(r repointResult) {
	n := c.nodes[r.node]
	if n == nil {
		return
	}
	s := n.shard
	rt := s.repoint[n]
	if rt == nil {
		return
	}
	c.dirty = true
	if r.err != nil {
		wait := rt.failed(r.at, c.set.interval)
		c.log.Error("health: re-pointing replica failed", "shard", s.name, "node", n.addr, "err", r.err, "retry_in", wait)
		return
	}
	delete(s.repoint, n)
	c.log.Info("health: replica re-pointed to the new primary", "shard", s.name, "node", n.addr, "primary", s.leader.addr)
}

// snapshot builds the immutable Topology of the current state.
func (c *core) snapshot(now time.Time, version uint64) *Topology {
	t := &Topology{
		Version: version, Built: now, Mode: c.set.mode,
		shards: make(map[string]*Shard, len(c.shards)), nodes: make(map[string]*Node, len(c.nodes)),
		changed: make(chan struct{}),
	}
	for _, s := range c.shards {
		ss := &Shard{
			Name: s.name, WriterReason: s.writerReason, Timeline: s.maxTL, Promoting: s.promoting,
			NoWriterSince: s.noWriterSince, NoWriterTotal: s.noWriterTotal,
			Failovers: s.failovers, Promotions: s.promotions,
			Nodes: make([]*Node, 0, len(s.nodes)),
		}
		for _, n := range s.nodes {
			nn := &Node{
				Addr: n.addr, Shard: s.name, ConfiguredRole: n.configured, Role: n.role,
				State: n.health, Reachable: n.health == StateUp, Readable: n.readable, Weight: n.weight,
				Timeline: n.timeline, CurrentLSN: n.current, InsertLSN: n.insert, InsertLSNAt: n.insertAt,
				ReceiveLSN: n.receive, ReplayLSN: n.replay,
				Lag: n.lag, LagBytes: n.lagBytes,
				LastErrorAt: n.lastErrAt, LastCheck: n.lastCheck, LastSuccess: n.lastOK, Since: n.since,
				FenceReason: n.fenceReason, RoleChanges: n.roleChanges, StateChanges: n.stateChanges,
			}
			if n.lastErr != nil {
				nn.LastError = n.lastErr.Error()
			}
			if n.fenced {
				nn.State = StateFenced
			}
			if n.role == RoleReplica {
				nn.CurrentLSN, nn.InsertLSN, nn.InsertLSNAt = 0, 0, time.Time{}
			} else {
				nn.ReceiveLSN, nn.ReplayLSN = 0, 0
			}
			ss.Nodes = append(ss.Nodes, nn)
			if n == s.writer {
				ss.Writer = nn
			}
			if n.readable {
				ss.Readers = append(ss.Readers, nn)
			}
			t.nodes[n.addr] = nn
		}
		t.Shards = append(t.Shards, ss)
		t.shards[s.name] = ss
	}
	c.dirty = false
	return t
}
