package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Default bounds of waits whose context has no deadline.
const (
	startTimeout = 2 * time.Minute
	waitTimeout  = time.Minute
)

// Node is one PostgreSQL server: a primary or a streaming replica.
type Node struct {
	Name      string // e.g. "s0-primary", "s0-replica1"; also its cluster_name
	Port      int    // TCP port on 127.0.0.1
	DataDir   string
	SocketDir string // its Unix socket directory (mode 0700)

	dir          string // holds DataDir and the log
	ownSocketDir bool   // SocketDir lies outside dir and is removed separately
	database     string // of Exec and Query
	bin          string
	user         osUser
	password     string // of the superuser postgres
	settings     map[string]string
	logf         func(string, ...any)

	mu       sync.Mutex
	standby  bool
	upstream *Node // the node it streams from, when standby
	proc     *os.Process
	done     chan struct{} // closed when proc has exited and been reaped
}

// Addr is the node's host:port on the loopback interface.
func (n *Node) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port)) }

// LogPath is the server's log file (its stderr).
func (n *Node) LogPath() string { return filepath.Join(n.dir, "postgres.log") }

// DSN is a postgres:// URL to the node over TCP for user, as pgx and libpq take it.
func (n *Node) DSN(user, password, database string) string {
	u := url.URL{Scheme: "postgres", Host: n.Addr(), Path: "/" + database, RawQuery: "sslmode=disable"}
	if password == "" {
		u.User = url.User(user)
	} else {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// SuperuserDSN is a keyword/value connection string for the superuser
// postgres over the node's Unix socket (trusted, so no password).
func (n *Node) SuperuserDSN(database string) string {
	if database == "" {
		database = "postgres"
	}
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable connect_timeout=10",
		connValue(n.SocketDir), n.Port, connValue(database))
}

// Running reports whether the server process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runningLocked()
}

func (n *Node) runningLocked() bool {
	if n.proc == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// IsStandby reports whether the node is configured as a streaming replica.
func (n *Node) IsStandby() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.standby
}

// Start starts a stopped node on its port and waits until it accepts
// connections (a replica: read-only ones). A killed node runs crash recovery.
func (n *Node) Start(ctx context.Context) error { return n.start(ctx, false) }

// start launches the server, retrying when the port was taken meanwhile (on
// a new port if mayMove) or when processes of a killed predecessor still hold
// its shared memory.
func (n *Node) start(ctx context.Context, mayMove bool) error {
	ctx, cancel := withDefaultTimeout(ctx, startTimeout)
	defer cancel()
	if n.Running() {
		return fmt.Errorf("pgcluster: start %s: already running", n.Name)
	}
	for attempt := 1; ; attempt++ {
		if err := n.writeConf(); err != nil {
			return err
		}
		off := n.logSize()
		began := time.Now()
		err := n.launch()
		if err == nil {
			err = n.waitReady(ctx)
		}
		if err == nil {
			n.logf("pgcluster: %s accepts connections on %s after %v (log %s)", n.Name, n.Addr(), time.Since(began).Round(time.Millisecond), n.LogPath())
			return nil
		}
		n.killNow()
		log := n.logFrom(off)
		portTaken := strings.Contains(log, "could not bind") || strings.Contains(log, "Address already in use")
		shmBusy := strings.Contains(log, "pre-existing shared memory block") ||
			(strings.Contains(log, "lock file") && strings.Contains(log, "already exists"))
		if attempt < 10 && ctx.Err() == nil && (portTaken || shmBusy) {
			if portTaken && mayMove {
				old := n.Port
				p, perr := reservePort()
				if perr != nil {
					return perr
				}
				releasePort(old)
				n.Port = p
				n.logf("pgcluster: %s: port %d was taken, moving to %d", n.Name, old, p)
			}
			if err := sleepCtx(ctx, time.Duration(attempt)*100*time.Millisecond); err != nil {
				return n.errorf(err, "start")
			}
			continue
		}
		return n.errorf(err, "start")
	}
}

// launch starts the postmaster as our child, its output appended to the log.
func (n *Node) launch() error {
	logf, err := os.OpenFile(n.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	// Not CommandContext: the server outlives the call that starts it.
	cmd := exec.Command(filepath.Join(n.bin, "postgres"), "-D", n.DataDir)
	cmd.Env = serverEnv()
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = n.user.attr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgcluster: start postgres: %w", err)
	}
	done := make(chan struct{})
	n.mu.Lock()
	n.proc, n.done = cmd.Process, done
	n.mu.Unlock()
	go func() {
		_ = cmd.Wait() // the exit status says nothing the log does not
		close(done)
	}()
	return nil
}

// waitReady polls until the server accepts a connection or exits.
func (n *Node) waitReady(ctx context.Context) error {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	var last error
	for {
		select {
		case <-done:
			return errors.New("postgres exited")
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(cctx, n.SuperuserDSN("postgres"))
		cancel()
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		last = err
		select {
		case <-done:
			return errors.New("postgres exited")
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last attempt: %v)", ctx.Err(), last)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Stop shuts the server down in mode "smart" (wait for clients to leave),
// "fast" (disconnect them) or "immediate" (no shutdown checkpoint; recovery
// at the next start) and waits for it to exit. Stopping a stopped node is a
// no-op.
func (n *Node) Stop(ctx context.Context, mode string) error {
	sig, ok := map[string]syscall.Signal{"smart": syscall.SIGTERM, "fast": syscall.SIGINT, "immediate": syscall.SIGQUIT}[mode]
	if !ok {
		return fmt.Errorf("pgcluster: stop %s: unknown mode %q (smart, fast or immediate)", n.Name, mode)
	}
	ctx, cancel := withDefaultTimeout(ctx, waitTimeout)
	defer cancel()
	n.mu.Lock()
	proc, done, running := n.proc, n.done, n.runningLocked()
	n.mu.Unlock()
	if !running {
		return nil
	}
	if err := proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return n.errorf(err, "stop")
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return n.errorf(ctx.Err(), "stop ("+mode+")")
	}
}

// Kill sends SIGKILL to the postmaster and every process it started, as a
// machine crash would, and waits until all are gone. The data directory is
// left as the crash left it; Start recovers it.
func (n *Node) Kill(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx, waitTimeout)
	defer cancel()
	n.mu.Lock()
	proc, done, running := n.proc, n.done, n.runningLocked()
	n.mu.Unlock()
	if !running {
		return nil
	}
	// Backends are found before the postmaster dies: after, they belong to init.
	kids := childPIDs(proc.Pid)
	if err := proc.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return n.errorf(err, "kill")
	}
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return n.errorf(ctx.Err(), "kill")
	}
	for _, k := range kids {
		for processAlive(k) {
			if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
				return n.errorf(fmt.Errorf("backend %d still alive: %w", k, err), "kill")
			}
		}
	}
	return nil
}

// killNow kills the node, bounded in time, for cleanup paths.
func (n *Node) killNow() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.Kill(ctx)
}

// Promote turns a replica into a primary and waits until it accepts writes.
func (n *Node) Promote(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx, waitTimeout)
	defer cancel()
	secs := 60
	if dl, ok := ctx.Deadline(); ok {
		secs = max(1, int(time.Until(dl).Seconds()))
	}
	conn, err := n.Connect(ctx, "postgres")
	if err != nil {
		return n.errorf(err, "promote")
	}
	defer conn.Close(context.Background())
	var promoted bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, $1)", secs).Scan(&promoted); err != nil {
		return n.errorf(err, "promote")
	}
	if !promoted {
		return n.errorf(errors.New("pg_promote did not finish in time"), "promote")
	}
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return n.errorf(err, "promote")
	}
	if inRecovery {
		return n.errorf(errors.New("still in recovery after pg_promote"), "promote")
	}
	n.mu.Lock()
	n.standby, n.upstream = false, nil
	n.mu.Unlock()
	return n.writeConf() // drop primary_conninfo, so a restart stays a primary
}

// Follow points a replica at another primary (after a failover) and reloads
// its configuration; the replica switches to the new timeline by itself.
func (n *Node) Follow(ctx context.Context, primary *Node) error {
	n.mu.Lock()
	if !n.standby {
		n.mu.Unlock()
		return fmt.Errorf("pgcluster: %s is not a replica", n.Name)
	}
	n.upstream = primary
	running := n.runningLocked()
	n.mu.Unlock()
	if err := n.writeConf(); err != nil {
		return err
	}
	if !running {
		return nil
	}
	return n.Exec(ctx, "SELECT pg_reload_conf()")
}

// Connect opens a connection as the superuser postgres over the Unix socket.
// An empty database means postgres.
func (n *Node) Connect(ctx context.Context, database string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, n.SuperuserDSN(database))
	if err != nil {
		return nil, fmt.Errorf("pgcluster: connect to %s: %w", n.Name, err)
	}
	return conn, nil
}

// Exec runs sql as the superuser in the shard's database (Options.Database,
// else postgres).
func (n *Node) Exec(ctx context.Context, sql string, args ...any) error {
	conn, err := n.Connect(ctx, n.database)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("pgcluster: %s: %w", n.Name, err)
	}
	return nil
}

// Query runs sql as the superuser in the shard's database and returns every
// row in Postgres's text format; NULL is the empty string.
func (n *Node) Query(ctx context.Context, sql string, args ...any) ([][]string, error) {
	conn, err := n.Connect(ctx, n.database)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %s: %w", n.Name, err)
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]string, len(raw))
		for i, v := range raw {
			row[i] = string(v)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgcluster: %s: %w", n.Name, err)
	}
	return out, nil
}

// QueryValue returns the first column of the single row sql yields.
func (n *Node) QueryValue(ctx context.Context, sql string, args ...any) (string, error) {
	rows, err := n.Query(ctx, sql, args...)
	if err != nil {
		return "", err
	}
	if len(rows) != 1 || len(rows[0]) == 0 {
		return "", fmt.Errorf("pgcluster: %s: %d rows from %q, want 1", n.Name, len(rows), sql)
	}
	return rows[0][0], nil
}

// InRecovery reports whether the node is a standby (pg_is_in_recovery).
func (n *Node) InRecovery(ctx context.Context) (bool, error) {
	v, err := n.QueryValue(ctx, "SELECT pg_is_in_recovery()")
	return v == "t", err
}

// CatchUp waits until the replica streams from primary and has replayed all
// WAL the primary had inserted when CatchUp was called, so rows committed on
// the primary before the call are visible on the replica.
func (n *Node) CatchUp(ctx context.Context, primary *Node) error {
	ctx, cancel := withDefaultTimeout(ctx, waitTimeout)
	defer cancel()
	v, err := primary.QueryValue(ctx, "SELECT pg_current_wal_insert_lsn()")
	if err != nil {
		return n.errorf(err, "catch up")
	}
	insert, err := parseLSN(v)
	if err != nil {
		return n.errorf(err, "catch up")
	}
	target := replayTarget(insert)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	var last string
	for {
		if conn == nil {
			conn, err = n.Connect(ctx, "postgres")
		}
		if err == nil {
			var streaming bool
			var replay string
			err = conn.QueryRow(ctx, `SELECT coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),
				coalesce(pg_last_wal_replay_lsn()::text, '0/0')`).Scan(&streaming, &replay)
			if err == nil {
				last = fmt.Sprintf("streaming=%v replayed=%s want=%s", streaming, replay, v)
				if lsn, perr := parseLSN(replay); perr == nil && streaming && lsn >= target {
					return nil
				}
			}
		}
		if err != nil {
			last = err.Error()
			if conn != nil {
				_ = conn.Close(context.Background())
				conn = nil
			}
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return n.errorf(fmt.Errorf("%w (%s)", err, last), "catch up with "+primary.Name)
		}
	}
}

// parseLSN parses Postgres's "X/Y" text form of a WAL position.
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("pgcluster: bad LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("pgcluster: bad LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("pgcluster: bad LSN %q: %w", s, err)
	}
	return h<<32 | l, nil
}

// WAL layout: 8 kB pages (the default build), 1 MB segments (set at initdb,
// so that a template copy is 15 MB smaller), and page headers of 24 bytes
// (40 at a segment's start).
const (
	walPage      = 8192
	walSegment   = 1 << 20
	walShortHead = 24
	walLongHead  = 40
)

// replayTarget turns an insert position into the replay position that covers
// it. When the last record ends exactly at a page boundary the insert
// position points past the next page's header, while a replica reports the
// boundary itself; without this it would wait for a record nobody writes.
func replayTarget(insert uint64) uint64 {
	if insert%walSegment == walLongHead || (insert%walPage == walShortHead && insert%walSegment >= walPage) {
		return insert - insert%walPage
	}
	return insert
}

// writeConf writes the node's settings file, included by postgresql.conf.
func (n *Node) writeConf() error {
	n.mu.Lock()
	set := make(map[string]string, len(n.settings)+6)
	for k, v := range n.settings {
		set[k] = v
	}
	set["port"] = strconv.Itoa(n.Port)
	set["unix_socket_directories"] = n.SocketDir
	set["cluster_name"] = n.Name
	if n.standby && n.upstream != nil {
		set["primary_conninfo"] = fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s application_name=%s",
			n.upstream.Port, connValue(n.password), connValue(n.Name))
	}
	n.mu.Unlock()
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by pgcluster; rewritten at every start.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(set[k], "'", "''"))
	}
	return writeOwned(n.user, filepath.Join(n.DataDir, nodeConfFile), []byte(b.String()), 0o600)
}

// connValue quotes a libpq keyword/value value.
func connValue(s string) string {
	if s != "" && !strings.ContainsAny(s, ` '\`) {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func (n *Node) logSize() int64 {
	st, err := os.Stat(n.LogPath())
	if err != nil {
		return 0
	}
	return st.Size()
}

// logFrom returns the last lines the log gained since offset off.
func (n *Node) logFrom(off int64) string {
	f, err := os.Open(n.LogPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return tail(string(b), 30)
}

// errorf wraps err with the node's name and the tail of its log.
func (n *Node) errorf(err error, op string) error {
	off := max(0, n.logSize()-16<<10)
	return fmt.Errorf("pgcluster: %s %s: %w\n--- last lines of %s ---\n%s", op, n.Name, err, n.LogPath(), n.logFrom(off))
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(p); ok && ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// processAlive reports whether pid exists and is not a zombie (a zombie
// holds no shared memory or sockets, and init may be slow to reap it).
func processAlive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// procStat reads the state and parent pid from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name, in parentheses, may itself contain spaces and ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
