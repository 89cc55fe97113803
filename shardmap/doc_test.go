package shardmap

import (
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

var exampleLine = regexp.MustCompile(`^(table|key|normalised|xxhash64|point|shard): (.*)$`)

// TestDocWorkedExample recomputes every worked example of docs/sharding.md
// under the spec's map, so the document cannot drift from the code.
func TestDocWorkedExample(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docs/sharding.md")
	if err != nil {
		t.Fatal(err)
	}
	var examples []map[string]string
	for _, line := range strings.Split(string(data), "\n") {
		m := exampleLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[1] == "table" {
			examples = append(examples, map[string]string{})
		}
		if len(examples) == 0 {
			t.Fatalf("%q before any table: line", line)
		}
		examples[len(examples)-1][m[1]] = m[2]
	}
	if len(examples) < 2 {
		t.Fatalf("found %d worked examples, want at least 2", len(examples))
	}
	spec := specMap(t)
	shardsSeen := map[string]bool{}
	for _, ex := range examples {
		for _, k := range []string{"table", "key", "normalised", "xxhash64", "point", "shard"} {
			if ex[k] == "" {
				t.Fatalf("example %v lacks %s", ex, k)
			}
		}
		tb, ok := spec.Table(ex["table"])
		if !ok {
			t.Fatalf("no table %q", ex["table"])
		}
		norm, err := NormalizeText(tb.Type(), ex["key"])
		if err != nil {
			t.Fatal(err)
		}
		want, err := hex.DecodeString(strings.ReplaceAll(ex["normalised"], " ", ""))
		if err != nil || string(norm) != string(want) {
			t.Errorf("key %s: normalised %x, doc says %s", ex["key"], norm, ex["normalised"])
		}
		h := KeyHash(norm)
		if got := fmt.Sprintf("%#016x", h); got != ex["xxhash64"] {
			t.Errorf("key %s: hash %s, doc says %s", ex["key"], got, ex["xxhash64"])
		}
		// "point: s0#211 = 0x…": the named vnode hashes to that value and is
		// the first point at or after the key's hash.
		name, val, _ := strings.Cut(ex["point"], " = ")
		pv, err := strconv.ParseUint(strings.TrimPrefix(val, "0x"), 16, 64)
		if err != nil || xxhash.Sum64String(name) != pv {
			t.Errorf("point %s: xxhash64(%q) = %#x", ex["point"], name, xxhash.Sum64String(name))
		}
		shard, _, _ := strings.Cut(name, "#")
		if pv < h {
			t.Errorf("point %#x is before the hash %#x", pv, h)
		}
		for _, p := range spec.ring.points {
			if p >= h && p < pv {
				t.Errorf("point %#x lies between the hash and the documented point", p)
			}
		}
		got, err := tb.LocateText(ex["key"])
		if err != nil || got != ex["shard"] || shard != ex["shard"] {
			t.Errorf("key %s: shard %q (%v), doc says %s via %s", ex["key"], got, err, ex["shard"], name)
		}
		shardsSeen[got] = true
	}
	if len(shardsSeen) < 2 {
		t.Error("the worked examples should show keys on both shards")
	}
}
