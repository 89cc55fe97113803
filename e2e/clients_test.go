package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shardwire/shardwire/pgcluster"
)

// TestClientDrivers runs a program per driver (testdata/clients) through
// transaction pooling: six connections at once over two server connections,
// each with named prepared statements (so they move between server
// connections), a SET that must stay its own, inserts in a batch or
// pipeline, a rolled-back transaction and an error that keeps its SQLSTATE.
// Each program checks its own results and fails saying why.
// scripts/install-clients installs the drivers; without CI set, a missing
// driver skips its case.
func TestClientDrivers(t *testing.T) {
	t.Parallel()
	sh := startShard(t, "drivers", 0, "scram-sha-256")
	createSchema(t, sh, "CREATE TABLE drivers (who text, n int)")
	p := startProxy(t, proxyConfig{size: 2, shards: []*pgcluster.Shard{sh}})
	host, port, _ := net.SplitHostPort(p.addr)
	dsn := fmt.Sprintf("postgresql://%s:%s@%s:%s/%s?sslmode=disable", appUser, appPassword, host, port, appDB)
	clients, err := filepath.Abs("testdata/clients")
	if err != nil {
		t.Fatal(err)
	}
	missing := func(t *testing.T, what string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (scripts/install-clients installs it)", what)
		}
		t.Skipf("%s is missing: run scripts/install-clients", what)
	}
	cases := []struct {
		name  string
		ready func(t *testing.T) // skips or fails when the driver is missing
		cmd   []string
		dir   string
	}{
		{"psycopg", func(t *testing.T) {
			if exec.Command("/usr/bin/python3", "-c", "import psycopg").Run() != nil {
				missing(t, "psycopg (Debian python3-psycopg)")
			}
		}, []string{"/usr/bin/python3", "psycopg_check.py"}, clients},
		{"asyncpg", func(t *testing.T) {
			if exec.Command("/usr/bin/python3", "-c", "import asyncpg").Run() != nil {
				missing(t, "asyncpg (Debian python3-asyncpg)")
			}
		}, []string{"/usr/bin/python3", "asyncpg_check.py"}, clients},
		{"pgjdbc", func(t *testing.T) {
			if _, err := exec.LookPath("java"); err != nil {
				missing(t, "java")
			}
			if _, err := os.Stat("/usr/share/java/postgresql.jar"); err != nil {
				missing(t, "pgJDBC (Debian libpostgresql-jdbc-java)")
			}
		}, []string{"java", "-cp", "/usr/share/java/postgresql.jar", "JdbcCheck.java"}, clients},
		{"node-postgres", func(t *testing.T) {
			if _, err := exec.LookPath("node"); err != nil {
				missing(t, "node")
			}
			if _, err := os.Stat(filepath.Join(clients, "node", "node_modules", "pg")); err != nil {
				missing(t, "node-postgres (npm ci in e2e/testdata/clients/node)")
			}
		}, []string{"node", "check.js"}, filepath.Join(clients, "node")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.ready(t)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, tc.cmd[0], tc.cmd[1:]...)
			cmd.Dir = tc.dir
			cmd.Env = append(os.Environ(),
				"SHARDWIRE_DSN="+dsn,
				fmt.Sprintf("SHARDWIRE_JDBC_URL=jdbc:postgresql://%s:%s/%s", host, port, appDB),
				"SHARDWIRE_USER="+appUser, "PGPASSWORD="+appPassword)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), " ok") {
				t.Fatalf("%s: %v\n%s", strings.Join(tc.cmd, " "), err, out)
			}
			t.Log(strings.TrimSpace(string(out)))
		})
	}
}
