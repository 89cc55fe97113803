package shardmap

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
)

// nShards is a config with shards s0..s(n-1) and one hashed table t.
func nShards(n, vnodes int) string {
	var b strings.Builder
	b.WriteString("listen: 127.0.0.1:6432\ndatabase: app\nusers: [ { name: app, password: x } ]\nshards:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - { name: s%d, primary: 127.0.0.1:%d }\n", i, 20000+i)
	}
	fmt.Fprintf(&b, "tables:\n  t: { key: id, type: bigint, strategy: hash }\nring: { vnodes: %d }\n", vnodes)
	return b.String()
}

// TestRingAddShard checks the consistent-hash property on 1,000,000 keys:
// going from N to N+1 shards moves about 1/(N+1) of the keys, only to the
// new shard, and Compare predicts the moved share.
//
// Tolerances. The new shard's share of the ring is the sum of its 256 arcs;
// with V points per shard that share has a relative standard deviation of
// about 1/sqrt(V) = 6.25%, so 1/(N+1) ± 25% is a 4σ band (the shard names
// are fixed, so the outcome is deterministic; the band says the ring is sane,
// not lucky). The measured share of 1e6 keys differs from Compare's exact arc
// share by sampling noise, sigma <= sqrt(0.25/1e6) = 0.05 points, so 0.5
// percentage points is a 10σ band that still catches a wrong prediction.
func TestRingAddShard(t *testing.T) {
	t.Parallel()
	const keys = 1_000_000
	for _, n := range []int{1, 2, 3, 4, 7} {
		t.Run(fmt.Sprintf("%d to %d", n, n+1), func(t *testing.T) {
			t.Parallel()
			oldM := mapFrom(t, "old.yaml", nShards(n, 256))
			newM := mapFrom(t, "new.yaml", nShards(n+1, 256))
			oldT, _ := oldM.Table("t")
			newT, _ := newM.Table("t")
			added := fmt.Sprintf("s%d", n)
			var buf [8]byte
			moved := 0
			for k := range keys {
				binary.BigEndian.PutUint64(buf[:], uint64(k))
				a, err1 := oldT.LocateBinary(OIDInt8, buf[:])
				b, err2 := newT.LocateBinary(OIDInt8, buf[:])
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				if a != b {
					if b != added {
						t.Fatalf("key %d moved from %s to %s, between two old shards", k, a, b)
					}
					moved++
				}
			}
			measured := float64(moved) / keys
			want := 1 / float64(n+1)
			tc, _ := Compare(oldM, newM).Table("t")
			t.Logf("moved %.4f of keys; 1/(N+1) = %.4f; Compare predicts %.4f", measured, want, tc.Moved)
			if math.Abs(measured-want) > 0.25*want {
				t.Errorf("moved %.4f of keys, want 1/%d = %.4f ± 25%%", measured, n+1, want)
			}
			if !tc.HasMoved || math.Abs(measured-tc.Moved) > 0.005 {
				t.Errorf("Compare predicts %.4f, measured %.4f: more than 0.5 points apart", tc.Moved, measured)
			}
			for _, f := range tc.Flows {
				if f.To != added {
					t.Errorf("Compare has a flow %s -> %s between old shards", f.From, f.To)
				}
			}
		})
	}
}

func TestRingPointsAndTies(t *testing.T) {
	t.Parallel()
	if got := VNodeName("s0", 17); got != "s0#17" {
		t.Errorf("VNodeName = %q", got)
	}
	r := newRing([]string{"b", "a"}, 64)
	if len(r.points) != 128 {
		t.Fatalf("%d points, want 128", len(r.points))
	}
	for i := 1; i < len(r.points); i++ {
		if r.points[i-1] > r.points[i] {
			t.Fatal("points are not sorted")
		}
	}
	// The ring depends on names, not on the order of shards in the file.
	r2 := newRing([]string{"a", "b"}, 64)
	names1, names2 := []string{"b", "a"}, []string{"a", "b"}
	for i := range r.points {
		if r.points[i] != r2.points[i] || names1[r.owners[i]] != names2[r2.owners[i]] {
			t.Fatalf("point %d differs when shards are reordered", i)
		}
	}
	// Ties: two shards with the same point resolve by name, first wins.
	tie := ring{points: []uint64{5, 5, 9}, owners: []int32{0, 1, 1}}
	cases := []struct {
		h    uint64
		want int32
	}{{0, 0}, {5, 0}, {6, 1}, {9, 1}, {10, 0}, {math.MaxUint64, 0}}
	for _, c := range cases {
		if got := tie.locate(c.h); got != c.want {
			t.Errorf("locate(%d) = %d, want %d", c.h, got, c.want)
		}
	}
}

func TestRingDiffExact(t *testing.T) {
	t.Parallel()
	names := []string{"a", "b"}
	cases := []struct {
		name      string
		old, new  ring
		wantMoved float64
	}{
		{"same ring", ring{[]uint64{1 << 62, 1 << 63}, []int32{0, 1}}, ring{[]uint64{1 << 62, 1 << 63}, []int32{0, 1}}, 0},
		// Old: (2^62, 2^63] is b's, the rest a's; new: everything is a's.
		{"a quarter", ring{[]uint64{1 << 62, 1 << 63}, []int32{0, 1}}, ring{[]uint64{1 << 63}, []int32{0}}, 0.25},
		{"everything", constRing(0), constRing(1), 1},
		{"wrap arc", ring{[]uint64{0, 3 << 62}, []int32{0, 1}}, ring{[]uint64{0, 3 << 62}, []int32{1, 1}}, 0.25},
		{"single point at max", ring{[]uint64{math.MaxUint64}, []int32{0}}, ring{[]uint64{1 << 63}, []int32{1}}, 1},
	}
	for _, c := range cases {
		moved, flows := ringDiff(&c.old, names, &c.new, names)
		if got := moved.share(); got != c.wantMoved {
			t.Errorf("%s: moved %v, want %v", c.name, got, c.wantMoved)
		}
		var sum u128
		for _, f := range flows {
			sum = sum.add(f)
		}
		if sum != moved {
			t.Errorf("%s: flows sum to %v, moved is %v", c.name, sum, moved)
		}
	}
}
