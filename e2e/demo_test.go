package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/shardmap"
)

// demoBanner is what `shardwire demo` printed up to its "Press Ctrl-C" line.
type demoBanner struct {
	psqlURL string
	config  string
	dataDir string
	nodes   map[string][]string // shard -> primary address, then replicas
	text    string
}

var (
	demoPsqlRe  = regexp.MustCompile(`^\s*psql "(postgres://app:[^"@]+@[^"/]+/app)"\s*$`)
	demoURLRe   = regexp.MustCompile(`^\s*DATABASE_URL=(\S+)\s*$`)
	demoConfRe  = regexp.MustCompile(`^\s*config:\s+(\S+)\s*$`)
	demoDataRe  = regexp.MustCompile(`^\s*data:\s+(\S+) \(removed on exit\)\s*$`)
	demoNodesRe = regexp.MustCompile(`^\s*(?:nodes:)?\s*(s\d) primary (127\.0\.0\.1:\d+)((?:, replica 127\.0\.0\.1:\d+)*)\s*$`)
	demoReplRe  = regexp.MustCompile(`replica (127\.0\.0\.1:\d+)`)
)

// TestDemo runs `shardwire demo` as a user would: psql through it answers
// queries on a replicated and a sharded table, every sample row sits on the
// shard the demo's own config places it on (and is on that shard's replica
// too), and SIGINT leaves no server, port or folder behind.
func TestDemo(t *testing.T) {
	t.Parallel()
	psql := tool(t, "psql")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))

	cmd := exec.Command(swBinary, "demo", "--listen", listen, "--admin-listen", admin)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	// Lines go to out and, while readDemoBanner wants them, to lines; a
	// reader that stopped listening never blocks the demo's stdout.
	lines := make(chan string, 1000)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(&out, sc.Text())
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	// exited is closed once the demo has exited; waitErr is then its status.
	exited := make(chan struct{})
	var waitErr error
	go func() {
		<-scanned // Wait closes the pipe: read it all first
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// Let the demo clean up after itself; SIGKILL only if it hangs.
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	defer func() {
		if t.Failed() {
			t.Logf("demo stdout:\n%s\ndemo stderr:\n%s", out.String(), stderr.String())
		}
	}()

	b := readDemoBanner(t, &out, lines, exited)
	if !strings.HasPrefix(b.dataDir, filepath.Clean(os.TempDir())+string(filepath.Separator)) {
		t.Errorf("data folder %s is not under %s", b.dataDir, os.TempDir())
	}
	if filepath.Dir(b.config) != b.dataDir {
		t.Errorf("config %s is not in the data folder %s", b.config, b.dataDir)
	}
	if len(b.nodes) != 2 || len(b.nodes["s0"]) != 2 || len(b.nodes["s1"]) != 2 {
		t.Fatalf("want shards s0 and s1 with a primary and a replica each, got %v", b.nodes)
	}
	if !strings.Contains(b.psqlURL, "@"+listen+"/") {
		t.Errorf("psql URL %s does not point at --listen %s", b.psqlURL, listen)
	}
	if !strings.Contains(b.text, "http://"+admin+"/metrics") {
		t.Errorf("banner has no metrics URL http://%s/metrics", admin)
	}

	runPsql := func(sql string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := exec.CommandContext(ctx, psql, b.psqlURL, "-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql)
		c.Env = append(cleanPGEnv(), "PGCONNECT_TIMEOUT=10")
		o, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("psql -c %q: %v\n%s", sql, err, o)
		}
		return strings.TrimSpace(string(o))
	}
	// countries is replicated: the same ten rows whichever shard answers.
	if got := runPsql("SELECT count(*) FROM countries"); got != "10" {
		t.Errorf("countries through the proxy: got %q, want 10", got)
	}
	// Customer 42 is on s0 (see docs/sharding.md's worked example: orders
	// key 42 hashes to s0, and customers use the same ring and key type).
	if got := runPsql("SELECT name FROM customers WHERE id = 42"); got != "Frances Dijkstra" {
		t.Errorf("customer 42 through the proxy: got %q, want Frances Dijkstra", got)
	}
	if got := runPsql("SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id = 42"); got != "1" {
		t.Errorf("orders of customer 42 through the proxy: got %q, want 1", got)
	}

	// Where the rows are, checked on the servers themselves against the
	// demo's own config.
	loc := exec.Command(swBinary, "locate", "-c", b.config, "customers", "42")
	if o, err := loc.CombinedOutput(); err != nil || strings.TrimSpace(string(o)) != "s0" {
		t.Errorf("shardwire locate -c %s customers 42: %q, %v; want s0", b.config, o, err)
	}
	cfg, err := config.Load(b.config)
	if err != nil {
		t.Fatal(err)
	}
	m, err := shardmap.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	appPassword := cfg.Users[0].Password
	total := map[string]int{}
	for shard, addrs := range b.nodes {
		for i, addr := range addrs {
			role := "primary"
			if i > 0 {
				role = "replica"
			}
			counts := checkDemoNode(t, m, shard, role, addr, appPassword)
			if i == 0 {
				for table, n := range counts {
					total[table] += n
				}
			}
		}
	}
	want := map[string]int{"customers": 50, "stores": 8, "events": 24, "countries": 20}
	for table, n := range want {
		if total[table] != n {
			t.Errorf("%s: %d rows over both primaries, want %d", table, total[table], n)
		}
	}
	if total["orders"] < 50 {
		t.Errorf("orders: %d rows over both primaries, want at least 50", total["orders"])
	}

	// Ctrl-C: exit 0, nothing left.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("demo exited with %v after SIGINT, want status 0", waitErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("demo did not exit within 60s of SIGINT")
	}
	if !strings.Contains(out.String(), "stopped") {
		t.Errorf("no goodbye line after SIGINT")
	}
	if _, err := os.Stat(b.dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data folder %s still exists after exit (stat: %v)", b.dataDir, err)
	}
	left := []string{listen, admin}
	for _, addrs := range b.nodes {
		left = append(left, addrs...)
	}
	for _, addr := range left {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("something still listens on %s after the demo exited", addr)
		}
	}
	if pids := processesMentioning(b.dataDir); len(pids) > 0 {
		t.Errorf("processes still running from %s: %v", b.dataDir, pids)
	}
}

// readDemoBanner reads stdout until the banner is complete.
func readDemoBanner(t *testing.T, out *syncBuffer, lines <-chan string, exited <-chan struct{}) demoBanner {
	t.Helper()
	b := demoBanner{nodes: map[string][]string{}}
	var text strings.Builder
	deadline := time.After(3 * time.Minute)
	ready := false
	for {
		select {
		case line := <-lines:
			text.WriteString(line + "\n")
			if strings.HasPrefix(line, "shardwire is ready on ") {
				ready = true
			}
			if m := demoPsqlRe.FindStringSubmatch(line); m != nil {
				b.psqlURL = m[1]
			}
			if m := demoURLRe.FindStringSubmatch(line); m != nil && m[1] != b.psqlURL {
				t.Errorf("DATABASE_URL %s differs from the psql URL %s", m[1], b.psqlURL)
			}
			if m := demoConfRe.FindStringSubmatch(line); m != nil {
				b.config = m[1]
			}
			if m := demoDataRe.FindStringSubmatch(line); m != nil {
				b.dataDir = m[1]
			}
			if m := demoNodesRe.FindStringSubmatch(line); m != nil {
				b.nodes[m[1]] = []string{m[2]}
				for _, r := range demoReplRe.FindAllStringSubmatch(m[3], -1) {
					b.nodes[m[1]] = append(b.nodes[m[1]], r[1])
				}
			}
			if strings.HasPrefix(line, "Press Ctrl-C") {
				if !ready || b.psqlURL == "" || b.config == "" || b.dataDir == "" {
					t.Fatalf("incomplete banner (ready=%v url=%q config=%q data=%q):\n%s", ready, b.psqlURL, b.config, b.dataDir, text.String())
				}
				b.text = text.String()
				return b
			}
		case <-exited:
			t.Fatalf("demo exited before it was ready:\n%s", out.String())
		case <-deadline:
			t.Fatalf("demo not ready after 3 minutes:\n%s", out.String())
		}
	}
}

// checkDemoNode connects to a node directly and checks that each row of a
// sharded table belongs there by the map; it returns the rows per table.
func checkDemoNode(t *testing.T, m *shardmap.Map, shard, role, addr, password string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:%s@%s/app?sslmode=disable", password, addr))
	if err != nil {
		t.Fatalf("%s %s (%s): %v", shard, role, addr, err)
	}
	defer conn.Close(context.Background())
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		t.Fatal(err)
	}
	if inRecovery != (role == "replica") {
		t.Errorf("%s %s (%s): pg_is_in_recovery = %v", shard, role, addr, inRecovery)
	}
	keys := map[string]string{
		"customers": "id::text", "orders": "customer_id::text", "stores": "region", "events": "created_at::text", "countries": "code",
	}
	counts := map[string]int{}
	for table, key := range keys {
		rows, err := conn.Query(ctx, "SELECT "+key+" FROM "+table)
		if err != nil {
			t.Fatalf("%s %s: %v", shard, role, err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s %s: %v", shard, role, err)
		}
		counts[table] = len(vals)
		if len(vals) == 0 {
			t.Errorf("%s %s: no rows in %s", shard, role, table)
		}
		tbl, _ := m.Table(table)
		if tbl.Replicated() {
			continue
		}
		for _, v := range vals {
			if got, err := tbl.LocateText(v); err != nil || got != shard {
				t.Errorf("%s %s: %s row with key %s belongs on %q (%v)", shard, role, table, v, got, err)
			}
		}
	}
	if counts["countries"] != 10 {
		t.Errorf("%s %s: %d countries, want 10 (replicated)", shard, role, counts["countries"])
	}
	return counts
}

// cleanPGEnv is our environment without libpq's PG* variables.
func cleanPGEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// processesMentioning lists the pids whose command line contains s (a
// postmaster's command line holds its data directory).
func processesMentioning(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}
