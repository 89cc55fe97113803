package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/health"
)

// checkPreparedTransactions reports, for a config with
// routing.two_phase_commit, each shard primary whose
// max_prepared_transactions is 0 (two-phase commit cannot work there). It
// logs in as the health checker does (the first admin user, else the first
// user). A primary it cannot reach is noted, not counted as an error. It
// returns false when some primary has 0.
func checkPreparedTransactions(cfg *config.Config, path string, w io.Writer) bool {
	if !cfg.Routing.TwoPhaseCommit || len(cfg.Users) == 0 {
		return true
	}
	u := cfg.Users[0]
	for _, cu := range cfg.Users {
		if cu.Admin {
			u = cu
			break
		}
	}
	u, _ = cfg.User(u.Name)
	ok := true
	for _, sh := range cfg.Shards {
		v, err := preparedSetting(cfg, sh.Primary, u)
		switch {
		case err != nil:
			fmt.Fprintf(w, "%s: note: could not check max_prepared_transactions on shard %s (%s): %v\n", path, sh.Name, sh.Primary, err)
		case v == "0":
			fmt.Fprintf(w, "%s: shard %s (%s) has max_prepared_transactions = 0: routing.two_phase_commit needs it above 0 on every shard primary\n", path, sh.Name, sh.Primary)
			ok = false
		}
	}
	return ok
}

func preparedSetting(cfg *config.Config, addr string, u config.User) (string, error) {
	pc, err := health.ServerConnConfig(cfg, addr, u, 3*time.Second)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "SELECT current_setting('max_prepared_transactions')", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return "", res.Err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return "", fmt.Errorf("unexpected answer")
	}
	return string(res.Rows[0][0]), nil
}
