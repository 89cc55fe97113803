package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardwire/shardwire/pgcluster"
)

// reshardTables are two hashed tables of different key types; both follow
// the same ring, but their keys are sampled separately.
const reshardTables = `tables:
  customers: { key: id, type: bigint, strategy: hash }
  devices:   { key: id, type: uuid, strategy: hash }
`

const reshardSchema = `
CREATE TABLE customers (id bigint PRIMARY KEY, writer int NOT NULL, seq int NOT NULL);
CREATE TABLE devices (id uuid PRIMARY KEY, name text);
`

// moveEstimate is what `shardwire check --against` says of one hashed table.
type moveEstimate struct {
	total float64            // share of keys that move, in percent
	flows map[string]float64 // "s0 -> s3" -> percent
}

var (
	checkTableLine = regexp.MustCompile(`(?m)^table (\S+) \((.*)\): ([0-9.]+)% of keys move$`)
	checkFlowLine  = regexp.MustCompile(`^  (\S+) -> (\S+): ([0-9.]+)%$`)
)

// parseCheck reads the per-table moved shares out of check's report.
func parseCheck(t *testing.T, out string) map[string]moveEstimate {
	t.Helper()
	res := map[string]moveEstimate{}
	var cur string
	for _, line := range strings.Split(out, "\n") {
		if m := checkTableLine.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				t.Fatalf("check: %q: %v", line, err)
			}
			cur = m[1]
			res[cur] = moveEstimate{total: v, flows: map[string]float64{}}
			continue
		}
		if m := checkFlowLine.FindStringSubmatch(line); m != nil && cur != "" {
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				t.Fatalf("check: %q: %v", line, err)
			}
			res[cur].flows[m[1]+" -> "+m[2]] = v
			continue
		}
		cur = ""
	}
	return res
}

// writeConfig replaces the file in one rename, so the proxy's watcher never
// reads half a file.
func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until the proxy's log holds n occurrences of s.
func (p *proxyProc) waitLog(t *testing.T, s string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(p.log.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy did not log %q (%d times) within %v", s, n, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// insertRec is one insert of the load, and the read that followed it.
type insertRec struct {
	id               int64
	insStart, insEnd time.Time
	readEnd          time.Time
	found            bool
	worker, seq      int
}

// TestReshardUnderLoad adds a fourth shard to a three-shard map while pgx
// clients insert and read by key through shardwire. check --against must
// predict the share of keys that move (to the new shard only) within 0.5
// percentage points of what locate says for 100,000 keys per table; the
// reload must drop no client and cause no error; inserts before it follow
// the old map and after it the new one; a transaction open across it
// finishes on its shard; and a broken file after it is refused with
// FILE:LINE while the last good map keeps routing.
func TestReshardUnderLoad(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	shards := startShards(t, "rs", []string{"s0", "s1", "s2"}, 0, reshardSchema)
	pc := proxyConfig{size: 6, shards: shards, extra: reshardTables}
	p := startProxy(t, pc)
	oldText, err := os.ReadFile(p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	oldCfg, newCfg := filepath.Join(dir, "old.yaml"), filepath.Join(dir, "new.yaml")
	if err := os.WriteFile(oldCfg, oldText, 0o600); err != nil {
		t.Fatal(err)
	}

	// The load: each worker inserts its own keys and reads each back at once.
	const workers = 4
	conns := make([]*pgx.Conn, workers)
	for w := range conns {
		conns[w] = p.connect(t)
	}
	stop := make(chan struct{})
	recs := make([][]insertRec, workers)
	var loadErrs []error
	var errMu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := conns[w]
			for seq := 1; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				r := insertRec{id: int64(w+1)*1_000_000_000 + int64(seq), worker: w, seq: seq, insStart: time.Now()}
				octx, ocancel := context.WithTimeout(ctx, opTimeout)
				_, err := c.Exec(octx, "INSERT INTO customers (id, writer, seq) VALUES ($1, $2, $3)", r.id, w, seq)
				r.insEnd = time.Now()
				if err == nil {
					var got int
					err = c.QueryRow(octx, "SELECT seq FROM customers WHERE id = $1", r.id).Scan(&got)
					r.readEnd = time.Now()
					switch {
					case errors.Is(err, pgx.ErrNoRows):
						err = nil // judged below: only a key that moved may be missed
					case err == nil && got != seq:
						err = fmt.Errorf("read %d: seq %d, want %d", r.id, got, seq)
					case err == nil:
						r.found = true
					}
					recs[w] = append(recs[w], r)
				}
				ocancel()
				if err != nil {
					errMu.Lock()
					loadErrs = append(loadErrs, fmt.Errorf("worker %d key %d: %w", w, r.id, err))
					errMu.Unlock()
					if c.IsClosed() {
						return
					}
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopLoad()

	// A fourth shard, empty but for the schema: nothing is copied.
	s3 := startShard(t, "rss3", 0, "scram-sha-256")
	s3.Name = "s3"
	createSchema(t, s3, reshardSchema)
	all := append(append([]*pgcluster.Shard(nil), shards...), s3)
	pc4 := pc
	pc4.shards = all
	newText := pc4.yaml(p.addr, p.admin)
	if err := os.WriteFile(newCfg, []byte(newText), 0o600); err != nil {
		t.Fatal(err)
	}

	// What check predicts, and what locate says for 100,000 keys per table.
	out, err := swOutput(t, "check", "-c", newCfg, "--against", oldCfg)
	if err != nil {
		t.Fatal(err)
	}
	est := parseCheck(t, out)
	rng := rand.New(rand.NewPCG(4, 2026))
	const samples = 100_000
	sample := map[string][]string{"customers": make([]string, samples), "devices": make([]string, samples)}
	for i := range samples {
		sample["customers"][i] = strconv.FormatInt(int64(rng.Uint64()), 10)
		var u [16]byte
		for j := range u {
			u[j] = byte(rng.Uint32())
		}
		sample["devices"][i] = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	}
	oldOf, newOf := map[string][]string{}, map[string][]string{}
	for _, table := range []string{"customers", "devices"} {
		e, ok := est[table]
		if !ok {
			t.Fatalf("check says nothing of how %s moves:\n%s", table, out)
		}
		oldOf[table] = locateAll(t, oldCfg, table, sample[table])
		newOf[table] = locateAll(t, newCfg, table, sample[table])
		moved := map[string]int{}
		n, between := 0, 0
		for i := range samples {
			o, nw := oldOf[table][i], newOf[table][i]
			if o == nw {
				continue
			}
			n++
			moved[o+" -> "+nw]++
			if nw != "s3" {
				if between++; between <= 5 {
					t.Errorf("%s key %s moved from %s to %s: between two old shards", table, sample[table][i], o, nw)
				}
			}
		}
		if between > 0 {
			t.Errorf("%s: %d of %d keys moved between two old shards", table, between, samples)
		}
		measured := 100 * float64(n) / samples
		t.Logf("%s: check predicts %.1f%% %v; locate moves %.2f%% of %d keys %v", table, e.total, e.flows, measured, samples, moved)
		if math.Abs(measured-e.total) > 0.5 {
			t.Errorf("%s: check predicts %.1f%% of keys move, locate moves %.2f%%", table, e.total, measured)
		}
		// About 1/4 moves; each old shard gives up about a third of it.
		if e.total < 15 || e.total > 35 {
			t.Errorf("%s: check predicts %.1f%% move for a 4th shard, far from 25%%", table, e.total)
		}
		var sum float64
		for flow, share := range e.flows {
			sum += share
			if !strings.HasSuffix(flow, "-> s3") {
				t.Errorf("%s: check predicts a flow %s: %.1f%%, between two old shards", table, flow, share)
			}
			if got := 100 * float64(moved[flow]) / samples; math.Abs(got-share) > 0.5 {
				t.Errorf("%s: check predicts %s %.1f%%, locate %.2f%%", table, flow, share, got)
			}
		}
		if len(e.flows) != 3 || math.Abs(sum-e.total) > 0.2 {
			t.Errorf("%s: check's flows %v do not make up its total %.1f%%", table, e.flows, e.total)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Keys that move from one old shard (txShard) to s3, and one that stays.
	cust := sample["customers"]
	var txShard string
	var moving, staying []string
	for i := range cust {
		o, nw := oldOf["customers"][i], newOf["customers"][i]
		if txShard == "" && o != nw {
			txShard = o
		}
		if o == txShard && nw == "s3" {
			moving = append(moving, cust[i])
		}
		if o == txShard && nw == txShard && len(staying) == 0 {
			staying = append(staying, cust[i])
		}
	}
	if len(moving) < 4 || len(staying) == 0 {
		t.Fatalf("no keys to test with: %d moving, %d staying", len(moving), len(staying))
	}
	key := func(s string) int64 {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// A transaction open across the reload: a key that moves, then after
	// the reload a key that stays on txShard; both rows end on txShard.
	// (A second key that moves: TestReloadTransactionKeepsMap.)
	txA, other := p.connect(t), p.connect(t)
	a, err := txA.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "INSERT INTO customers (id, writer, seq) VALUES ($1, -1, 1)", key(moving[0])); err != nil {
		t.Fatal(err)
	}

	// The reload, by the file watcher.
	reloads := strings.Count(p.log.String(), "configuration reloaded")
	time.Sleep(300 * time.Millisecond) // some load before
	tWrite := time.Now()
	writeConfig(t, p.cfg, newText)
	p.waitLog(t, "configuration reloaded", reloads+1, 10*time.Second)
	tSeen := time.Now()
	t.Logf("reload applied within %v of the write", tSeen.Sub(tWrite).Round(time.Millisecond))

	if _, err := a.Exec(ctx, "INSERT INTO customers (id, writer, seq) VALUES ($1, -1, 2)", key(staying[0])); err != nil {
		t.Errorf("transaction A, after the reload, a key that stays on %s: %v", txShard, err)
	}
	if err := a.Commit(ctx); err != nil {
		t.Errorf("transaction A: commit: %v", err)
	}

	// New statements follow the new map, on a connection from before the
	// reload, with a literal and with a binary parameter.
	if _, err := txA.Exec(ctx, "INSERT INTO customers (id, writer, seq) VALUES ("+moving[1]+", -3, 1)"); err != nil {
		t.Errorf("insert of a moved key after the reload: %v", err)
	}
	if _, err := other.Exec(ctx, "INSERT INTO customers (id, writer, seq) VALUES ($1, -3, 2)", key(moving[2])); err != nil {
		t.Errorf("insert of a moved key after the reload: %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // load under the new map

	// A broken file: the old three-shard map (which would move keys back)
	// with a bad type on a known line. Refused, logged with FILE:LINE, and
	// the four-shard map keeps routing.
	broken := strings.Replace(string(oldText), "type: uuid,", "type: uuidx,", 1)
	badLine := 1 + strings.Count(broken[:strings.Index(broken, "uuidx")], "\n")
	refusals := strings.Count(p.log.String(), "reload refused")
	writeConfig(t, p.cfg, broken)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "reload refused", refusals+1, 10*time.Second)
	where := fmt.Sprintf("%s:%d:", filepath.Base(p.cfg), badLine)
	logs := p.log.String()
	logs = logs[strings.LastIndex(logs, "configuration reloaded"):]
	if i := strings.Index(logs, where); i < 0 {
		t.Errorf("the refused reload did not log %s", where)
	} else {
		line := logs[strings.LastIndex(logs[:i], "\n")+1:]
		t.Logf("refused: %s", line[:strings.IndexByte(line+"\n", '\n')])
	}
	if n := strings.Count(p.log.String(), "configuration reloaded"); n != reloads+1 {
		t.Errorf("the broken file was applied: %d reloads, want %d", n, reloads+1)
	}
	if _, err := txA.Exec(ctx, "INSERT INTO customers (id, writer, seq) VALUES ($1, -3, 3)", key(moving[3])); err != nil {
		t.Errorf("insert of a moved key after the broken reload: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	stopLoad()

	// No client was dropped, and the load saw no error.
	for w, c := range append(conns, txA, other) {
		var one int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Errorf("connection %d was dropped: %v", w, err)
		}
	}
	for i, err := range loadErrs {
		if i == 0 && errors.Is(err, context.DeadlineExceeded) {
			logActivity(t, all)
			p.dumpGoroutines(t)
		}
		if i == 10 {
			t.Errorf("... and %d more errors", len(loadErrs)-10)
			break
		}
		t.Errorf("load error: %v", err)
	}

	// Where every row is, read on the primaries directly.
	at := map[int64][]string{}
	for _, sh := range all {
		rows, err := sh.Primary.Query(ctx, "SELECT id FROM customers")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			id, _ := strconv.ParseInt(r[0], 10, 64)
			at[id] = append(at[id], sh.Name)
		}
	}
	one := func(id string) string {
		t.Helper()
		v := at[key(id)]
		if len(v) != 1 {
			t.Errorf("key %s is on %v, want one shard", id, v)
			return ""
		}
		return v[0]
	}
	if got := one(moving[0]); got != txShard {
		t.Errorf("transaction A's first row (before the reload) is on %s, want %s", got, txShard)
	}
	if got := one(staying[0]); got != txShard {
		t.Errorf("transaction A's second row (after the reload) is on %s, want %s", got, txShard)
	}
	for _, k := range moving[1:4] {
		if got := one(k); got != "s3" {
			t.Errorf("key %s inserted after the reload is on %s, want s3 (the new map)", k, got)
		}
	}
	var ids []string
	var flat []insertRec
	for _, rs := range recs {
		for _, r := range rs {
			ids = append(ids, strconv.FormatInt(r.id, 10))
			flat = append(flat, r)
		}
	}
	oldAt := locateAll(t, oldCfg, "customers", ids)
	newAt := locateAll(t, newCfg, "customers", ids)
	var before, during, after, afterMoved, misses int
	for i, r := range flat {
		got := one(ids[i])
		switch {
		case r.insEnd.Before(tWrite):
			before++
			if got != oldAt[i] {
				t.Errorf("key %d inserted before the reload is on %s, the old map says %s", r.id, got, oldAt[i])
			}
		case r.insStart.After(tSeen):
			after++
			if got != newAt[i] {
				t.Errorf("key %d inserted after the reload is on %s, the new map says %s", r.id, got, newAt[i])
			}
			if newAt[i] != oldAt[i] {
				afterMoved++
			}
		default:
			during++
			if got != oldAt[i] && got != newAt[i] {
				t.Errorf("key %d inserted during the reload is on %s, neither map's %s or %s", r.id, got, oldAt[i], newAt[i])
			}
		}
		if !r.found {
			misses++
			// Only a key that moves, inserted under the old map and read
			// under the new one, may be missed.
			if oldAt[i] == newAt[i] || !r.insStart.Before(tSeen) || !r.readEnd.After(tWrite) {
				t.Errorf("key %d (%s -> %s) was not found right after its insert", r.id, oldAt[i], newAt[i])
			}
		}
	}
	rows := 0
	for _, v := range at {
		rows += len(v)
	}
	if want := len(flat) + 2 + 3; rows != want { // + transaction A, and three moved keys by hand
		t.Errorf("the shards hold %d rows; the clients inserted %d (+ %d by hand)", rows, len(flat), rows-len(flat))
	}
	t.Logf("load: %d inserts (%d before the reload, %d during, %d after of which %d moved to s3), %d read back missing",
		len(flat), before, during, after, afterMoved, misses)
	if before < 50 || after < 200 || afterMoved < 20 {
		t.Errorf("too little load around the reload to judge it: %d before, %d after (%d moved)", before, after, afterMoved)
	}
}

// TestReloadTransactionKeepsMap: a transaction open across a reload keeps
// the shard map it began with (docs/design.md: "a transaction keeps the
// snapshot it started with"; issue 4: "running transactions finish on the
// shard they started on"). It inserts a key that the new map moves to a new
// shard, the map is reloaded, it inserts a second such key and commits:
// both rows are on the old shard, and a statement after the commit follows
// the new map.
func TestReloadTransactionKeepsMap(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shards := startShards(t, "tk", []string{"s0", "s1", "s2", "s3"}, 0, reshardSchema)
	pc := proxyConfig{size: 2, shards: shards[:3], extra: reshardTables}
	p := startProxy(t, pc)
	pc.shards = shards
	dir := t.TempDir()
	oldCfg, newCfg := filepath.Join(dir, "old.yaml"), filepath.Join(dir, "new.yaml")
	oldText, err := os.ReadFile(p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	newText := pc.yaml(p.addr, p.admin)
	if err := os.WriteFile(oldCfg, oldText, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newCfg, []byte(newText), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = strconv.Itoa(i + 1)
	}
	oldAt, newAt := locateAll(t, oldCfg, "customers", keys), locateAll(t, newCfg, "customers", keys)
	var moving []string // keys that move from s0 to s3
	for i, k := range keys {
		if oldAt[i] == "s0" && newAt[i] == "s3" {
			moving = append(moving, k)
		}
	}
	if len(moving) < 3 {
		t.Fatalf("only %d of %d keys move from s0 to s3", len(moving), len(keys))
	}
	c := p.connect(t)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO customers (id, writer, seq) VALUES ("+moving[0]+", 0, 1)"); err != nil {
		t.Fatal(err)
	}
	reloads := strings.Count(p.log.String(), "configuration reloaded")
	writeConfig(t, p.cfg, newText)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "configuration reloaded", reloads+1, 10*time.Second)
	if _, err := tx.Exec(ctx, "INSERT INTO customers (id, writer, seq) VALUES ("+moving[1]+", 0, 2)"); err != nil {
		t.Fatalf("the transaction begun on s0 before the reload: a second key the new map moves to s3: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO customers (id, writer, seq) VALUES ("+moving[2]+", 0, 3)"); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"s0", "s0", "s3"} {
		for _, sh := range shards {
			n, err := sh.Primary.QueryValue(ctx, "SELECT count(*) FROM customers WHERE id = "+moving[i])
			if err != nil {
				t.Fatal(err)
			}
			if (n == "1") != (sh.Name == want) {
				t.Errorf("key %s: %s rows on %s, want it on %s only", moving[i], n, sh.Name, want)
			}
		}
	}
}
