package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is a login role created on every shard.
type User struct {
	Name      string
	Password  string // empty: no password (only usable with AuthMethod trust)
	Superuser bool
}

// Options configure the servers of a shard.
type Options struct {
	// Dir is the parent of the shard's directory. Empty means /dev/shm when
	// writable (RAM: starting is several times faster than on disk), else
	// os.TempDir(). When running as root it must lie under os.TempDir() unless
	// the postgres user can already reach it.
	Dir string
	// Users are created on the primary (and so on the replicas). The name
	// postgres is reserved for pgcluster's own superuser.
	Users []User
	// Database, if set, is created owned by the first user, with CREATE on
	// its public schema granted to every user.
	Database string
	// AuthMethod of TCP connections: scram-sha-256 (the default), md5 or
	// trust. Passwords are stored to match (password_encryption).
	AuthMethod string
	// Settings are extra postgresql.conf settings; they override pgcluster's
	// defaults except port, unix_socket_directories, cluster_name and
	// primary_conninfo, which pgcluster sets per node.
	Settings map[string]string
	// TLS, if set, is the servers' certificate and key (PEM): every node
	// then accepts TLS (ssl = on), and plain connections too.
	TLS *TLSFiles
	// Logf, if set, receives progress lines (t.Logf fits).
	Logf func(format string, args ...any)
}

// TLSFiles is a PEM certificate (chain) and its private key.
type TLSFiles struct {
	CertPEM, KeyPEM []byte
}

// Shard is a primary and its streaming replicas.
type Shard struct {
	Name     string
	Primary  *Node
	Replicas []*Node
	// Dir holds the nodes' directories; Close removes it.
	Dir string

	nodes     []*Node // every node started, whatever Primary and Replicas say later
	closeOnce sync.Once
	closeErr  error
}

var shardName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// StartShard starts a primary and replicas streaming replicas of it, each on
// a free port of 127.0.0.1, and returns once every node accepts connections
// and every replica streams and has replayed the setup (users, database).
// Nodes are named NAME-primary and NAME-replicaN. On error nothing is left
// running. Close the shard when done.
func StartShard(ctx context.Context, name string, replicas int, opts Options) (_ *Shard, err error) {
	if !shardName.MatchString(name) {
		return nil, fmt.Errorf("pgcluster: bad shard name %q", name)
	}
	if replicas < 0 {
		return nil, fmt.Errorf("pgcluster: shard %s: %d replicas", name, replicas)
	}
	if opts.AuthMethod == "" {
		opts.AuthMethod = "scram-sha-256"
	}
	switch opts.AuthMethod {
	case "scram-sha-256", "md5", "trust":
	default:
		return nil, fmt.Errorf("pgcluster: auth method %q is not scram-sha-256, md5 or trust", opts.AuthMethod)
	}
	for _, u := range opts.Users {
		if u.Name == "" || u.Name == "postgres" {
			return nil, fmt.Errorf("pgcluster: user name %q is not allowed", u.Name)
		}
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ctx, cancel := withDefaultTimeout(ctx, startTimeout)
	defer cancel()
	began := time.Now()

	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	u, err := serverUser()
	if err != nil {
		return nil, err
	}
	tmpl, err := getTemplate(ctx, bin, u, logf)
	if err != nil {
		return nil, err
	}
	parent := opts.Dir
	if parent == "" {
		parent = scratchDir()
		sweepShardsOnce.Do(func() { sweep(filepath.Join(parent, "pgcluster-*"), logf) })
	}
	sweepSocketsOnce.Do(func() { sweep(filepath.Join(os.TempDir(), "pgsock-*"), logf) })
	if err := ensureReachable(u, parent); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, "pgcluster-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	s := &Shard{Name: name, Dir: dir}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if err := writeOwner(dir); err != nil {
		return nil, err
	}

	settings := baseSettings(opts)
	if opts.TLS != nil {
		// Relative to the data directory, where prepare's caller puts them.
		settings["ssl"], settings["ssl_cert_file"], settings["ssl_key_file"] = "on", "server.crt", "server.key"
	}
	for i := 0; i <= replicas; i++ {
		nodeName := name + "-primary"
		if i > 0 {
			nodeName = fmt.Sprintf("%s-replica%d", name, i)
		}
		port, err := reservePort()
		if err != nil {
			return nil, err
		}
		n := &Node{
			Name: nodeName, Port: port, dir: filepath.Join(dir, nodeName),
			database: opts.Database, bin: bin, user: u, password: tmpl.password,
			settings: settings, logf: logf,
		}
		n.DataDir = filepath.Join(n.dir, "data")
		s.nodes = append(s.nodes, n)
		if i == 0 {
			s.Primary = n
		} else {
			n.standby, n.upstream = true, s.Primary
			s.Replicas = append(s.Replicas, n)
		}
	}
	// Every node is a copy of the same cleanly shut down template, so a
	// replica needs no base backup: it replays the primary's WAL from the
	// template's checkpoint on.
	if err := parallel(s.nodes, func(n *Node) error {
		if err := n.prepare(ctx, tmpl, opts.AuthMethod); err != nil {
			return err
		}
		if opts.TLS == nil {
			return nil
		}
		if err := writeOwned(n.user, filepath.Join(n.DataDir, "server.crt"), opts.TLS.CertPEM, 0o600); err != nil {
			return err
		}
		return writeOwned(n.user, filepath.Join(n.DataDir, "server.key"), opts.TLS.KeyPEM, 0o600)
	}); err != nil {
		return nil, err
	}
	if err := s.Primary.start(ctx, true); err != nil {
		return nil, err
	}
	if err := setup(ctx, s.Primary, opts); err != nil {
		return nil, s.Primary.errorf(err, "set up users and database on")
	}
	if err := parallel(s.Replicas, func(n *Node) error {
		if err := n.start(ctx, true); err != nil {
			return err
		}
		return n.CatchUp(ctx, s.Primary)
	}); err != nil {
		return nil, err
	}
	logf("pgcluster: shard %s (%d replicas) ready in %v", name, replicas, time.Since(began).Round(time.Millisecond))
	return s, nil
}

// baseSettings are fast, not durable, settings for throw-away servers.
func baseSettings(opts Options) map[string]string {
	enc := "scram-sha-256"
	if opts.AuthMethod == "md5" {
		enc = "md5"
	}
	set := map[string]string{
		"listen_addresses":             "127.0.0.1",
		"unix_socket_permissions":      "0700",
		"password_encryption":          enc,
		"fsync":                        "off",
		"synchronous_commit":           "off",
		"full_page_writes":             "off",
		"shared_buffers":               "16MB",
		"max_connections":              "200",
		"wal_level":                    "replica",
		"max_wal_senders":              "10",
		"max_replication_slots":        "10",
		"hot_standby":                  "on",
		"wal_keep_size":                "128MB",
		"wal_receiver_status_interval": "1s",
		"wal_retrieve_retry_interval":  "200ms",
		"logging_collector":            "off",
		"log_line_prefix":              "%m [%p] %q%u@%d ",
		"log_checkpoints":              "off",
		// In the data directory, so a killed server leaks no /dev/shm segments.
		"dynamic_shared_memory_type": "mmap",
	}
	for k, v := range opts.Settings {
		set[k] = v
	}
	return set
}

// prepare creates the node's directories from the template.
func (n *Node) prepare(ctx context.Context, tmpl *template, auth string) error {
	if err := os.Mkdir(n.dir, 0o755); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	out, err := exec.CommandContext(ctx, "cp", "-a", tmpl.data, n.DataDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgcluster: copy template for %s: %w: %s", n.Name, err, out)
	}
	// A socket path must fit in 107 bytes; long test directories fall back
	// to a short directory of its own under the system temporary directory.
	n.SocketDir = filepath.Join(n.dir, "sock")
	if len(n.SocketDir)+len("/.s.PGSQL.65535.lock") > 100 {
		d, err := os.MkdirTemp("", "pgsock-")
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		n.SocketDir, n.ownSocketDir = d, true
		if err := writeOwner(d); err != nil {
			return err
		}
	} else if err := os.Mkdir(n.SocketDir, 0o700); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.Chmod(n.SocketDir, 0o700); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := n.user.chown(n.SocketDir); err != nil {
		return err
	}
	hba := fmt.Sprintf(`# Written by pgcluster.
local all         all                trust
local replication all                trust
host  all         all   127.0.0.1/32 %[1]s
host  replication all   127.0.0.1/32 %[1]s
`, auth)
	if err := writeOwned(n.user, filepath.Join(n.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return err
	}
	if n.standby {
		return writeOwned(n.user, filepath.Join(n.DataDir, "standby.signal"), nil, 0o600)
	}
	return nil
}

// setup creates the users and the database on the primary.
func setup(ctx context.Context, primary *Node, opts Options) error {
	conn, err := primary.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	// Flush each commit at once rather than within the WAL writer's delay:
	// replicas only receive flushed WAL and StartShard waits for them.
	if _, err := conn.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		return err
	}
	for _, u := range opts.Users {
		sql := "CREATE ROLE " + pgx.Identifier{u.Name}.Sanitize() + " LOGIN"
		if u.Superuser {
			sql += " SUPERUSER"
		}
		if u.Password != "" {
			sql += " PASSWORD " + quoteLiteral(u.Password)
		}
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create user %s: %w", u.Name, err)
		}
	}
	if opts.Database == "" {
		return nil
	}
	owner := "postgres"
	if len(opts.Users) > 0 {
		owner = opts.Users[0].Name
	}
	db := pgx.Identifier{opts.Database}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+db+" OWNER "+pgx.Identifier{owner}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", opts.Database, err)
	}
	if len(opts.Users) == 0 {
		return nil
	}
	dbConn, err := primary.Connect(ctx, opts.Database)
	if err != nil {
		return err
	}
	defer dbConn.Close(context.Background())
	names := make([]string, len(opts.Users))
	for i, u := range opts.Users {
		names[i] = pgx.Identifier{u.Name}.Sanitize()
	}
	if _, err := dbConn.Exec(ctx, "GRANT ALL ON SCHEMA public TO "+strings.Join(names, ", ")); err != nil {
		return fmt.Errorf("grant on schema public: %w", err)
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings
// is on, so only quotes need doubling).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// Nodes returns every node of the shard, primary first as started.
func (s *Shard) Nodes() []*Node { return append([]*Node(nil), s.nodes...) }

// WaitReplicas waits until every replica streams from the primary and has
// replayed what the primary had written when it was called.
func (s *Shard) WaitReplicas(ctx context.Context) error {
	return parallel(s.Replicas, func(n *Node) error { return n.CatchUp(ctx, s.Primary) })
}

// Close stops every node at once (immediate mode, SIGKILL if that hangs) and
// removes the shard's directories. It is safe to call more than once.
func (s *Shard) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		_ = parallel(s.nodes, func(n *Node) error {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := n.Stop(ctx, "immediate"); err != nil {
				n.killNow()
			}
			return nil
		})
		for _, n := range s.nodes {
			if n.Running() {
				errs = append(errs, fmt.Errorf("pgcluster: %s did not stop", n.Name))
			}
			releasePort(n.Port)
			if n.ownSocketDir {
				if err := os.RemoveAll(n.SocketDir); err != nil {
					errs = append(errs, fmt.Errorf("pgcluster: %w", err))
				}
			}
		}
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, fmt.Errorf("pgcluster: %w", err))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Cluster is several shards started together.
type Cluster struct {
	Shards []*Shard
}

// StartShards starts one shard per name, in parallel, each with the same
// number of replicas and options. If any fails, all are closed.
func StartShards(ctx context.Context, names []string, replicas int, opts Options) (*Cluster, error) {
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return nil, fmt.Errorf("pgcluster: shard %q named twice", n)
		}
		seen[n] = true
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &Cluster{Shards: make([]*Shard, len(names))}
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := StartShard(ctx, name, replicas, opts)
			if err != nil {
				errs[i] = err
				cancel() // no point finishing the others
				return
			}
			c.Shards[i] = s
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// Shard returns the shard called name, or nil.
func (c *Cluster) Shard(name string) *Shard {
	for _, s := range c.Shards {
		if s != nil && s.Name == name {
			return s
		}
	}
	return nil
}

// Close closes every shard.
func (c *Cluster) Close() error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range c.Shards {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Close(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// parallel runs f for every node concurrently and joins the errors.
func parallel(nodes []*Node, f func(*Node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
