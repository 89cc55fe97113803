package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardwire/shardwire/config"
)

// checkSQL reads everything one check needs in one round trip.
//
// The timeline of a primary comes from the name of its current WAL file
// (pg_walfile_name), which carries the timeline it inserts on: right after
// a promotion that is already the new timeline, while
// pg_control_checkpoint().timeline_id stays on the old one until the next
// checkpoint (spread over minutes). A replica cannot call pg_walfile_name;
// its timeline is the newer of pg_stat_wal_receiver.received_tli (visible
// only to superusers and members of pg_read_all_stats) and the timeline of
// its last restartpoint.
//
// The insert position of a primary (pg_current_wal_insert_lsn) is at or
// past the commit record of every transaction acknowledged before the query
// ran, even with synchronous_commit off, which acknowledges before writing;
// read-your-writes compares replicas' replay positions with it.
//
// The replay age is only computed while received WAL awaits replay: a
// replica that replayed all it received is not behind on its own account,
// however long ago the last commit was.
const checkSQL = `SELECT r,
	CASE WHEN NOT r THEN pg_current_wal_lsn() END,
	CASE WHEN NOT r THEN substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END,
	(SELECT timeline_id FROM pg_control_checkpoint()),
	CASE WHEN r THEN pg_last_wal_receive_lsn() END,
	CASE WHEN r THEN pg_last_wal_replay_lsn() END,
	CASE WHEN r AND pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()
		THEN extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) END,
	CASE WHEN r THEN (SELECT received_tli FROM pg_stat_wal_receiver) END,
	CASE WHEN NOT r THEN pg_current_wal_insert_lsn() END
FROM pg_is_in_recovery() AS r`

// parseCheck fills o from one row of checkSQL's result (text format, nil
// for NULL).
func parseCheck(row [][]byte, o *observation) error {
	if len(row) != 9 {
		return fmt.Errorf("health query: %d columns, want 9", len(row))
	}
	switch string(row[0]) {
	case "t":
		o.InRecovery = true
	case "f":
		o.InRecovery = false
	default:
		return fmt.Errorf("health query: pg_is_in_recovery %q", row[0])
	}
	ckptTL, err := parseUint32(row[3], 10)
	if err != nil {
		return fmt.Errorf("health query: checkpoint timeline: %w", err)
	}
	if !o.InRecovery {
		if row[1] == nil || row[2] == nil || row[8] == nil {
			return errors.New("health query: primary without WAL position")
		}
		if o.CurrentLSN, err = ParseLSN(string(row[1])); err != nil {
			return fmt.Errorf("health query: %w", err)
		}
		if o.InsertLSN, err = ParseLSN(string(row[8])); err != nil {
			return fmt.Errorf("health query: %w", err)
		}
		if o.Timeline, err = parseUint32(row[2], 16); err != nil {
			return fmt.Errorf("health query: WAL file timeline: %w", err)
		}
		if o.Timeline == 0 {
			return errors.New("health query: timeline 0")
		}
		return nil
	}
	if row[5] != nil {
		if o.ReplayLSN, err = ParseLSN(string(row[5])); err != nil {
			return fmt.Errorf("health query: %w", err)
		}
	}
	o.ReceiveLSN = o.ReplayLSN // no WAL receiver (yet): nothing received beyond replay
	if row[4] != nil {
		if o.ReceiveLSN, err = ParseLSN(string(row[4])); err != nil {
			return fmt.Errorf("health query: %w", err)
		}
	}
	if row[6] != nil {
		secs, err := strconv.ParseFloat(string(row[6]), 64)
		if err != nil || secs != secs {
			return fmt.Errorf("health query: replay age %q", row[6])
		}
		// A negative age is clock skew between primary and replica.
		o.ReplayAge = time.Duration(min(max(secs, 0), 1e9) * float64(time.Second))
	}
	o.Timeline = ckptTL
	if row[7] != nil {
		recvTL, err := parseUint32(row[7], 10)
		if err != nil {
			return fmt.Errorf("health query: received timeline: %w", err)
		}
		o.Timeline = max(o.Timeline, recvTL)
	}
	return nil
}

func parseUint32(b []byte, base int) (uint32, error) {
	if b == nil {
		return 0, errors.New("NULL")
	}
	v, err := strconv.ParseUint(string(b), base, 32)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", b)
	}
	return uint32(v), nil
}

// runCheck runs checkSQL on conn.
func runCheck(ctx context.Context, conn *pgconn.PgConn, o *observation) error {
	res, err := conn.Exec(ctx, checkSQL).ReadAll()
	if err != nil {
		return err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return errors.New("health query: not one row")
	}
	return parseCheck(res[0].Rows[0], o)
}

// connConfig is how the checker connects to addr: its own connections, not
// the proxy's pools.
func (c *Checker) connConfig(addr string) (*pgconn.Config, error) {
	cfg, err := serverConnConfig(addr, c.user, c.password, c.database, c.set.timeout, c.serverTLS)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams = map[string]string{"application_name": "shardwire-health"}
	return cfg, nil
}

// applyServerTLS makes cfg (host and port set, no fallbacks) use
// server_tls, as the proxy's pools do.
func applyServerTLS(cfg *pgconn.Config, t *config.ServerTLS) error {
	conf, optional, err := t.ClientTLS(cfg.Host)
	if err != nil || conf == nil {
		return err
	}
	cfg.TLSConfig = conf
	if optional {
		cfg.Fallbacks = []*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port}}
	}
	return nil
}

// ServerConnConfig is the pgconn configuration shardwire's own tools use to
// reach addr as user: no fallbacks, server_tls applied.
func ServerConnConfig(cfg *config.Config, addr string, user config.User, timeout time.Duration) (*pgconn.Config, error) {
	return serverConnConfig(addr, user.Name, user.ServerPassword, cfg.Database, timeout, cfg.ServerTLS)
}

func serverConnConfig(addr, user, password, database string, timeout time.Duration, t *config.ServerTLS) (*pgconn.Config, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("node address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("node address %q: bad port", addr)
	}
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, fmt.Errorf("pgconn config: %w", err)
	}
	cfg.Host, cfg.Port = host, uint16(port)
	cfg.User, cfg.Password, cfg.Database = user, password, database
	cfg.Fallbacks = nil
	cfg.ConnectTimeout = timeout
	if err := applyServerTLS(cfg, t); err != nil {
		return nil, err
	}
	return cfg, nil
}

// connect opens a connection to addr for an action.
func (c *Checker) connect(ctx context.Context, addr string) (*pgconn.PgConn, error) {
	cfg, err := c.connConfig(addr)
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return conn, nil
}

func closeConn(conn *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// probe checks one node every interval, over one connection it keeps open
// and re-opens when broken, until ctx ends.
func (c *Checker) probe(ctx context.Context, h *handle) {
	defer c.wg.Done()
	cfg, err := c.connConfig(h.addr)
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	tick := time.NewTicker(c.set.interval)
	defer tick.Stop()
	// A check on demand (a session's report) waits at least this long after
	// the previous one, so a storm of reports cannot make a busy loop.
	minGap := min(c.set.interval/4, 100*time.Millisecond)
	for {
		began := time.Now()
		o := observation{Addr: h.addr}
		if err != nil {
			o.Err = err
		} else {
			conn, o.Dialed, o.Err = c.checkOnce(ctx, cfg, conn, &o)
		}
		if ctx.Err() != nil {
			return
		}
		o.At = time.Now()
		h.checks.Add(1)
		if o.Err != nil {
			h.checkFailures.Add(1)
		}
		select {
		case c.events <- event{obs: &o}:
		case <-ctx.Done():
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-h.checkNow:
			if wait := minGap - time.Since(began); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
	}
}

// checkOnce runs one check within health.timeout, dialling first when conn
// is nil or broken. It returns the connection to keep (nil after an error).
func (c *Checker) checkOnce(ctx context.Context, cfg *pgconn.Config, conn *pgconn.PgConn, o *observation) (*pgconn.PgConn, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.set.timeout)
	defer cancel()
	if conn != nil && !conn.IsClosed() {
		o.Sent = time.Now()
		err := runCheck(ctx, conn, o)
		if err == nil {
			return conn, false, nil
		}
		closeConn(conn)
		// A connection kept since the last check may have been broken by a
		// restart that is already over, or by a crash: ask a new one, which
		// also turns a dead node into "connection refused" at once.
		if ctx.Err() != nil {
			return nil, false, err
		}
		*o = observation{Addr: o.Addr}
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("connect: %w", err)
	}
	o.Sent = time.Now()
	if err := runCheck(ctx, conn, o); err != nil {
		closeConn(conn)
		return nil, true, err
	}
	return conn, true, nil
}
