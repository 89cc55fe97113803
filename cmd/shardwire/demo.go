package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/pgcluster"
	"github.com/shardwire/shardwire/shardmap"
)

// demoShards are the shards of the demo, as in the spec's example config.
var demoShards = []string{"s0", "s1"}

// demoDirPrefix names the demo's temporary folders (under os.TempDir), so a
// later demo can remove the folder of one that was killed.
const demoDirPrefix = "shardwire-demo-"

// demoOwnerFile in a demo folder names the process that created it.
const demoOwnerFile = ".shardwire-demo-owner"

// runDemo is `shardwire demo`: it starts two shards of real PostgreSQL
// servers (a primary and a streaming replica each) in a temporary folder,
// loads a small sample schema with every row on the shard the shard map
// says, writes a config for them and runs the proxy in front until SIGINT or
// SIGTERM; then it stops the proxy and the servers and removes the folder.
// Exit status: 0 after a clean stop (also when interrupted while starting),
// 1 when something fails, 2 for wrong usage.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o demoOptions
	fs.StringVar(&o.listen, "listen", "127.0.0.1:6432", "the `ADDR` shardwire listens on for clients")
	fs.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:9930", "the `ADDR` of the HTTP endpoints (/metrics, /healthz, /readyz)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: shardwire demo [--listen ADDR] [--admin-listen ADDR] [--log-level LEVEL]")
		fmt.Fprintln(stderr, "Starts two local PostgreSQL shards with sample data and shardwire in front; Ctrl-C removes it all.")
		fs.PrintDefaults()
	}
	if code, ok := parseArgs(fs, args, true, stderr); !ok {
		return code
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintf(stderr, "shardwire demo: --log-level %q is not one of debug, info, warn, error\n", o.logLevel)
		return 2
	}
	if err := pgcluster.PostgresAvailable(); err != nil {
		fmt.Fprintf(stderr, "shardwire demo: %v\n\nThe demo runs real PostgreSQL 15 servers. Install them with scripts/install-postgres\n"+
			"(or start the demo with scripts/demo, which does that first).\n", err)
		return 1
	}
	// Checked before anything starts, so a busy port costs no servers.
	for _, a := range []struct{ flag, addr string }{{"--listen", o.listen}, {"--admin-listen", o.adminListen}} {
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			fmt.Fprintf(stderr, "shardwire demo: cannot listen on %s (%v); pick another address with %s\n", a.addr, err, a.flag)
			return 1
		}
		_ = ln.Close()
	}

	// Signals are caught from here on until everything is removed: a Ctrl-C
	// while starting, or a second one while stopping, must not skip cleanup.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := demo(ctx, o, stdout, stderr)
	switch {
	case err != nil && ctx.Err() == nil:
		fmt.Fprintf(stderr, "shardwire demo: %v\n", err)
		return 1
	case err != nil:
		fmt.Fprintln(stdout, "\nshardwire demo: interrupted; the servers and their folder are removed")
	default:
		fmt.Fprintln(stdout, "\nshardwire demo: stopped; the servers and their folder are removed")
	}
	return 0
}

type demoOptions struct {
	listen, adminListen, logLevel string
}

// demoCluster is what demo started, for the banner.
type demoCluster struct {
	dir, configPath string
	appPassword     string
	opsPassword     string
	shards          []*pgcluster.Shard
	rows            map[string]map[string]int // shard -> table -> rows loaded
}

func demo(ctx context.Context, o demoOptions, stdout, stderr io.Writer) (err error) {
	sweepDemoDirs(stderr)
	dir, err := os.MkdirTemp("", demoDirPrefix)
	if err != nil {
		return fmt.Errorf("create a temporary folder: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove %s: %w", dir, rerr))
		}
	}()
	if err := writeDemoOwner(dir); err != nil {
		return err
	}
	d := &demoCluster{dir: dir, configPath: filepath.Join(dir, "shardwire.yaml"),
		appPassword: randomPassword(), opsPassword: randomPassword()}

	fmt.Fprintf(stdout, "shardwire demo: starting %d shards (a primary and a streaming replica each) in %s\n", len(demoShards), dir)
	log := newLogger(config.Log{Level: o.logLevel, Format: "text"}, stderr)
	cluster, err := pgcluster.StartShards(ctx, demoShards, 1, pgcluster.Options{
		Dir: dir,
		Users: []pgcluster.User{
			{Name: "app", Password: d.appPassword},
			{Name: "ops", Password: d.opsPassword},
		},
		Database:   "app",
		AuthMethod: "scram-sha-256",
		Logf:       func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer func() {
		if cerr := cluster.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	d.shards = cluster.Shards

	if err := os.WriteFile(d.configPath, []byte(d.config(o)), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	cfg, err := config.Load(d.configPath)
	if err != nil {
		return fmt.Errorf("the demo config is invalid (a bug):\n%w", err)
	}
	cfg.Log.Level = o.logLevel
	m, err := shardmap.New(cfg)
	if err != nil {
		return fmt.Errorf("the demo shard map is invalid (a bug):\n%w", err)
	}

	fmt.Fprintln(stdout, "shardwire demo: loading the sample schema and data")
	if d.rows, err = loadSample(ctx, cluster, m); err != nil {
		return err
	}
	for _, name := range demoShards {
		fmt.Fprintf(stdout, "  %s: %s\n", name, d.rowSummary(name))
	}

	return serveProxy(ctx, cfg, log, func(addr string) { d.banner(stdout, addr, o.adminListen) })
}

// config is the demo's shardwire.yaml: the spec's example with the ports
// the servers got. The passwords are written literally (the file is 0600 and
// removed on exit) so that `shardwire check` and `locate` work on it as is.
func (d *demoCluster) config(o demoOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by shardwire demo; removed when the demo stops.
listen: %s
admin_listen: %s
database: app
users:
  - name: app
    password: %q
  - name: ops
    password: %q
    admin: true
auth_method: scram-sha-256
pool:
  mode: transaction
  size: 10
  max_clients: 1000
  acquire_timeout: 5s
routing:
  reads: replicas
  max_replica_lag: 1s
  read_your_writes: true
health:
  interval: 500ms
  timeout: 1s
  failures_before_down: 3
failover:
  mode: follow
limits:
  shutdown_timeout: 5s
shards:
`, o.listen, o.adminListen, d.appPassword, d.opsPassword)
	for _, s := range d.shards {
		fmt.Fprintf(&b, "  - name: %s\n    primary: %s\n    replicas: [", s.Name, s.Primary.Addr())
		for i, r := range s.Replicas {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(r.Addr())
		}
		b.WriteString("]\n")
	}
	b.WriteString(`default_shard: s0
tables:
  customers: { key: id,          type: bigint, strategy: hash }
  orders:    { key: customer_id, type: bigint, strategy: hash }
  stores:    { key: region,      type: text,   strategy: list,
               lists: { s0: [eu, uk], s1: [us, ca] } }
  events:    { key: created_at,  type: date,   strategy: range,
               ranges: [ { shard: s0, to: 2026-01-01 },
                         { shard: s1, from: 2026-01-01 } ] }
  countries: { strategy: replicated }
ring:
  vnodes: 256
`)
	return b.String()
}

func (d *demoCluster) rowSummary(shard string) string {
	var parts []string
	for _, t := range sampleTables {
		parts = append(parts, fmt.Sprintf("%d %s", d.rows[shard][t.name], t.name))
	}
	return strings.Join(parts, ", ")
}

// banner tells how to connect, once the proxy listens on addr.
func (d *demoCluster) banner(w io.Writer, addr, admin string) {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	hp := net.JoinHostPort(host, port)
	url := fmt.Sprintf("postgres://app:%s@%s/app", d.appPassword, hp)
	ahost, aport, _ := net.SplitHostPort(admin)
	if ip := net.ParseIP(ahost); ip == nil || ip.IsUnspecified() {
		ahost = "127.0.0.1"
	}
	self := "shardwire"
	if strings.Contains(os.Args[0], "go-build") { // started by go run
		self = "go run ./cmd/shardwire"
	}
	var nodes strings.Builder
	for i, s := range d.shards {
		if i > 0 {
			nodes.WriteString("\n           ")
		}
		fmt.Fprintf(&nodes, "%s primary %s", s.Name, s.Primary.Addr())
		for _, r := range s.Replicas {
			fmt.Fprintf(&nodes, ", replica %s", r.Addr())
		}
	}
	fmt.Fprintf(w, `
shardwire is ready on %[1]s

  psql "%[2]s"
  DATABASE_URL=%[2]s
  admin:   psql "postgres://ops:%[3]s@%[1]s/shardwire"   (user ops, password %[3]s)
  metrics: http://%[4]s/metrics
  config:  %[5]s
  data:    %[6]s (removed on exit)
  nodes:   %[7]s

Try:
  SELECT count(*) FROM countries;               -- replicated: a copy on every shard
  SELECT * FROM customers WHERE id = 42;        -- hash of id picks the shard
  SELECT * FROM orders WHERE customer_id = 42;  -- orders live with their customer
  SELECT * FROM stores WHERE region = 'us';     -- list: us and ca are on s1
  SELECT * FROM events WHERE created_at >= '2026-01-01';  -- range: 2026 on is on s1
  %[8]s locate -c %[5]s customers 42

Press Ctrl-C to stop shardwire and remove the servers and their data.
`, hp, url, d.opsPassword, net.JoinHostPort(ahost, aport), d.configPath, d.dir, nodes.String(), self)
}

// randomPassword is 16 hex digits: safe in URLs and YAML.
func randomPassword() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// sampleTable is one table of the sample schema.
type sampleTable struct {
	name, ddl string
}

// sampleTables in creation order (countries first: customers refer to it).
// The foreign key from orders to customers holds on every shard because
// both tables hash the same bigint on the same ring: a customer's orders
// live on the customer's shard.
var sampleTables = []sampleTable{
	{"countries", `CREATE TABLE countries (
  code text PRIMARY KEY,
  name text NOT NULL)`},
	{"customers", `CREATE TABLE customers (
  id         bigint PRIMARY KEY,
  name       text NOT NULL,
  email      text NOT NULL,
  country    text NOT NULL REFERENCES countries (code),
  created_at timestamptz NOT NULL DEFAULT now())`},
	{"orders", `CREATE TABLE orders (
  id          bigint PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers (id),
  amount      numeric(10,2) NOT NULL,
  status      text NOT NULL,
  placed_at   timestamptz NOT NULL)`},
	{"stores", `CREATE TABLE stores (
  id     bigint PRIMARY KEY,
  region text NOT NULL,
  city   text NOT NULL)`},
	{"events", `CREATE TABLE events (
  id          bigint PRIMARY KEY,
  created_at  date NOT NULL,
  customer_id bigint,
  kind        text NOT NULL)`},
}

// sampleRow is one row to insert; key is the text form of its shard key
// (unused for replicated tables).
type sampleRow struct {
	table, key, sql string
	args            []any
}

var (
	firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis", "Radia", "Leslie"}
	lastNames  = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Ritchie", "Perlman", "Lamport", "Codd"}
	countries  = [][2]string{{"CA", "Canada"}, {"DE", "Germany"}, {"ES", "Spain"}, {"FR", "France"}, {"GB", "United Kingdom"},
		{"IT", "Italy"}, {"JP", "Japan"}, {"NL", "Netherlands"}, {"SE", "Sweden"}, {"US", "United States"}}
	stores = []struct{ region, city string }{{"eu", "Berlin"}, {"eu", "Paris"}, {"uk", "London"}, {"uk", "Manchester"},
		{"us", "New York"}, {"us", "Austin"}, {"ca", "Toronto"}, {"ca", "Vancouver"}}
)

// Sizes of the sample data set.
const (
	sampleCustomers = 50
	sampleEvents    = 24
)

// customerName is the sample name of customer id (42 is "Frances Dijkstra").
func customerName(id int) string {
	return firstNames[id%len(firstNames)] + " " + lastNames[id%len(lastNames)]
}

// sampleData is a small deterministic data set.
func sampleData() []sampleRow {
	var rows []sampleRow
	for _, c := range countries {
		rows = append(rows, sampleRow{"countries", "", "INSERT INTO countries (code, name) VALUES ($1, $2)", []any{c[0], c[1]}})
	}
	base := time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)
	orderID := 1000
	for id := 1; id <= sampleCustomers; id++ {
		name := customerName(id)
		email := strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "@example.com"
		country := countries[id%len(countries)][0]
		key := strconv.Itoa(id)
		rows = append(rows, sampleRow{"customers", key,
			"INSERT INTO customers (id, name, email, country) VALUES ($1, $2, $3, $4)", []any{int64(id), name, email, country}})
		for k := 0; k <= id%3; k++ {
			orderID++
			amount := fmt.Sprintf("%d.%02d", 5+(id*7+k*13)%120, (id*31+k*17)%100)
			status := []string{"paid", "shipped", "delivered"}[(id+k)%3]
			placed := base.Add(time.Duration(id*37+k*5) * time.Hour)
			rows = append(rows, sampleRow{"orders", key,
				"INSERT INTO orders (id, customer_id, amount, status, placed_at) VALUES ($1, $2, $3::numeric, $4, $5)",
				[]any{int64(orderID), int64(id), amount, status, placed}})
		}
	}
	for i, s := range stores {
		rows = append(rows, sampleRow{"stores", s.region, "INSERT INTO stores (id, region, city) VALUES ($1, $2, $3)", []any{int64(i + 1), s.region, s.city}})
	}
	// Weekly from mid-October 2025, so the events span both ranges.
	first := time.Date(2025, 10, 15, 0, 0, 0, 0, time.UTC)
	for i := range sampleEvents {
		day := first.AddDate(0, 0, 7*i).Format(time.DateOnly)
		rows = append(rows, sampleRow{"events", day,
			"INSERT INTO events (id, created_at, customer_id, kind) VALUES ($1, $2::date, $3, $4)",
			[]any{int64(i + 1), day, int64(1 + i*7%sampleCustomers), []string{"signup", "login", "purchase", "review"}[i%4]}})
	}
	return rows
}

// loadSample creates the sample schema on every shard's primary and inserts
// each row where m places it (replicated rows everywhere), then waits until
// the replicas have it too. It returns the rows per shard and table.
func loadSample(ctx context.Context, cluster *pgcluster.Cluster, m *shardmap.Map) (map[string]map[string]int, error) {
	perShard := map[string][]sampleRow{}
	counts := map[string]map[string]int{}
	for _, s := range m.Shards() {
		counts[s] = map[string]int{}
	}
	for _, r := range sampleData() {
		var on []string
		t, listed := m.Table(r.table)
		switch {
		case !listed:
			on = []string{m.DefaultShard()}
		case t.Replicated():
			on = t.Shards()
		default:
			s, err := t.LocateText(r.key)
			if err != nil {
				return nil, fmt.Errorf("place a sample row of %s: %w", r.table, err)
			}
			on = []string{s}
		}
		for _, s := range on {
			perShard[s] = append(perShard[s], r)
			counts[s][r.table]++
		}
	}
	for _, s := range cluster.Shards {
		if err := loadShard(ctx, s, perShard[s.Name]); err != nil {
			return nil, fmt.Errorf("load shard %s: %w", s.Name, err)
		}
	}
	for _, s := range cluster.Shards {
		if err := s.WaitReplicas(ctx); err != nil {
			return nil, fmt.Errorf("replicas of %s: %w", s.Name, err)
		}
	}
	return counts, nil
}

// loadShard creates the schema, owned by app, and inserts rows, in one
// transaction on the shard's primary.
func loadShard(ctx context.Context, s *pgcluster.Shard, rows []sampleRow) error {
	conn, err := s.Primary.Connect(ctx, "app")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	// synchronous_commit on: the replicas see the data as soon as the
	// commit returns, so waiting for them is short.
	if _, err := conn.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE app"); err != nil {
			return err
		}
		for _, t := range sampleTables {
			if _, err := tx.Exec(ctx, t.ddl); err != nil {
				return fmt.Errorf("create table %s: %w", t.name, err)
			}
		}
		if _, err := tx.Exec(ctx, "GRANT ALL ON ALL TABLES IN SCHEMA public TO ops"); err != nil {
			return err
		}
		batch := &pgx.Batch{}
		for _, r := range rows {
			batch.Queue(r.sql, r.args...)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("insert sample rows: %w", err)
		}
		return nil
	})
}

// writeDemoOwner records this process as the owner of dir, for sweepDemoDirs.
func writeDemoOwner(dir string) error { return pgcluster.WriteOwner(dir, demoOwnerFile) }

// sweepDemoDirs removes the folders of earlier demos whose process is gone
// (killed with SIGKILL, which leaves no chance to clean up; their servers
// died with them, as pgcluster's servers die with their parent).
func sweepDemoDirs(stderr io.Writer) {
	for _, d := range pgcluster.SweepOrphans(filepath.Join(os.TempDir(), demoDirPrefix+"*"), demoOwnerFile, removeOwnerLast) {
		fmt.Fprintf(stderr, "shardwire demo: removed %s, left behind by a demo that was killed\n", d)
	}
}

// removeOwnerLast removes dir, its owner file last, so that a removal that
// fails halfway is retried by the next sweep.
func removeOwnerLast(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() != demoOwnerFile {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return os.RemoveAll(dir)
}
