package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// State is what the proxy and the health checker look like at scrape time.
type State struct {
	Clients int
	Pools   []PoolState
	Nodes   []NodeState
	Shards  []ShardState
}

// PoolState is one pool of server connections.
type PoolState struct {
	Shard, Node, User string
	Active, Idle      int
	Waiting           int
	WaitSeconds       float64 // total time clients waited for a connection
	Dials, DialErrors uint64
}

// NodeState is one node as the health checker sees it.
type NodeState struct {
	Shard, Node string
	Role        string // primary, replica, unknown
	State       string // up, down, fenced
	LagSeconds  float64
	LagBytes    uint64
	BreakerOpen bool
}

// ShardState is one shard's failover figures.
type ShardState struct {
	Shard                 string
	Writable              bool
	Failovers, Promotions uint64
	SecondsWithoutWriter  float64
}

var (
	descClients      = prometheus.NewDesc("shardwire_client_connections", "Client connections open.", nil, nil)
	descPoolConns    = prometheus.NewDesc("shardwire_pool_connections", "Server connections by state.", []string{"shard", "node", "user", "state"}, nil)
	descPoolWaiting  = prometheus.NewDesc("shardwire_pool_waiting_clients", "Clients waiting for a server connection.", []string{"shard", "node", "user"}, nil)
	descPoolWait     = prometheus.NewDesc("shardwire_pool_wait_seconds_total", "Total time clients waited for a server connection.", []string{"shard", "node", "user"}, nil)
	descPoolDials    = prometheus.NewDesc("shardwire_pool_dials_total", "Server connections opened.", []string{"shard", "node", "user"}, nil)
	descPoolDialErrs = prometheus.NewDesc("shardwire_pool_dial_errors_total", "Failed attempts to open a server connection.", []string{"shard", "node", "user"}, nil)
	descNodeUp       = prometheus.NewDesc("shardwire_node_up", "1 when the health checker sees the node up.", []string{"shard", "node"}, nil)
	descNodeRole     = prometheus.NewDesc("shardwire_node_role", "1 for the role the node reports.", []string{"shard", "node", "role"}, nil)
	descNodeState    = prometheus.NewDesc("shardwire_node_state", "1 for the node's state (up, down, fenced).", []string{"shard", "node", "state"}, nil)
	descNodeLag      = prometheus.NewDesc("shardwire_node_replica_lag_seconds", "How far a replica's data is behind its primary.", []string{"shard", "node"}, nil)
	descNodeLagBytes = prometheus.NewDesc("shardwire_node_replica_lag_bytes", "WAL bytes a replica has not replayed.", []string{"shard", "node"}, nil)
	descNodeBreaker  = prometheus.NewDesc("shardwire_node_circuit_open", "1 while connection attempts to the node back off.", []string{"shard", "node"}, nil)
	descWritable     = prometheus.NewDesc("shardwire_shard_writable", "1 when the shard has a writable primary.", []string{"shard"}, nil)
	descFailovers    = prometheus.NewDesc("shardwire_failovers_total", "Times writes moved to another node of the shard.", []string{"shard"}, nil)
	descPromotions   = prometheus.NewDesc("shardwire_promotions_total", "Promotions shardwire ran.", []string{"shard"}, nil)
	descNoWriter     = prometheus.NewDesc("shardwire_shard_without_writer_seconds_total", "Total time the shard had no writable primary.", []string{"shard"}, nil)
)

type stateCollector struct{ state func() State }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClients, descPoolConns, descPoolWaiting, descPoolWait, descPoolDials, descPoolDialErrs,
		descNodeUp, descNodeRole, descNodeState, descNodeLag, descNodeLagBytes, descNodeBreaker,
		descWritable, descFailovers, descPromotions, descNoWriter} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.state()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descClients, float64(s.Clients))
	for _, p := range s.Pools {
		gauge(descPoolConns, float64(p.Active), p.Shard, p.Node, p.User, "active")
		gauge(descPoolConns, float64(p.Idle), p.Shard, p.Node, p.User, "idle")
		gauge(descPoolWaiting, float64(p.Waiting), p.Shard, p.Node, p.User)
		counter(descPoolWait, p.WaitSeconds, p.Shard, p.Node, p.User)
		counter(descPoolDials, float64(p.Dials), p.Shard, p.Node, p.User)
		counter(descPoolDialErrs, float64(p.DialErrors), p.Shard, p.Node, p.User)
	}
	for _, n := range s.Nodes {
		gauge(descNodeUp, b2f(n.State == "up"), n.Shard, n.Node)
		for _, r := range []string{"primary", "replica", "unknown"} {
			gauge(descNodeRole, b2f(n.Role == r), n.Shard, n.Node, r)
		}
		for _, st := range []string{"up", "down", "fenced"} {
			gauge(descNodeState, b2f(n.State == st), n.Shard, n.Node, st)
		}
		gauge(descNodeLag, n.LagSeconds, n.Shard, n.Node)
		gauge(descNodeLagBytes, float64(n.LagBytes), n.Shard, n.Node)
		gauge(descNodeBreaker, b2f(n.BreakerOpen), n.Shard, n.Node)
	}
	for _, sh := range s.Shards {
		gauge(descWritable, b2f(sh.Writable), sh.Shard)
		counter(descFailovers, float64(sh.Failovers), sh.Shard)
		counter(descPromotions, float64(sh.Promotions), sh.Shard)
		counter(descNoWriter, sh.SecondsWithoutWriter, sh.Shard)
	}
}
