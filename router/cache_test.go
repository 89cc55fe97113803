package router

import (
	"fmt"
	"strings"
	"testing"
)

func TestShapeCacheBudget(t *testing.T) {
	t.Parallel()
	c := newShapeCache(16 << 10)
	for i := 0; i < 1000; i++ {
		an := &Analysis{Shape: fmt.Sprintf("select c%d from t", i), Class: ClassRead}
		if got := c.add(uint64(i), an); got != an {
			t.Fatalf("add returned another analysis")
		}
		if st := c.stats(); st.Bytes > st.Budget {
			t.Fatalf("after %d adds the cache holds %d bytes, budget %d", i+1, st.Bytes, st.Budget)
		}
	}
	st := c.stats()
	if st.Evictions == 0 || st.Entries == 0 {
		t.Fatalf("stats %+v: want evictions and a non-empty cache", st)
	}
	// The last entry is resident, the first long gone.
	if c.get(999, []byte("select c999 from t")) == nil {
		t.Error("newest entry missing")
	}
	if c.get(0, []byte("select c0 from t")) != nil {
		t.Error("oldest entry still cached in a full cache")
	}
}

func TestShapeCacheClockKeepsHotEntries(t *testing.T) {
	t.Parallel()
	c := newShapeCache(32 << 10)
	hot := &Analysis{Shape: "select hot"}
	c.add(1<<40, hot)
	for i := 0; i < 5000; i++ {
		if c.get(1<<40, []byte("select hot")) != hot {
			t.Fatalf("hot entry evicted after %d one-off shapes", i)
		}
		c.add(uint64(i), &Analysis{Shape: fmt.Sprintf("select cold%d", i)})
	}
}

func TestShapeCacheOversizeAndCollision(t *testing.T) {
	t.Parallel()
	c := newShapeCache(8 << 10)
	big := &Analysis{Shape: strings.Repeat("x", 2<<10)}
	if got := c.add(7, big); got != big {
		t.Fatal("oversize add did not return its analysis")
	}
	if c.get(7, []byte(big.Shape)) != nil {
		t.Error("an analysis larger than budget/8 was cached")
	}

	a := &Analysis{Shape: "select a"}
	b := &Analysis{Shape: "select b"}
	c.add(9, a)
	if got := c.add(9, b); got != b {
		t.Error("colliding add did not return its own analysis")
	}
	if c.get(9, []byte("select b")) != nil {
		t.Error("lookup with a colliding shape returned an entry")
	}
	if c.get(9, []byte("select a")) != a {
		t.Error("resident entry lost on collision")
	}
	// A racing add of the same shape returns the resident analysis.
	a2 := &Analysis{Shape: "select a"}
	if got := c.add(9, a2); got != a {
		t.Error("second add of one shape did not return the resident analysis")
	}
}

func TestShapeCacheGetNoAlloc(t *testing.T) {
	c := newShapeCache(1 << 20)
	an := &Analysis{Shape: "select $?"}
	c.add(12345678901, an)
	key := []byte("select $?")
	allocs := testing.AllocsPerRun(100, func() {
		if c.get(12345678901, key) != an {
			t.Fatal("miss")
		}
	})
	if allocs != 0 {
		t.Errorf("get allocates %v times, want 0", allocs)
	}
}
