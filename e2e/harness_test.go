package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardwire/shardwire/pgcluster"
)

const (
	appUser     = "app"
	appPassword = "app-secret"
	opsUser     = "ops"
	opsPassword = "ops-secret"
	appDB       = "app"
)

var swBinary string // the shardwire binary under test

func TestMain(m *testing.M) {
	if err := pgcluster.PostgresAvailable(); err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "e2e: PostgreSQL is required in CI:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "e2e: skipping, PostgreSQL not found:", err)
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "shardwire-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// SHARDWIRE_E2E_BINARY tests a given binary (a release build, say)
	// instead of building one with the race detector.
	swBinary = os.Getenv("SHARDWIRE_E2E_BINARY")
	if swBinary == "" {
		swBinary = filepath.Join(dir, "shardwire")
		build := exec.Command("go", "build", "-race", "-o", swBinary, "../cmd/shardwire")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: building shardwire:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// startShard starts a shard with the test users and database.
func startShard(t testing.TB, name string, replicas int, auth string) *pgcluster.Shard {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh, err := pgcluster.StartShard(ctx, name, replicas, pgcluster.Options{
		Users:      []pgcluster.User{{Name: appUser, Password: appPassword}, {Name: opsUser, Password: opsPassword}},
		Database:   appDB,
		AuthMethod: auth,
		Logf:       t.Logf,
	})
	if err != nil {
		t.Fatalf("start shard %s: %v", name, err)
	}
	t.Cleanup(func() { _ = sh.Close() })
	return sh
}

// createSchema runs schema on the shard's primary as the app user, who
// then owns the tables.
func createSchema(t testing.TB, sh *pgcluster.Shard, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, sh.Primary.DSN(appUser, appPassword, appDB))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, schema); err != nil {
		t.Fatalf("schema on %s: %v", sh.Name, err)
	}
}

// startShards starts one shard per name (its pgcluster name prefix+name,
// its map name name), each with replicas and schema created on its primary.
func startShards(t testing.TB, prefix string, names []string, replicas int, schema string) []*pgcluster.Shard {
	t.Helper()
	var shards []*pgcluster.Shard
	for _, name := range names {
		sh := startShard(t, prefix+name, replicas, "scram-sha-256")
		sh.Name = name
		createSchema(t, sh, schema)
		shards = append(shards, sh)
	}
	return shards
}

// proxyProc is a running shardwire process.
type proxyProc struct {
	cmd     *exec.Cmd
	addr    string
	admin   string
	cfg     string
	log     *syncBuffer
	done    chan struct{}
	exitErr error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proxyConfig is the part of a config the tests vary.
type proxyConfig struct {
	mode       string // session | transaction
	size       int
	auth       string
	acquire    string
	extra      string // more YAML, appended
	shards     []*pgcluster.Shard
	maxMessage string
	idle       string   // limits.client_idle_timeout
	idleTx     string   // limits.idle_transaction_timeout
	pool       string   // more pool: keys, indented YAML lines
	env        []string // extra environment of the shardwire process
}

func (pc proxyConfig) yaml(listen, admin string) string {
	if pc.mode == "" {
		pc.mode = "transaction"
	}
	if pc.size == 0 {
		pc.size = 10
	}
	if pc.auth == "" {
		pc.auth = "scram-sha-256"
	}
	if pc.acquire == "" {
		pc.acquire = "5s"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\nadmin_listen: %s\ndatabase: %s\n", listen, admin, appDB)
	fmt.Fprintf(&b, "users:\n  - name: %s\n    password: ${E2E_APP_PASSWORD}\n  - name: %s\n    password: %s\n    admin: true\n", appUser, opsUser, opsPassword)
	fmt.Fprintf(&b, "auth_method: %s\n", pc.auth)
	fmt.Fprintf(&b, "pool:\n  mode: %s\n  size: %d\n  max_clients: 1000\n  acquire_timeout: %s\n", pc.mode, pc.size, pc.acquire)
	b.WriteString(pc.pool)
	b.WriteString("limits:\n  shutdown_timeout: 10s\n")
	if pc.maxMessage != "" {
		fmt.Fprintf(&b, "  max_message_size: %s\n", pc.maxMessage)
	}
	if pc.idle != "" {
		fmt.Fprintf(&b, "  client_idle_timeout: %s\n", pc.idle)
	}
	if pc.idleTx != "" {
		fmt.Fprintf(&b, "  idle_transaction_timeout: %s\n", pc.idleTx)
	}
	b.WriteString("shards:\n")
	for _, sh := range pc.shards {
		fmt.Fprintf(&b, "  - name: %s\n    primary: %s\n", sh.Name, sh.Primary.Addr())
		if len(sh.Replicas) > 0 {
			var rs []string
			for _, r := range sh.Replicas {
				rs = append(rs, r.Addr())
			}
			fmt.Fprintf(&b, "    replicas: [%s]\n", strings.Join(rs, ", "))
		}
	}
	fmt.Fprintf(&b, "default_shard: %s\n", pc.shards[0].Name)
	b.WriteString(pc.extra)
	return b.String()
}

// startProxy writes the config and runs shardwire until the test ends.
func startProxy(t testing.TB, pc proxyConfig) *proxyProc {
	t.Helper()
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfgPath := filepath.Join(dir, "shardwire.yaml")
	if err := os.WriteFile(cfgPath, []byte(pc.yaml(listen, admin)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &proxyProc{addr: listen, admin: admin, cfg: cfgPath, log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(swBinary, "run", "-c", cfgPath, "--log-level", "debug")
	p.cmd.Env = append(append(os.Environ(), "E2E_APP_PASSWORD="+appPassword), pc.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("shardwire log:\n%s", p.log.String())
		}
		if strings.Contains(p.log.String(), "DATA RACE") || strings.Contains(p.log.String(), "panic") {
			t.Errorf("shardwire reported a race or panic:\n%s", p.log.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-p.done:
			t.Fatalf("shardwire exited: %v\n%s", p.exitErr, p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("shardwire did not listen on %s:\n%s", listen, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// stop sends SIGTERM and waits for the process to exit.
func (p *proxyProc) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("shardwire did not exit within 30s of SIGTERM")
	}
}

func (p *proxyProc) dsn(user, password string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, password, p.addr, appDB)
}

func (p *proxyProc) connect(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.dsn(appUser, appPassword))
	if err != nil {
		t.Fatalf("connect through shardwire: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// pgEnv is the environment for psql/pgbench pointed at the proxy.
func (p *proxyProc) pgEnv() []string {
	host, port, _ := net.SplitHostPort(p.addr)
	return append(os.Environ(), "PGHOST="+host, "PGPORT="+port, "PGUSER="+appUser, "PGPASSWORD="+appPassword, "PGDATABASE="+appDB, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
}

// run runs a command with the proxy's libpq environment and returns its output.
func (p *proxyProc) run(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = p.pgEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		bin, berr := pgcluster.BinDir()
		if berr == nil {
			if _, serr := os.Stat(filepath.Join(bin, name)); serr == nil {
				return filepath.Join(bin, name)
			}
		}
		t.Fatalf("%s not found: %v", name, err)
	}
	return path
}
