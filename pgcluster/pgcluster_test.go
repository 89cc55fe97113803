package pgcluster

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// requirePostgres skips without server binaries, except under CI, which
// installs them and so must never skip.
func requirePostgres(t testing.TB) {
	t.Helper()
	if err := PostgresAvailable(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run the Postgres tests: %v", err)
		}
		t.Skipf("no PostgreSQL: %v", err)
	}
}

// testOptions leaves Dir empty, so shards live in /dev/shm where available.
func testOptions(t testing.TB) Options {
	return Options{
		Users:    []User{{Name: "app", Password: "app secret'1"}, {Name: "ops", Password: "ops-pw", Superuser: true}},
		Database: "app",
		Logf:     t.Logf,
	}
}

func startShard(t testing.TB, replicas int, opts Options) *Shard {
	t.Helper()
	requirePostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := StartShard(ctx, "s0", replicas, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustValue(t *testing.T, n *Node, sql string, args ...any) string {
	t.Helper()
	v, err := n.QueryValue(testCtx(t), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestShardReplicates(t *testing.T) {
	t.Parallel()
	s := startShard(t, 2, testOptions(t))
	ctx := testCtx(t)

	if len(s.Replicas) != 2 || s.Primary == nil {
		t.Fatalf("got primary %v and %d replicas", s.Primary, len(s.Replicas))
	}
	ports := map[int]bool{}
	for _, n := range s.Nodes() {
		if ports[n.Port] {
			t.Fatalf("port %d used twice", n.Port)
		}
		ports[n.Port] = true
	}
	if got := mustValue(t, s.Primary, "SELECT pg_is_in_recovery()"); got != "f" {
		t.Fatalf("primary in recovery = %s", got)
	}
	got := mustValue(t, s.Primary, "SELECT string_agg(application_name || ':' || state, ',' ORDER BY application_name) FROM pg_stat_replication")
	if want := "s0-replica1:streaming,s0-replica2:streaming"; got != want {
		t.Fatalf("pg_stat_replication = %q, want %q", got, want)
	}

	if err := s.Primary.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one')"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Replicas {
		if got := mustValue(t, r, "SELECT v FROM t WHERE id = 1"); got != "one" {
			t.Errorf("%s: v = %q, want one", r.Name, got)
		}
		if got := mustValue(t, r, "SELECT pg_is_in_recovery()"); got != "t" {
			t.Errorf("%s: in recovery = %s", r.Name, got)
		}
		if err := r.Exec(ctx, "INSERT INTO t VALUES (2, 'two')"); err == nil {
			t.Errorf("%s accepted a write", r.Name)
		}
	}
}

func TestKillAndPromote(t *testing.T) {
	t.Parallel()
	s := startShard(t, 2, testOptions(t))
	ctx := testCtx(t)
	if err := s.Primary.Exec(ctx, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	old := s.Primary
	pid := postmasterPID(t, old)
	kids := childPIDs(pid)
	if len(kids) == 0 {
		t.Fatalf("postmaster %d has no children", pid)
	}
	if err := old.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(kids, pid) {
		if processAlive(p) {
			t.Errorf("process %d survived Kill", p)
		}
	}
	if old.Running() {
		t.Error("killed node reports running")
	}
	if _, err := old.QueryValue(ctx, "SELECT 1"); err == nil {
		t.Error("killed primary still answers")
	}

	promoted, other := s.Replicas[0], s.Replicas[1]
	if err := promoted.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if in, err := promoted.InRecovery(ctx); err != nil || in {
		t.Fatalf("after Promote: in recovery %v, %v", in, err)
	}
	if err := promoted.Exec(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatalf("write on promoted replica: %v", err)
	}
	if err := other.Follow(ctx, promoted); err != nil {
		t.Fatal(err)
	}
	if err := other.CatchUp(ctx, promoted); err != nil {
		t.Fatal(err)
	}
	if got := mustValue(t, other, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"); got != "1,2" {
		t.Fatalf("replica following the new primary has ids %q, want 1,2", got)
	}
	if got := mustValue(t, other, "SELECT timeline_id FROM pg_control_checkpoint()"); got == "" {
		t.Fatal("no timeline")
	}

	// The old primary restarts after the crash (crash recovery) with its data.
	if err := old.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustValue(t, old, "SELECT count(*) FROM t"); got != "1" {
		t.Fatalf("old primary after crash recovery has %s rows, want 1", got)
	}
	// A promoted node stays a primary across a restart.
	if err := promoted.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	if err := promoted.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if in, err := promoted.InRecovery(ctx); err != nil || in {
		t.Fatalf("promoted node after restart: in recovery %v, %v", in, err)
	}
}

func postmasterPID(t *testing.T, n *Node) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestStopStartReplica(t *testing.T) {
	t.Parallel()
	s := startShard(t, 1, testOptions(t))
	ctx := testCtx(t)
	r := s.Replicas[0]
	if err := s.Primary.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
		t.Fatal(err)
	}
	for i, mode := range []string{"smart", "fast", "immediate"} {
		if err := r.Stop(ctx, mode); err != nil {
			t.Fatalf("stop %s: %v", mode, err)
		}
		if r.Running() {
			t.Fatalf("running after stop %s", mode)
		}
		if _, err := r.QueryValue(ctx, "SELECT 1"); err == nil {
			t.Fatalf("stopped (%s) replica answers", mode)
		}
		// Written while the replica is down; it must arrive after the restart.
		if err := s.Primary.Exec(ctx, "INSERT INTO t VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err != nil {
			t.Fatalf("start after %s stop: %v", mode, err)
		}
		if err := r.CatchUp(ctx, s.Primary); err != nil {
			t.Fatal(err)
		}
		if got, want := mustValue(t, r, "SELECT count(*) FROM t"), strconv.Itoa(i+1); got != want {
			t.Fatalf("after %s stop: %s rows on the replica, want %s", mode, got, want)
		}
	}
	if err := r.Stop(ctx, "sideways"); err == nil {
		t.Fatal("unknown stop mode accepted")
	}
	if err := r.Start(ctx); err == nil {
		t.Fatal("Start of a running node succeeded")
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		auth       string
		storedAs   string // prefix of rolpassword
		wrongFails bool
	}{
		{"scram-sha-256", "SCRAM-SHA-256$", true},
		{"md5", "md5", true},
		{"trust", "SCRAM-SHA-256$", false},
	}
	for _, tt := range tests {
		t.Run(tt.auth, func(t *testing.T) {
			t.Parallel()
			opts := testOptions(t)
			opts.AuthMethod = tt.auth
			s := startShard(t, 0, opts)
			ctx := testCtx(t)

			if got := mustValue(t, s.Primary, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'"); !strings.HasPrefix(got, tt.storedAs) {
				t.Errorf("stored password %.14q..., want prefix %q", got, tt.storedAs)
			}
			conn, err := pgx.Connect(ctx, s.Primary.DSN("app", "app secret'1", "app"))
			if err != nil {
				t.Fatalf("login with the right password: %v", err)
			}
			var user, db string
			if err := conn.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
				t.Fatal(err)
			}
			if user != "app" || db != "app" {
				t.Errorf("connected as %s to %s", user, db)
			}
			// The first user owns the database and may create tables in it.
			if _, err := conn.Exec(ctx, "CREATE TABLE mine (id int)"); err != nil {
				t.Errorf("app cannot create a table: %v", err)
			}
			_ = conn.Close(ctx)

			conn, err = pgx.Connect(ctx, s.Primary.DSN("app", "wrong", "app"))
			if !tt.wrongFails {
				if err != nil {
					t.Fatalf("trust refused a login: %v", err)
				}
				_ = conn.Close(ctx)
				return
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Fatalf("wrong password: err %v, want SQLSTATE 28P01", err)
			}
		})
	}
}

func TestStartShardsParallel(t *testing.T) {
	t.Parallel()
	requirePostgres(t)
	ctx := testCtx(t)
	opts := testOptions(t)
	c, err := StartShards(ctx, []string{"s0", "s1"}, 1, opts)
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{c.Shards[0].Dir, c.Shards[1].Dir}
	var nodes []*Node
	for _, s := range c.Shards {
		nodes = append(nodes, s.Nodes()...)
	}
	s0, s1 := c.Shard("s0"), c.Shard("s1")
	if s0 == nil || s1 == nil || c.Shard("s2") != nil {
		t.Fatalf("Shard lookup: %v %v %v", s0, s1, c.Shard("s2"))
	}
	if err := s0.Primary.Exec(ctx, "CREATE TABLE only_s0 (id int)"); err != nil {
		t.Fatal(err)
	}
	if got := mustValue(t, s1.Primary, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_s0'"); got != "0" {
		t.Errorf("a table created on s0 shows on s1")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", d, err)
		}
	}
	for _, n := range nodes {
		if n.Running() {
			t.Errorf("%s still running after Close", n.Name)
		}
	}
	if _, err := StartShards(ctx, []string{"a", "a"}, 0, opts); err == nil {
		t.Error("duplicate shard names accepted")
	}
}

func TestStartShardRejects(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	tests := []struct {
		name     string
		replicas int
		opts     Options
	}{
		{"", 0, Options{}},
		{"a/b", 0, Options{}},
		{"s", -1, Options{}},
		{"s", 0, Options{AuthMethod: "password"}},
		{"s", 0, Options{Users: []User{{Name: "postgres"}}}},
		{"s", 0, Options{Users: []User{{Name: ""}}}},
	}
	for _, tt := range tests {
		if s, err := StartShard(ctx, tt.name, tt.replicas, tt.opts); err == nil {
			_ = s.Close()
			t.Errorf("StartShard(%q, %d, %+v) succeeded", tt.name, tt.replicas, tt.opts)
		}
	}
}

func TestStartFailureCleansUp(t *testing.T) {
	t.Parallel()
	requirePostgres(t)
	ctx := testCtx(t)
	opts := testOptions(t)
	// Unique names, to look for leftovers in the shared scratch directory.
	bad, good := "bad"+randomHex(4), "good"+randomHex(4)
	leftovers := func() []string {
		var out []string
		for _, n := range []string{bad, good} {
			m, _ := filepath.Glob(filepath.Join(scratchDir(), "pgcluster-"+n+"-*"))
			out = append(out, m...)
		}
		return out
	}

	opts.Settings = map[string]string{"shared_buffers": "plenty"}
	_, err := StartShard(ctx, bad, 1, opts)
	if err == nil {
		t.Fatal("a server with shared_buffers = plenty started")
	}
	// The error carries the server's own words from its log.
	if !strings.Contains(err.Error(), `invalid value for parameter "shared_buffers"`) {
		t.Errorf("error lacks the log's reason:\n%v", err)
	}
	if l := leftovers(); len(l) != 0 {
		t.Errorf("failed start left %v", l)
	}

	// One shard of several failing closes the others.
	opts.Settings = nil
	if _, err := StartShards(ctx, []string{good, "bad/name"}, 1, opts); err == nil {
		t.Fatal("StartShards with a bad name succeeded")
	}
	if l := leftovers(); len(l) != 0 {
		t.Errorf("failed StartShards left %v", l)
	}
}

// TestDirUnderTempDir starts a shard below a t.TempDir(), which is 0700
// root when tests run as root: it must be opened to the postgres user.
func TestDirUnderTempDir(t *testing.T) {
	t.Parallel()
	opts := testOptions(t)
	opts.Dir = filepath.Join(t.TempDir(), "deeper")
	if err := os.Mkdir(opts.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := startShard(t, 0, opts)
	if !strings.HasPrefix(s.Dir, opts.Dir+"/") {
		t.Errorf("shard dir %s is not under %s", s.Dir, opts.Dir)
	}
	if got := mustValue(t, s.Primary, "SELECT current_setting('data_directory')"); got != s.Primary.DataDir {
		t.Errorf("data_directory = %s, want %s", got, s.Primary.DataDir)
	}
	// A socket path must fit in 107 bytes; a long Dir moves the sockets to a
	// directory of their own, which a later process sweeps if we crash.
	if len(s.Primary.SocketDir) > 60 {
		t.Errorf("socket directory %s is long", s.Primary.SocketDir)
	}
	if s.Primary.ownSocketDir {
		if _, err := os.Stat(filepath.Join(s.Primary.SocketDir, ownerFile)); err != nil {
			t.Errorf("own socket directory has no owner file: %v", err)
		}
	}
}

func TestEnsureReachable(t *testing.T) {
	t.Parallel()
	u, err := serverUser()
	if err != nil || !u.asRoot {
		t.Skip("only meaningful as root")
	}
	d := filepath.Join(t.TempDir(), "a", "b")
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := ensureReachable(u, d); err != nil {
		t.Fatal(err)
	}
	for p := d; strings.HasPrefix(p, os.TempDir()+"/"); p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			t.Errorf("%s is %v, not traversable by others", p, st.Mode().Perm())
		}
	}
	// Outside the temporary directory nothing is changed: /root is the
	// classic 0700 home of root.
	if st, err := os.Stat("/root"); err == nil && st.Mode().Perm()&0o001 == 0 {
		if err := ensureReachable(u, "/root"); err == nil {
			t.Error("ensureReachable opened /root")
		}
	}
}

func TestReplayTarget(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want uint64 }{
		{0x3000100, 0x3000100},             // mid-page
		{0x3000000 + 8192 + 24, 0x3002000}, // past a short page header
		{0x3000000 + 40, 0x3000000},        // past a segment's long header
		{0x3000000 + 8192 + 40, 0x3000000 + 8192 + 40},
		{0x3000000 + 24, 0x3000000 + 24}, // inside a long header: not a record end, left alone
	}
	for _, tt := range tests {
		if got := replayTarget(tt.in); got != tt.want {
			t.Errorf("replayTarget(%#x) = %#x, want %#x", tt.in, got, tt.want)
		}
	}
}

func TestParseLSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0/0", 0, true},
		{"16/B374D848", 0x16B374D848, true},
		{"FFFFFFFF/FFFFFFFF", 1<<64 - 1, true},
		{"", 0, false},
		{"12", 0, false},
		{"x/1", 0, false},
		{"1/100000000", 0, false},
	}
	for _, tt := range tests {
		got, err := parseLSN(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseLSN(%q) = %#x, %v; want %#x, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestConnValueAndLiteral(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, conn, lit string }{
		{"plain", "plain", "'plain'"},
		{"", "''", "''"},
		{"a b", "'a b'", "'a b'"},
		{`it's\`, `'it\'s\\'`, `'it''s\'`},
	}
	for _, tt := range tests {
		if got := connValue(tt.in); got != tt.conn {
			t.Errorf("connValue(%q) = %s, want %s", tt.in, got, tt.conn)
		}
		if got := quoteLiteral(tt.in); got != tt.lit {
			t.Errorf("quoteLiteral(%q) = %s, want %s", tt.in, got, tt.lit)
		}
	}
}

func TestSortVersionDirs(t *testing.T) {
	t.Parallel()
	in := []string{"/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/x/bin", "/usr/lib/postgresql/16/bin"}
	want := "/usr/lib/postgresql/16/bin /usr/lib/postgresql/15/bin /usr/lib/postgresql/9.6/bin /usr/lib/postgresql/x/bin"
	if got := strings.Join(sortVersionDirs(in), " "); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestDSN(t *testing.T) {
	t.Parallel()
	n := &Node{Port: 25432, SocketDir: "/tmp/pg s"}
	if got, want := n.DSN("app", "p@ss/w:rd", "app"), "postgres://app:p%40ss%2Fw%3Ard@127.0.0.1:25432/app?sslmode=disable"; got != want {
		t.Errorf("DSN = %s, want %s", got, want)
	}
	cfg, err := pgx.ParseConfig(n.DSN("app", "p@ss/w:rd", "app"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != "p@ss/w:rd" || cfg.User != "app" || cfg.Port != 25432 {
		t.Errorf("DSN parses to user %q password %q port %d", cfg.User, cfg.Password, cfg.Port)
	}
	cfg, err = pgx.ParseConfig(n.SuperuserDSN(""))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "/tmp/pg s" || cfg.Database != "postgres" || cfg.User != "postgres" {
		t.Errorf("SuperuserDSN parses to host %q db %q user %q", cfg.Host, cfg.Database, cfg.User)
	}
}

// BenchmarkStartShard measures StartShard with one replica and Close; the
// initdb template is built before the timer starts.
func BenchmarkStartShard(b *testing.B) {
	requirePostgres(b)
	ctx := context.Background()
	opts := Options{Users: []User{{Name: "app", Password: "pw"}}, Database: "app"}
	s, err := StartShard(ctx, "warm", 0, opts)
	if err != nil {
		b.Fatal(err)
	}
	_ = s.Close()
	b.ResetTimer()
	for range b.N {
		s, err := StartShard(ctx, "s0", 1, opts)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// FuzzParseLSN checks that parseLSN never panics and that what it accepts
// round-trips through Postgres's "%X/%X" form.
func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "", "/", "1/", "-1/2", " 1/2 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseLSN(s)
		if err != nil {
			return
		}
		text := strconv.FormatUint(v>>32, 16) + "/" + strconv.FormatUint(v&0xFFFFFFFF, 16)
		if again, err := parseLSN(text); err != nil || again != v {
			t.Fatalf("parseLSN(%q) = %#x, but %q parses to %#x, %v", s, v, text, again, err)
		}
	})
}

func TestPortTaken(t *testing.T) {
	t.Parallel()
	s := startShard(t, 0, testOptions(t))
	ctx := testCtx(t)
	n := s.Primary
	if err := n.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	old := n.Port
	l, err := net.Listen("tcp", n.Addr())
	if err != nil {
		t.Fatalf("cannot take the stopped node's port: %v", err)
	}
	defer l.Close()

	// Start keeps the node's port (configs name it), so it fails, saying why.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := n.Start(short); err == nil {
		t.Fatal("Start succeeded on a taken port")
	} else if !strings.Contains(err.Error(), "Address already in use") {
		t.Errorf("error does not name the cause:\n%v", err)
	}
	// During StartShard a node moves to another port instead.
	if err := n.start(ctx, true); err != nil {
		t.Fatal(err)
	}
	if n.Port == old {
		t.Fatal("node kept the taken port")
	}
	if got := mustValue(t, n, "SELECT current_setting('port')"); got != strconv.Itoa(n.Port) {
		t.Errorf("server port %s, node says %d", got, n.Port)
	}
}
