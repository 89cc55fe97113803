package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shardwire/shardwire/pgcluster"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue finds one sample in a Prometheus exposition.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// adminPsql runs psql against the admin console as the ops user.
func (p *proxyProc) adminPsql(t *testing.T, sql string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool(t, "psql"), "-XAt", "-F", "|", "-U", opsUser, "-d", "shardwire", "-c", sql)
	cmd.Env = append(p.pgEnv(), "PGPASSWORD="+opsPassword)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestMetricsProbesAndAdminConsole(t *testing.T) {
	t.Parallel()
	sh := startShard(t, "adm", 1, "scram-sha-256")
	p := startProxy(t, proxyConfig{size: 4, shards: []*pgcluster.Shard{sh}, extra: routingExtra})
	base := "http://" + p.admin
	if code, body := httpGet(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := httpGet(t, base+"/readyz")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, before := httpGet(t, base+"/metrics")
	primary := fmt.Sprintf(`shardwire_queries_total{node="%s",role="primary",shard="adm"}`, sh.Primary.Addr())
	replica := fmt.Sprintf(`shardwire_queries_total{node="%s",role="replica",shard="adm"}`, sh.Replicas[0].Addr())
	ctx := context.Background()
	w := p.connect(t)
	r := p.connect(t)
	if _, err := w.Exec(ctx, "CREATE TABLE m (x int)"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := w.Exec(ctx, "INSERT INTO m VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 7; i++ {
		if _, err := r.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = r.Exec(ctx, "SELECT * FROM no_such_table")
	_, after := httpGet(t, base+"/metrics")
	if d := metricValue(t, after, primary) - metricValue(t, before, primary); d != 11 {
		t.Errorf("primary queries moved by %v, want 11 (CREATE + 10 INSERT)\n", d)
	}
	if d := metricValue(t, after, replica) - metricValue(t, before, replica); d != 8 {
		t.Errorf("replica queries moved by %v, want 8 (7 + the failing one)", d)
	}
	if v := metricValue(t, after, `shardwire_errors_total{class="42"}`); v != 1 {
		t.Errorf("errors of class 42: %v, want 1", v)
	}
	for _, want := range []string{"shardwire_pool_connections{", "shardwire_node_up{", "shardwire_query_duration_seconds_bucket{", "shardwire_client_connections "} {
		if !strings.Contains(after, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The admin console through psql.
	out, err := p.adminPsql(t, "SHOW NODES")
	if err != nil {
		t.Fatalf("SHOW NODES: %v\n%s\n%s", err, out, p.log.String())
	}
	if !strings.Contains(out, sh.Primary.Addr()+"|primary|primary|up") || !strings.Contains(out, sh.Replicas[0].Addr()+"|replica|replica|up") {
		t.Fatalf("SHOW NODES:\n%s", out)
	}
	for _, cmd := range []string{"SHOW POOLS", "SHOW SHARDS", "SHOW CLIENTS", "SHOW STATS", "SHOW CONFIG"} {
		if out, err := p.adminPsql(t, cmd); err != nil || strings.TrimSpace(out) == "" {
			t.Errorf("%s: %v %q", cmd, err, out)
		}
	}
	if out, err := p.adminPsql(t, "SHOW NONSENSE"); err == nil || !strings.Contains(out, "unknown admin command") {
		t.Errorf("SHOW NONSENSE: %v %q", err, out)
	}
	// A non-admin user is refused.
	cmd := exec.Command(tool(t, "psql"), "-XAt", "-d", "shardwire", "-c", "SHOW NODES")
	cmd.Env = p.pgEnv()
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "admin console") {
		t.Errorf("app user got into the admin console: %v %s", err, out)
	}

	// PAUSE holds a new transaction; RESUME releases it.
	if out, err := p.adminPsql(t, "PAUSE adm"); err != nil {
		t.Fatalf("PAUSE: %v %s", err, out)
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.Exec(ctx, "INSERT INTO m VALUES (100)")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a write ran while paused: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if out, err := p.adminPsql(t, "RESUME adm"); err != nil {
		t.Fatalf("RESUME: %v %s", err, out)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held write did not run after RESUME")
	}

	// /readyz turns not-ready when the shard's primary dies, and back.
	if err := sh.Primary.Stop(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, body := httpGet(t, base+"/readyz")
		if code == 503 {
			t.Logf("/readyz: %s", strings.TrimSpace(body))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz stayed ready with the primary down")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := sh.Primary.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		if code, _ := httpGet(t, base+"/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not come back")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReload: a broken file is refused with FILE:LINE and the proxy keeps
// serving; a valid change applies without dropping clients.
func TestReload(t *testing.T) {
	t.Parallel()
	sh := startShard(t, "reload", 1, "scram-sha-256")
	p := startProxy(t, proxyConfig{size: 4, shards: []*pgcluster.Shard{sh}, extra: routingExtra})
	ctx := context.Background()
	c := p.connect(t)
	good, err := os.ReadFile(p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Broken: an unknown key on line 3, and a bad value.
	broken := strings.Replace(string(good), "database: app\n", "database: app\nbogus_key: 1\n", 1)
	if err := os.WriteFile(p.cfg, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log.String(), "shardwire.yaml:4: field bogus_key not found") {
		if time.Now().After(deadline) {
			t.Fatalf("no FILE:LINE error logged for the broken file:\n%s", p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("the proxy stopped serving after a broken reload: %v", err)
	}
	// Valid: reads to the primary only; the change applies live.
	fixed := strings.Replace(string(good), "reads: replicas", "reads: primary", 1)
	if err := os.WriteFile(p.cfg, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	// No signal: the file watcher notices.
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(p.log.String(), "configuration reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("the changed file was not reloaded:\n%s", p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	fresh := p.connect(t)
	for i := 0; i < 10; i++ {
		var port int
		if err := fresh.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port); err != nil {
			t.Fatal(err)
		}
		if port != sh.Primary.Port {
			t.Fatalf("with routing.reads: primary a read went to port %d", port)
		}
	}
	// The first client was never dropped.
	if err := c.QueryRow(ctx, "SELECT 2").Scan(&one); err != nil || one != 2 {
		t.Fatalf("a client was dropped by the reload: %v", err)
	}
	_, body := httpGet(t, "http://"+p.admin+"/metrics")
	if metricValue(t, body, `shardwire_shardmap_reloads_total{result="error"}`) < 1 || metricValue(t, body, `shardwire_shardmap_reloads_total{result="ok"}`) < 1 {
		t.Errorf("reload counters not moved")
	}
}
