package e2e

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shardwire/shardwire/pgcluster"
)

// TestTimestamptzKeyInSessionTimeZone: a timestamptz key written without
// an offset is placed in the session's TimeZone, as the server reads it.
func TestTimestamptzKeyInSessionTimeZone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var shards []*pgcluster.Shard
	for _, name := range []string{"s0", "s1"} {
		sh := startShard(t, "tz"+name, 0, "scram-sha-256")
		sh.Name = name
		if err := sh.Primary.Exec(ctx, "CREATE TABLE ticks (at timestamptz, what text); GRANT ALL ON ticks TO "+appUser); err != nil {
			t.Fatal(err)
		}
		shards = append(shards, sh)
	}
	p := startProxy(t, proxyConfig{size: 2, shards: shards, extra: `tables:
  ticks: { key: at, type: timestamptz, strategy: range,
           ranges: [ { shard: s0, to: "2026-01-01 00:00:00+00" }, { shard: s1, from: "2026-01-01 00:00:00+00" } ] }
`})
	c := p.connect(t)
	// 05:00 in Tokyo (UTC+9) is 20:00 UTC the day before: shard s0. Read
	// in UTC it would be s1.
	for _, stmt := range []string{
		"SET TimeZone = 'Asia/Tokyo'",
		"INSERT INTO ticks (at, what) VALUES ('2026-01-01 05:00', 'tokyo')",
		"RESET TimeZone",
		"SET TimeZone = 'UTC'",
		"INSERT INTO ticks (at, what) VALUES ('2026-01-01 05:00', 'utc')",
	} {
		if _, err := c.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	for i, want := range []string{"tokyo", "utc"} {
		d, err := pgx.Connect(ctx, shards[i].Primary.DSN(appUser, appPassword, appDB))
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = d.QueryRow(ctx, "SELECT string_agg(what, ',') FROM ticks").Scan(&got)
		d.Close(ctx)
		if err != nil || got != want {
			t.Fatalf("shard %s holds %q (%v), want %q", shards[i].Name, got, err, want)
		}
	}
}
