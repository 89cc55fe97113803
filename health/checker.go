package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardwire/shardwire/config"
)

// Options configure a Checker beyond the configuration file.
type Options struct {
	// Logger receives every decision with its reason; nil means slog.Default().
	Logger *slog.Logger
	// User overrides the login the checker uses (a name from users); empty
	// means the first admin user, else the first user.
	User string
}

// Checker watches every node of every shard and publishes the Topology.
// Its methods never block on a check: the proxy reads snapshots and drops
// reports into slots the checker empties.
type Checker struct {
	set       settings
	log       *slog.Logger
	user      string
	password  string
	database  string
	serverTLS *config.ServerTLS

	handles map[string]*handle // fixed at New
	order   []*handle

	core    *core  // owned by run
	version uint64 // owned by run
	topo    atomic.Pointer[Topology]

	events chan event
	wake   chan struct{}

	mu      sync.Mutex
	cancel  context.CancelFunc
	running bool
	wg      sync.WaitGroup
}

// handle is what the proxy's side touches of one node: lock-free or
// briefly locked, never waiting for the checker.
type handle struct {
	addr, shard string
	breaker     *breaker
	report      atomic.Pointer[reported]
	checkNow    chan struct{}

	checks, checkFailures, reports atomic.Uint64
}

type reported struct {
	err error
	at  time.Time
}

type event struct {
	obs       *observation
	promoted  *promoteResult
	repointed *repointResult
	unfence   *unfenceRequest
}

type unfenceRequest struct {
	addr  string
	reply chan error
}

// New builds a Checker for cfg's shards. It starts nothing: call Start.
// Until the first checks are in, Topology reports every node unknown and
// no shard writable.
func New(cfg *config.Config, opts Options) (*Checker, error) {
	if len(cfg.Shards) == 0 {
		return nil, errors.New("health: no shards configured")
	}
	if cfg.Health.Interval <= 0 || cfg.Health.Timeout <= 0 {
		return nil, errors.New("health: health.interval and health.timeout must be positive")
	}
	switch Mode(cfg.Failover.Mode) {
	case ModeOff, ModeFollow, ModePromote, "":
	default:
		return nil, fmt.Errorf("health: failover.mode %q is not off, follow or promote", cfg.Failover.Mode)
	}
	name := opts.User
	if name == "" {
		for _, u := range cfg.Users {
			if u.Admin {
				name = u.Name
				break
			}
		}
		if name == "" && len(cfg.Users) > 0 {
			name = cfg.Users[0].Name
		}
	}
	u, ok := cfg.User(name)
	if !ok {
		return nil, fmt.Errorf("health: checker user %q is not configured", name)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Checker{
		set: settingsFrom(cfg), log: log,
		user: u.Name, password: u.ServerPassword, database: cfg.Database, serverTLS: cfg.ServerTLS,
		handles: map[string]*handle{},
		events:  make(chan event, 64),
		wake:    make(chan struct{}, 1),
	}
	now := time.Now()
	c.core = newCore(cfg, log, now)
	for _, s := range c.core.shards {
		for _, n := range s.nodes {
			h := &handle{addr: n.addr, shard: s.name, breaker: newBreaker(c.set), checkNow: make(chan struct{}, 1)}
			c.handles[n.addr] = h
			c.order = append(c.order, h)
		}
	}
	c.core.decide(now)
	c.publish(now)
	return c, nil
}

// Start starts one checking goroutine per node and the goroutine that
// decides, and returns once every node has been checked once (or after
// health.timeout plus a second, whichever is first), so the first Topology
// the proxy sees is real. The checker runs until Close; ctx only bounds
// the wait.
func (c *Checker) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.running || c.cancel != nil {
		c.mu.Unlock()
		return errors.New("health: checker already started")
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel, c.running = cancel, true
	c.wg.Add(1 + len(c.order))
	go c.run(runCtx)
	for _, h := range c.order {
		go c.probe(runCtx, h)
	}
	c.mu.Unlock()

	c.log.Info("health: checker started", "nodes", len(c.order), "interval", c.set.interval, "timeout", c.set.timeout,
		"failures_before_down", c.set.failuresBeforeDown, "successes_before_up", c.set.successesBeforeUp,
		"failover", c.set.mode, "user", c.user)
	wait, cancelWait := context.WithTimeout(ctx, c.set.timeout+time.Second)
	defer cancelWait()
	for {
		t := c.Topology()
		all := true
		for _, n := range t.nodes {
			if n.LastCheck.IsZero() {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		select {
		case <-t.Changed():
		case <-wait.Done():
			return ctx.Err() // nil when only the wait ran out: unchecked nodes stay unknown
		}
	}
}

// Close stops every goroutine of the checker and waits for them, including
// a promotion under way (bounded by its own timeouts).
func (c *Checker) Close() {
	c.mu.Lock()
	cancel := c.cancel
	c.running = false
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
}

// Topology returns the current snapshot. It never blocks.
func (c *Checker) Topology() *Topology { return c.topo.Load() }

// Changed returns a channel closed at the next topology change.
func (c *Checker) Changed() <-chan struct{} { return c.topo.Load().Changed() }

// WaitWriter waits until shard has a writable primary or ctx ends (a write
// arriving during a failover waits up to pool.acquire_timeout this way).
// The error wraps ErrNoWriter and says why there is none.
func (c *Checker) WaitWriter(ctx context.Context, shard string) (*Node, error) {
	for {
		t := c.Topology()
		s := t.Shard(shard)
		if s == nil {
			return nil, fmt.Errorf("health: unknown shard %q", shard)
		}
		if s.Writer != nil {
			return s.Writer, nil
		}
		select {
		case <-t.Changed():
		case <-ctx.Done():
			return nil, fmt.Errorf("shard %s: %w: %s", shard, ErrNoWriter, s.WriterReason)
		}
	}
}

// ReportFailure tells the checker that a connection to addr failed while
// serving a client. It never blocks. Reports between two checks count as
// one failure towards failures_before_down; an error that says the node
// does not serve at all (connection refused, shutting down, starting up)
// marks it down at once. Either way the node is checked again right away.
// Reports never trigger a failover by themselves: that takes the checker's
// own failed checks. Errors that say nothing about the node (a bad
// password, a cancelled context, a failing statement) are ignored.
func (c *Checker) ReportFailure(addr string, err error) {
	h := c.handles[addr]
	if h == nil {
		return
	}
	if cl := classify(err); cl == classIgnore || cl == classBusy {
		return
	}
	h.reports.Add(1)
	h.report.Store(&reported{err, time.Now()})
	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case h.checkNow <- struct{}{}:
	default:
	}
}

// AllowDial reports whether a pool may open a connection to addr now; false
// while the node's circuit breaker is open (return ErrCircuitOpen then).
// Unknown addresses are always allowed.
func (c *Checker) AllowDial(addr string) bool {
	h := c.handles[addr]
	if h == nil || !h.breaker.tripped.Load() {
		return true // without reading the clock
	}
	return h.breaker.allow(time.Now())
}

// DialResult records the outcome of a pool's connection attempt to addr (nil
// on success). Failures also go to ReportFailure.
func (c *Checker) DialResult(addr string, err error) {
	h := c.handles[addr]
	if h == nil {
		return
	}
	if h.breaker.result(err, time.Now()) {
		c.log.Warn("health: circuit breaker open: backing off connection attempts", "node", addr, "err", err)
	}
	if err != nil {
		c.ReportFailure(addr, err)
	}
}

// Unfence lifts the fence of the node at addr: the operator vouches that it
// was re-attached as a replica of the current primary (pg_rewind, then
// started as a standby). A node still reporting primary on an older
// timeline is fenced again at the next check.
func (c *Checker) Unfence(ctx context.Context, addr string) error {
	c.mu.Lock()
	running := c.running
	c.mu.Unlock()
	if !running {
		return errors.New("health: checker not running")
	}
	req := &unfenceRequest{addr: addr, reply: make(chan error, 1)}
	select {
	case c.events <- event{unfence: req}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run owns the core: it applies events, decides, publishes and starts
// actions.
func (c *Checker) run(ctx context.Context) {
	defer c.wg.Done()
	tick := time.NewTicker(c.set.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-c.events:
			c.apply(ev)
		case <-c.wake:
		case <-tick.C:
		}
	drain:
		for {
			select {
			case ev := <-c.events:
				c.apply(ev)
			default:
				break drain
			}
		}
		for _, h := range c.order {
			if r := h.report.Swap(nil); r != nil {
				c.core.report(h.addr, r.err, r.at)
			}
		}
		now := time.Now()
		acts := c.core.decide(now)
		if c.core.dirty {
			c.publish(now)
		}
		for _, a := range acts {
			c.wg.Add(1)
			go c.act(ctx, a)
		}
	}
}

func (c *Checker) apply(ev event) {
	switch {
	case ev.obs != nil:
		if ev.obs.Err == nil && ev.obs.Dialed {
			c.handles[ev.obs.Addr].breaker.reset()
		}
		c.core.observe(*ev.obs)
	case ev.promoted != nil:
		c.core.promoted(*ev.promoted)
	case ev.repointed != nil:
		c.core.repointed(*ev.repointed)
	case ev.unfence != nil:
		ev.unfence.reply <- c.core.adminUnfence(ev.unfence.addr, time.Now())
	}
}

func (c *Checker) publish(now time.Time) {
	c.version++
	t := c.core.snapshot(now, c.version)
	if old := c.topo.Swap(t); old != nil {
		close(old.changed)
	}
}

// Metrics are the checker's counters and gauges as plain values, for the
// metrics exporter.
type Metrics struct {
	Shards []ShardMetrics
	Nodes  []NodeMetrics
}

// ShardMetrics are one shard's failover figures.
type ShardMetrics struct {
	Shard             string
	HasWriter         bool
	Failovers         uint64 // writes moved to another node (followed or promoted)
	Promotions        uint64 // promotions shardwire ran
	TimeWithoutWriter time.Duration
}

// NodeMetrics are one node's figures.
type NodeMetrics struct {
	Addr, Shard    string
	Role           Role
	State          State
	Lag            time.Duration
	LagBytes       uint64
	RoleChanges    uint64
	StateChanges   uint64
	Checks         uint64
	CheckFailures  uint64
	ReportedErrors uint64 // ReportFailure calls that counted
	BreakerOpens   uint64
	DialsRefused   uint64 // AllowDial said no
	BreakerOpen    bool
	LastCheck      time.Time
}

// Metrics returns the current figures. It never blocks on the checker.
func (c *Checker) Metrics() Metrics {
	now := time.Now()
	t := c.Topology()
	var m Metrics
	for _, s := range t.Shards {
		m.Shards = append(m.Shards, ShardMetrics{
			Shard: s.Name, HasWriter: s.Writer != nil, Failovers: s.Failovers, Promotions: s.Promotions,
			TimeWithoutWriter: s.TimeWithoutWriter(now),
		})
		for _, n := range s.Nodes {
			h := c.handles[n.Addr]
			opens, refused, open := h.breaker.counts(now)
			nm := NodeMetrics{
				Addr: n.Addr, Shard: s.Name, Role: n.Role, State: n.State, Lag: n.Lag, LagBytes: n.LagBytes,
				RoleChanges: n.RoleChanges, StateChanges: n.StateChanges,
				Checks: h.checks.Load(), CheckFailures: h.checkFailures.Load(), ReportedErrors: h.reports.Load(),
				BreakerOpens: opens, DialsRefused: refused, BreakerOpen: open, LastCheck: n.LastCheck,
			}
			m.Nodes = append(m.Nodes, nm)
		}
	}
	return m
}
