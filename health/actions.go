package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Bounds of the failover actions.
const (
	promoteWaitSeconds = 60               // pg_promote(true, 60)
	promoteTimeout     = 90 * time.Second // the whole promotion
	repointTimeout     = 15 * time.Second
)

// act runs one action and hands its outcome back to run.
func (c *Checker) act(ctx context.Context, a action) {
	defer c.wg.Done()
	var ev event
	switch a.kind {
	case actPromote:
		r := c.promote(ctx, a)
		ev.promoted = &r
	case actRepoint:
		r := c.repoint(ctx, a)
		ev.repointed = &r
	default:
		return
	}
	select {
	case c.events <- ev:
	case <-ctx.Done():
	}
}

// promote promotes a.node: guard, pg_promote, wait for writes, read the new
// timeline.
func (c *Checker) promote(ctx context.Context, a action) promoteResult {
	began := time.Now()
	res := promoteResult{shard: a.shard, node: a.node}
	fail := func(err error) promoteResult {
		res.err, res.at = err, time.Now()
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, promoteTimeout)
	defer cancel()
	conn, err := c.connect(ctx, a.node)
	if err != nil {
		return fail(err)
	}
	defer closeConn(conn)
	var o observation
	if err := runCheck(ctx, conn, &o); err != nil {
		return fail(fmt.Errorf("check %s before promoting: %w", a.node, err))
	}
	if !o.InRecovery {
		return fail(fmt.Errorf("%s is not in recovery any more (promoted by someone else?); not promoting", a.node))
	}
	if err := c.promoteGuard(ctx, a, max(o.ReceiveLSN, o.ReplayLSN)); err != nil {
		return fail(err)
	}
	v, err := queryValue(ctx, conn, fmt.Sprintf("SELECT pg_promote(true, %d)", promoteWaitSeconds))
	if err != nil {
		return fail(fmt.Errorf("pg_promote on %s: %w", a.node, err))
	}
	if v != "t" {
		return fail(fmt.Errorf("pg_promote on %s did not finish within %ds", a.node, promoteWaitSeconds))
	}
	// Out of recovery is not yet accepting writes everywhere: ask for a
	// transaction id, which only a writable server hands out.
	for {
		_, err = queryValue(ctx, conn, "SELECT pg_current_xact_id()")
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("%s promoted but does not accept writes: %w", a.node, err))
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := runCheck(ctx, conn, &o); err != nil {
		return fail(fmt.Errorf("check %s after promoting: %w", a.node, err))
	}
	if o.InRecovery {
		return fail(fmt.Errorf("%s still in recovery after pg_promote", a.node))
	}
	res.timeline, res.lsn, res.at = o.Timeline, o.CurrentLSN, time.Now()
	c.log.Info("health: promotion done", "shard", a.shard, "node", a.node, "timeline", o.Timeline, "took", res.at.Sub(began))
	return res
}

// promoteGuard asks every other node of the shard, right before promoting,
// whether it is a primary on the failed primary's timeline or a newer one:
// the old primary came back, or another shardwire (or a person) promoted
// first. Either way promoting now would make a second primary. It also
// refuses when another replica has received more WAL than the candidate's
// fresh position: the checks that chose the candidate may predate WAL still
// in flight, and promoting the laggard would fork a timeline that replica
// cannot follow. The next decision then picks the more advanced one.
func (c *Checker) promoteGuard(ctx context.Context, a action, position LSN) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, addr := range a.others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gctx, cancel := context.WithTimeout(ctx, c.set.timeout)
			defer cancel()
			conn, err := c.connect(gctx, addr)
			if err != nil {
				return // unreachable nodes cannot take writes either
			}
			defer closeConn(conn)
			var o observation
			if err := runCheck(gctx, conn, &o); err != nil {
				return
			}
			if o.InRecovery {
				if p := max(o.ReceiveLSN, o.ReplayLSN); p > position {
					mu.Lock()
					errs = append(errs, fmt.Errorf("replica %s has received more WAL (%s) than the candidate %s (%s)", addr, p, a.node, position))
					mu.Unlock()
				}
				return
			}
			if o.Timeline < a.timeline {
				return
			}
			mu.Lock()
			errs = append(errs, fmt.Errorf("one-promoter guard: %s reports primary on timeline %d", addr, o.Timeline))
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// repoint points the replica a.node at the primary a.primary and reloads
// its configuration (PostgreSQL 13 and later apply primary_conninfo on
// reload: the WAL receiver restarts and follows the new timeline).
func (c *Checker) repoint(ctx context.Context, a action) repointResult {
	res := repointResult{shard: a.shard, node: a.node}
	err := c.repointErr(ctx, a)
	res.err, res.at = err, time.Now()
	return res
}

func (c *Checker) repointErr(ctx context.Context, a action) error {
	ctx, cancel := context.WithTimeout(ctx, repointTimeout)
	defer cancel()
	host, port, err := net.SplitHostPort(a.primary)
	if err != nil {
		return fmt.Errorf("primary address %q: %w", a.primary, err)
	}
	conn, err := c.connect(ctx, a.node)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	var o observation
	if err := runCheck(ctx, conn, &o); err != nil {
		return fmt.Errorf("check %s: %w", a.node, err)
	}
	if !o.InRecovery {
		return fmt.Errorf("%s is not a replica", a.node)
	}
	// Keep the replica's own replication credentials and options; only
	// where it connects changes. Reading primary_conninfo needs superuser
	// or pg_read_all_settings; without, build one from the checker's login.
	current, err := queryValue(ctx, conn, "SELECT current_setting('primary_conninfo')")
	if err != nil {
		current = ""
	}
	app, err := queryValue(ctx, conn, "SELECT current_setting('cluster_name')")
	if err != nil || app == "" {
		app = "shardwire-replica"
	}
	fallback := []kv{{"user", c.user}, {"password", c.password}, {"application_name", app}}
	conninfo := repointConninfo(current, host, port, fallback)
	// ALTER SYSTEM refuses to run in a transaction block, so one statement
	// per query.
	for _, sql := range []string{
		"ALTER SYSTEM SET primary_conninfo = " + quoteLiteral(conninfo),
		"ALTER SYSTEM SET recovery_target_timeline = 'latest'",
		"SELECT pg_reload_conf()",
	} {
		if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
			return fmt.Errorf("re-point %s: %w", a.node, err)
		}
	}
	return nil
}

// queryValue runs sql and returns the first column of its only row.
func queryValue(ctx context.Context, conn *pgconn.PgConn, sql string) (string, error) {
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) == 0 {
		return "", fmt.Errorf("%q: not one row", sql)
	}
	return string(res[0].Rows[0][0]), nil
}
