package shardmap

import (
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

func specText(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile("../configs/shardwire.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

const thirdShard = `  - name: s2
    primary: 127.0.0.1:15632
    replicas: [127.0.0.1:15633]
# Tables not listed here`

const fourthShard = `  - name: s3
    primary: 127.0.0.1:15732
# Tables not listed here`

// TestComparePredictsMeasuredShare checks Compare's moved share and flows
// against 100,000 sample keys located through each map. Sampling noise of
// 1e5 keys is at most sqrt(0.25/1e5) = 0.16 percentage points, so 0.5
// points is about 3σ while a wrong arc computation is off by far more.
func TestComparePredictsMeasuredShare(t *testing.T) {
	t.Parallel()
	spec := specText(t)
	three := strings.Replace(spec, "# Tables not listed here", thirdShard, 1)
	four := strings.Replace(three, "# Tables not listed here", fourthShard, 1)
	cases := []struct{ name, old, new string }{
		{"add a third shard", spec, three},
		{"add a fourth shard", three, four},
		{"remove s1", three, withoutS1(t, three)},
		{"fewer vnodes", spec, strings.Replace(spec, "vnodes: 256", "vnodes: 64", 1)},
		{"identical", spec, spec},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			oldM, newM := mapFrom(t, "old.yaml", c.old), mapFrom(t, "new.yaml", c.new)
			oldT, _ := oldM.Table("orders")
			newT, _ := newM.Table("orders")
			const n = 100_000
			moved := 0
			flows := map[[2]string]int{}
			for k := 1; k <= n; k++ {
				key := strconv.Itoa(k)
				a, err1 := oldT.LocateText(key)
				b, err2 := newT.LocateText(key)
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				if a != b {
					moved++
					flows[[2]string{a, b}]++
				}
			}
			tc, ok := Compare(oldM, newM).Table("orders")
			if !ok || !tc.HasMoved {
				t.Fatalf("Compare has no moved share for orders: %+v", tc)
			}
			measured := float64(moved) / n
			t.Logf("predicted %.4f, measured %.4f", tc.Moved, measured)
			if math.Abs(tc.Moved-measured) > 0.005 {
				t.Errorf("predicted %.4f, measured %.4f", tc.Moved, measured)
			}
			predicted := map[[2]string]float64{}
			for _, f := range tc.Flows {
				predicted[[2]string{f.From, f.To}] = f.Share
			}
			for k, v := range flows {
				if math.Abs(predicted[k]-float64(v)/n) > 0.005 {
					t.Errorf("flow %s -> %s: predicted %.4f, measured %.4f", k[0], k[1], predicted[k], float64(v)/n)
				}
			}
			for k, v := range predicted {
				if _, seen := flows[k]; !seen && v > 0.005 {
					t.Errorf("flow %s -> %s: predicted %.4f, none measured", k[0], k[1], v)
				}
			}
		})
	}
}

// withoutS1 drops shard s1 and gives its list values and range to s2.
func withoutS1(t *testing.T, cfg string) string {
	t.Helper()
	for _, r := range []struct{ from, to string }{
		{"  - name: s1\n    primary: 127.0.0.1:15532\n    replicas: [127.0.0.1:15533]\n", ""},
		{"s1: [us, ca]", "s2: [us, ca]"},
		{"{ shard: s1,", "{ shard: s2,"},
	} {
		if !strings.Contains(cfg, r.from) {
			t.Fatalf("config text changed; %q not found", r.from)
		}
		cfg = strings.Replace(cfg, r.from, r.to, 1)
	}
	return cfg
}

func TestCompareDescribesChanges(t *testing.T) {
	t.Parallel()
	spec := specText(t)
	changed := strings.Replace(spec, "# Tables not listed here", thirdShard, 1)
	for _, r := range []struct{ from, to string }{
		{"lists: { s0: [eu, uk], s1: [us, ca] } }", "lists: { s0: [eu], s1: [us, ca, uk, fr] } }"},
		{"ranges: [ { shard: s0, to: 2026-01-01 },\n                           { shard: s1, from: 2026-01-01 } ] }",
			"ranges: [ { shard: s0, to: 2025-07-01 },\n                           { shard: s1, from: 2025-07-01 } ] }"},
		{"  customers:   { key: id,          type: bigint, strategy: hash }\n", ""},
		{"  orders:      { key: customer_id, type: bigint, strategy: hash }",
			"  orders:      { key: customer_id, type: text, strategy: hash }\n  items: { key: id, type: uuid, strategy: hash }"},
	} {
		if !strings.Contains(changed, r.from) {
			t.Fatalf("spec text changed; %q not found", r.from)
		}
		changed = strings.Replace(changed, r.from, r.to, 1)
	}
	oldM, newM := mapFrom(t, "old.yaml", spec), mapFrom(t, "new.yaml", changed)
	c := Compare(oldM, newM)
	out := c.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"shard map " + oldM.Version() + " -> " + newM.Version() + "\n",
		"shards added: s2\n",
		"tables added: items\n",
		"tables removed: customers\n",
		"table countries (replicated):\n  copy the table to the new shards s2\n",
		"table stores (list text region):\n  value 'fr': (no shard: an error) -> s1\n  value 'uk': s0 -> s1\n",
		"table events (range date created_at):\n  ['2025-07-01', '2026-01-01'): s0 -> s1\n",
		"table orders (hash bigint customer_id -> hash text customer_id):\n  the shard key changes from bigint customer_id to text customer_id: every row may move\n",
		"table customers (hash bigint id -> unsharded on s0):",
		"table items (unsharded on s0 -> hash uuid id):",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// A table that stops being hashed lands on the default shard: what moves
	// is exactly what the old ring gave to other shards, and all of it goes to s0.
	cust, _ := c.Table("customers")
	if !cust.HasMoved || len(cust.Flows) != 1 || cust.Flows[0] != (Flow{"s1", "s0", cust.Moved}) {
		t.Errorf("customers: %+v", cust)
	}
	oldShare := Compare(oldM, mapFrom(t, "one.yaml", strings.Replace(spec, "default_shard: s0", "default_shard: s1", 1)))
	if d := oldShare; d.OldDefault != "s0" || d.NewDefault != "s1" || !strings.Contains(d.String(), "default shard: s0 -> s1 (every table not listed moves)") {
		t.Errorf("a default shard change is not reported:\n%s", d.String())
	}
	items, _ := c.Table("items")
	if !items.HasMoved || math.Abs(items.Moved-2.0/3) > 0.1 {
		t.Errorf("items moves %.3f of keys off s0, want about 2/3", items.Moved)
	}
	same := Compare(oldM, specMap(t)).String()
	if !strings.Contains(same, "no changes: every key stays on its shard") || strings.Contains(same, "\n  ") {
		t.Errorf("identical maps:\n%s", same)
	}
	if tc, _ := Compare(oldM, specMap(t)).Table("orders"); !tc.HasMoved || tc.Moved != 0 || tc.Changed() {
		t.Errorf("identical maps: orders %+v", tc)
	}
}

func TestComparePercentages(t *testing.T) {
	t.Parallel()
	m2 := mapFrom(t, "a.yaml", nShards(2, 256))
	m3 := mapFrom(t, "b.yaml", nShards(3, 256))
	c := Compare(m2, m3)
	tc, _ := c.Table("t")
	want := "table t (hash bigint id): " + strconv.FormatFloat(tc.Moved*100, 'f', 1, 64) + "% of keys move\n"
	if !strings.Contains(c.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, c.String())
	}
	var sum float64
	for _, f := range tc.Flows {
		sum += f.Share
		if !strings.Contains(c.String(), "  "+f.From+" -> "+f.To+": "+strconv.FormatFloat(f.Share*100, 'f', 1, 64)+"%\n") {
			t.Errorf("flow %+v not printed", f)
		}
	}
	if math.Abs(sum-tc.Moved) > 1e-12 {
		t.Errorf("flows sum to %v, moved %v", sum, tc.Moved)
	}
}
