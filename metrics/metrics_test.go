package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestExposition(t *testing.T) {
	t.Parallel()
	r := New(func() State {
		return State{
			Clients: 7,
			Pools:   []PoolState{{Shard: "s0", Node: "h:1", User: "app", Active: 2, Idle: 3, Waiting: 1, WaitSeconds: 0.5}},
			Nodes:   []NodeState{{Shard: "s0", Node: "h:2", Role: "replica", State: "up", LagSeconds: 0.25, LagBytes: 100}},
			Shards:  []ShardState{{Shard: "s0", Writable: true, Failovers: 2}},
		}
	})
	n := r.Node("s0", "h:1", "primary")
	n.Query(0.0002)
	n.Query(0.003)
	if r.Node("s0", "h:1", "primary") != n {
		t.Fatal("Node is not cached")
	}
	r.Error("57014")
	r.Error("57P01")
	r.Error("x")
	r.Reload(true, "abc")
	r.Reload(false, "")
	r.Pin("listen")
	if got := testutil.ToFloat64(r.queries.WithLabelValues("s0", "h:1", "primary")); got != 2 {
		t.Fatalf("queries = %v", got)
	}
	if got := testutil.ToFloat64(r.errors.WithLabelValues("57")); got != 2 {
		t.Fatalf("errors class 57 = %v", got)
	}
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`shardwire_client_connections 7`,
		`shardwire_pool_connections{node="h:1",shard="s0",state="active",user="app"} 2`,
		`shardwire_pool_connections{node="h:1",shard="s0",state="idle",user="app"} 3`,
		`shardwire_pool_waiting_clients{node="h:1",shard="s0",user="app"} 1`,
		`shardwire_node_replica_lag_seconds{node="h:2",shard="s0"} 0.25`,
		`shardwire_node_role{node="h:2",role="replica",shard="s0"} 1`,
		`shardwire_shard_writable{shard="s0"} 1`,
		`shardwire_failovers_total{shard="s0"} 2`,
		`shardwire_query_duration_seconds_bucket{role="primary",shard="s0",le="0.00025"} 1`,
		`shardwire_shardmap_reloads_total{result="error"} 1`,
		`shardwire_shardmap_info{version="abc"} 1`,
		`shardwire_errors_total{class="XX"} 1`,
		`shardwire_client_pins_total{reason="listen"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	if problems, err := testutil.GatherAndLint(r.reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}
