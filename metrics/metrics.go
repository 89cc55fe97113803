package metrics

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Buckets fit for sub-millisecond proxy work up to slow queries.
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
}

// Recorder holds the hot-path metrics.
type Recorder struct {
	reg      *prometheus.Registry
	queries  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	pins     *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	mapInfo  *prometheus.GaugeVec

	mu    sync.Mutex
	nodes map[[3]string]*Node
	errs  map[string]prometheus.Counter
}

// Node is the pre-resolved metrics of one (shard, node, role).
type Node struct {
	queries  prometheus.Counter
	duration prometheus.Observer
}

// Query counts one statement and its duration in seconds.
func (n *Node) Query(seconds float64) {
	n.queries.Inc()
	n.duration.Observe(seconds)
}

// New builds a Recorder with its own registry, which also carries the Go
// runtime and process collectors and the state collector for state.
func New(state func() State) *Recorder {
	reg := prometheus.NewRegistry()
	r := &Recorder{
		reg: reg,
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardwire_queries_total", Help: "Statements (simple Query or extended Execute) run, by shard, node and role.",
		}, []string{"shard", "node", "role"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shardwire_query_duration_seconds", Help: "Time from forwarding a statement to its completion, by shard and role.",
			Buckets: durationBuckets,
		}, []string{"shard", "role"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardwire_errors_total", Help: "Errors sent to clients, by SQLSTATE class (first two characters).",
		}, []string{"class"}),
		pins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardwire_client_pins_total", Help: "Clients pinned to their server connection in transaction pooling, by what pinned them.",
		}, []string{"reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardwire_shardmap_reloads_total", Help: "Shard-map reloads by result.",
		}, []string{"result"}),
		mapInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shardwire_shardmap_info", Help: "The shard map in use: 1 for its version.",
		}, []string{"version"}),
		nodes: map[[3]string]*Node{},
		errs:  map[string]prometheus.Counter{},
	}
	reg.MustRegister(r.queries, r.duration, r.errors, r.pins, r.reloads, r.mapInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if state != nil {
		reg.MustRegister(&stateCollector{state: state})
	}
	for _, res := range []string{"ok", "error"} {
		r.reloads.WithLabelValues(res)
	}
	return r
}

// Node returns the metrics of (shard, node, role), creating them once.
func (r *Recorder) Node(shard, node, role string) *Node {
	if r == nil {
		return nil
	}
	key := [3]string{shard, node, role}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.nodes[key]
	if n == nil {
		n = &Node{queries: r.queries.WithLabelValues(shard, node, role), duration: r.duration.WithLabelValues(shard, role)}
		r.nodes[key] = n
	}
	return n
}

// Error counts an error sent to a client, by its SQLSTATE class.
func (r *Recorder) Error(sqlstate string) {
	if r == nil {
		return
	}
	class := "XX"
	if len(sqlstate) >= 2 {
		class = sqlstate[:2]
	}
	r.mu.Lock()
	c := r.errs[class]
	if c == nil {
		c = r.errors.WithLabelValues(class)
		r.errs[class] = c
	}
	r.mu.Unlock()
	c.Inc()
}

// Pin counts a client pinned to its server connection; reason is one of a
// few fixed words (prepare, listen, advisory_lock, with_hold, temp,
// set_config, load), so the label set stays small.
func (r *Recorder) Pin(reason string) {
	if r == nil {
		return
	}
	r.pins.WithLabelValues(reason).Inc()
}

// Reload counts a shard-map reload and, when it succeeded, the new version.
func (r *Recorder) Reload(ok bool, version string) {
	if r == nil {
		return
	}
	if !ok {
		r.reloads.WithLabelValues("error").Inc()
		return
	}
	r.reloads.WithLabelValues("ok").Inc()
	r.MapVersion(version)
}

// MapVersion records the shard map in use.
func (r *Recorder) MapVersion(version string) {
	if r == nil {
		return
	}
	r.mapInfo.Reset()
	r.mapInfo.WithLabelValues(version).Set(1)
}

// Handler serves the registry in the Prometheus exposition format.
func (r *Recorder) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}
