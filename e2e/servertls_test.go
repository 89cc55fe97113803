package e2e

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardwire/shardwire/pgcluster"
)

// testCA is a certificate authority made for one test.
type testCA struct{ *pgcluster.CA }

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	ca, err := pgcluster.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{ca}
}

// issue makes a server certificate for host names and IP addresses.
func (ca testCA) issue(t *testing.T, dnsNames []string, ips []net.IP) *pgcluster.TLSFiles {
	t.Helper()
	files, err := ca.Issue(dnsNames, ips)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestServerTLS: with server_tls, the pools, the health checker and cancel
// requests reach Postgres over TLS, checked as the mode says; a server
// without TLS is refused unless the mode is prefer, and a certificate from
// another authority is refused by verify-full, each as a clear error to the
// client rather than a hang.
func TestServerTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "shardwire test CA")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tlsShard, err := pgcluster.StartShard(ctx, "stls", 0, pgcluster.Options{
		Users:      []pgcluster.User{{Name: appUser, Password: appPassword}, {Name: opsUser, Password: opsPassword}},
		Database:   appDB,
		AuthMethod: "scram-sha-256",
		TLS:        ca.issue(t, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}),
		Logf:       t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tlsShard.Close() })
	plainShard := startShard(t, "splain", 0, "scram-sha-256")

	dir := t.TempDir()
	caPath := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caPath, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	otherCAPath := filepath.Join(dir, "other-ca.crt")
	if err := os.WriteFile(otherCAPath, newTestCA(t, "another CA").CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	// sslOf reports whether the backend serving c's statements uses TLS.
	sslOf := func(c *pgx.Conn) (bool, error) {
		var ssl bool
		err := c.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl)
		return ssl, err
	}
	cases := []struct {
		name    string
		shard   *pgcluster.Shard
		mode    string // pool.mode; empty: transaction
		tls     string
		wantSSL bool
		wantErr string // in the client's error; empty: the query works
	}{
		{"verify-full", tlsShard, "", "  mode: verify-full\n  ca: " + caPath + "\n", true, ""},
		{"session mode", tlsShard, "session", "  mode: verify-full\n  ca: " + caPath + "\n", true, ""},
		{"verify-ca", tlsShard, "", "  mode: verify-ca\n  ca: " + caPath + "\n", true, ""},
		{"require", tlsShard, "", "  mode: require\n", true, ""},
		{"prefer with TLS", tlsShard, "", "  mode: prefer\n", true, ""},
		{"prefer without TLS", plainShard, "", "  mode: prefer\n", false, ""},
		{"require without TLS", plainShard, "", "  mode: require\n", false, "does not accept TLS"},
		{"verify-full, another CA", tlsShard, "", "  mode: verify-full\n  ca: " + otherCAPath + "\n", false, "certificate"},
		// Last: its health checks reach the TLS shard without TLS, and
		// the earlier cases count every health connection there.
		{"disable", tlsShard, "", "  mode: disable\n", false, ""},
	}
	// One at a time, for the same reason: each case's proxy is gone
	// before the next counts the health connections.
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, proxyConfig{mode: tc.mode, size: 2, shards: []*pgcluster.Shard{tc.shard}, acquire: "3s",
				extra: "server_tls:\n" + tc.tls})
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			defer ccancel()
			// shardwire learns the server's parameters at the first
			// login, so a server it cannot reach fails the login itself.
			c, err := pgx.Connect(cctx, p.dsn(appUser, appPassword))
			var ssl bool
			if err == nil {
				defer c.Close(ctx)
				ssl, err = sslOf(c)
			}
			if tc.wantErr != "" {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || !strings.HasPrefix(pgErr.Code, "08") && pgErr.Code != "53300" || !strings.Contains(pgErr.Message, tc.wantErr) {
					t.Fatalf("got %v, want an 08xxx error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ssl != tc.wantSSL {
				t.Fatalf("backend ssl = %v, want %v", ssl, tc.wantSSL)
			}
			if !tc.wantSSL {
				return
			}
			// The health checker's own connections use TLS too.
			direct, err := pgx.Connect(ctx, tc.shard.Primary.SuperuserDSN(appDB))
			if err != nil {
				t.Fatal(err)
			}
			defer direct.Close(ctx)
			var probes, plain int
			err = direct.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE NOT s.ssl)
				FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'shardwire-health'`).Scan(&probes, &plain)
			if err != nil {
				t.Fatal(err)
			}
			if probes == 0 || plain != 0 {
				t.Fatalf("health connections: %d, of which %d without TLS", probes, plain)
			}
			// A cancel request (sent over TLS too) still reaches the backend.
			go func() {
				time.Sleep(300 * time.Millisecond)
				_ = c.PgConn().CancelRequest(ctx)
			}()
			start := time.Now()
			_, err = c.Exec(ctx, "SELECT pg_sleep(10)")
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "57014" || time.Since(start) > 5*time.Second {
				t.Fatalf("cancel: %v after %v", err, time.Since(start))
			}
			if ssl, err := sslOf(c); err != nil || !ssl {
				t.Fatalf("after the cancel: ssl %v, %v", ssl, err)
			}
			if tc.name != "verify-full" {
				return
			}
			// Many clients over two TLS connections, transaction pooling.
			pgbench := tool(t, "pgbench")
			if out, err := p.run(t, 2*time.Minute, pgbench, "-i", "-s", "1", "-q"); err != nil {
				t.Fatalf("pgbench -i: %v\n%s", err, out)
			}
			for _, mode := range []string{"simple", "extended", "prepared"} {
				out, err := p.run(t, 2*time.Minute, pgbench, "-b", "tpcb-like", "-c", "16", "-j", "2", "-t", "20", "-M", mode, "--max-tries=1")
				if err != nil || !strings.Contains(out, "number of failed transactions: 0 ") || !strings.Contains(out, "actually processed: 320") {
					t.Fatalf("pgbench -M %s over TLS: %v\n%s", mode, err, out)
				}
			}
		})
	}
}
