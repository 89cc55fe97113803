package health

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Role is what a node is configured to be or was observed to be.
type Role uint8

// Roles. RoleUnknown is the observed role of a node never checked successfully.
const (
	RoleUnknown Role = iota
	RolePrimary
	RoleReplica
)

func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleReplica:
		return "replica"
	}
	return "unknown"
}

// State is a node's health as routing sees it.
type State uint8

// States. StateFenced wins over up and down: a fenced node gets no traffic,
// whether the checker reaches it or not.
const (
	StateUnknown State = iota // not checked yet
	StateUp
	StateDown
	StateFenced
)

func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	case StateFenced:
		return "fenced"
	}
	return "unknown"
}

// Mode is failover.mode.
type Mode string

// Failover modes (failover.mode).
const (
	ModeOff     Mode = "off"
	ModeFollow  Mode = "follow"
	ModePromote Mode = "promote"
)

// LSN is a WAL position.
type LSN uint64

// ParseLSN parses Postgres's text form of a WAL position, "16/B374D848".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	return LSN(h<<32 | l), nil
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// Node is one node in a Topology. It is part of an immutable snapshot: never
// modify it.
type Node struct {
	Addr           string
	Shard          string
	ConfiguredRole Role
	// Role is what the last successful check saw (pg_is_in_recovery).
	Role  Role
	State State
	// Reachable is the checker's own verdict (up), whatever fencing says.
	Reachable bool
	// Readable: the node may take reads now (an up, unfenced replica within
	// routing.max_replica_lag and max_replica_lag_bytes). It is in
	// Shard.Readers exactly when this is true.
	Readable bool
	Weight   int // from shards[].weights, 0 when not set

	// Timeline: on a primary the timeline it writes (from the name of its
	// current WAL file); on a replica the newest of the timeline it receives
	// and the timeline of its last restartpoint. See the package comment.
	Timeline   uint32
	CurrentLSN LSN // a primary's pg_current_wal_lsn()
	// InsertLSN is a primary's pg_current_wal_insert_lsn(), read by a query
	// sent at InsertLSNAt: every commit acknowledged before InsertLSNAt is
	// at or below it.
	InsertLSN   LSN
	InsertLSNAt time.Time
	ReceiveLSN  LSN // a replica's pg_last_wal_receive_lsn()
	ReplayLSN   LSN // a replica's pg_last_wal_replay_lsn()
	// Lag is how far the replica's data is behind, LagBytes how many bytes of
	// WAL; see the package comment for how both are measured.
	Lag      time.Duration
	LagBytes uint64

	// LastError is the last error seen, kept after the node recovers:
	// it is current when LastErrorAt is after LastSuccess.
	LastError   string
	LastErrorAt time.Time
	LastCheck   time.Time // last check, successful or not
	LastSuccess time.Time
	Since       time.Time // when State last changed
	FenceReason string

	RoleChanges  uint64
	StateChanges uint64
}

// Shard is one shard in a Topology; immutable like Node.
type Shard struct {
	Name string
	// Writer is the node writes go to, nil when no writable primary is
	// known (failover under way, primary down, undecidable); WriterReason
	// then says why.
	Writer       *Node
	WriterReason string
	// Readers are the replicas that may take reads, in configuration order.
	Readers []*Node
	// Nodes are all nodes, configured primary first.
	Nodes []*Node
	// Timeline is the highest timeline seen on any node of the shard.
	Timeline uint32
	// Promoting: shardwire is promoting a replica right now.
	Promoting bool

	// Metrics.
	// Periods without a writer; the first one starts with the checker
	// (before its first checks).
	NoWriterSince time.Time     // zero while Writer != nil
	NoWriterTotal time.Duration // finished periods without a writer
	Failovers     uint64        // times writes moved to another node
	Promotions    uint64        // promotions shardwire ran successfully
}

// TimeWithoutWriter is the total time this shard had no writable primary
// until now, including a period still running.
func (s *Shard) TimeWithoutWriter(now time.Time) time.Duration {
	d := s.NoWriterTotal
	if s.Writer == nil && !s.NoWriterSince.IsZero() && now.After(s.NoWriterSince) {
		d += now.Sub(s.NoWriterSince)
	}
	return d
}

// Topology is an immutable snapshot of every shard's nodes. The checker
// builds a new one on every change and swaps it in atomically; hold on to one
// for as long as a decision must stay consistent (a transaction).
type Topology struct {
	Version uint64 // grows by one with every snapshot
	Built   time.Time
	Mode    Mode
	Shards  []*Shard // configuration order

	shards  map[string]*Shard
	nodes   map[string]*Node
	changed chan struct{}
}

// Shard returns the shard called name, or nil.
func (t *Topology) Shard(name string) *Shard { return t.shards[name] }

// Node returns the node at addr, or nil.
func (t *Topology) Node(addr string) *Node { return t.nodes[addr] }

// Writer returns the node writes to shard go to, or nil.
func (t *Topology) Writer(shard string) *Node {
	if s := t.shards[shard]; s != nil {
		return s.Writer
	}
	return nil
}

// Readers returns the replicas of shard that may take reads.
func (t *Topology) Readers(shard string) []*Node {
	if s := t.shards[shard]; s != nil {
		return s.Readers
	}
	return nil
}

// ReplayLSN returns the replay position of the replica at addr as of its
// last successful check. It only lags the real one, so a replica whose
// ReplayLSN has reached a client's commit LSN certainly shows that commit.
func (t *Topology) ReplayLSN(addr string) (LSN, bool) {
	n := t.nodes[addr]
	if n == nil || n.Role != RoleReplica || n.LastSuccess.IsZero() {
		return 0, false
	}
	return n.ReplayLSN, true
}

// WriterLSNAfter returns the shard writer's WAL insert position as read by
// a check sent at or after at: every commit acknowledged before at lies at
// or below it, so a replica whose ReplayLSN has reached it shows those
// commits. ok is false until such a check has run, at most about one
// health.interval (plus the check's round trip) after at. This is the
// read-your-writes estimate that costs no extra round trip: after a
// client's commit at time T, its reads go to the writer until
// WriterLSNAfter(shard, T) is known, then to replicas that replayed it.
func (t *Topology) WriterLSNAfter(shard string, at time.Time) (LSN, bool) {
	s := t.shards[shard]
	if s == nil || s.Writer == nil || s.Writer.InsertLSNAt.Before(at) || s.Writer.InsertLSNAt.IsZero() {
		return 0, false
	}
	return s.Writer.InsertLSN, true
}

// Changed returns a channel closed when a newer topology replaces t. Take a
// snapshot, look at it, then wait on its Changed: no change can be missed.
func (t *Topology) Changed() <-chan struct{} { return t.changed }
