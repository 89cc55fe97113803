package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shardwire/shardwire/pgcluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchenv:", err)
		os.Exit(1)
	}
}

func run() error {
	info := flag.String("info", "", "file to write the shell variables to (required)")
	user := flag.String("user", "bench", "login role to create")
	password := flag.String("password", "bench", "its password")
	database := flag.String("database", "bench", "database to create, owned by the user")
	auth := flag.String("auth", "scram-sha-256", "auth method for TCP connections: scram-sha-256, md5 or trust")
	replicas := flag.Int("replicas", 0, "streaming replicas of the primary")
	freePorts := flag.Int("free-ports", 2, "free loopback ports to report in FREE_PORTS")
	withTLS := flag.Bool("tls", false, "servers accept TLS, with a throw-away self-signed certificate (for server_tls: require)")
	flag.Parse()
	if *info == "" {
		return fmt.Errorf("-info is required")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	opts := pgcluster.Options{
		Users:      []pgcluster.User{{Name: *user, Password: *password}},
		Database:   *database,
		AuthMethod: *auth,
		Logf:       func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) },
	}
	if *withTLS {
		var err error
		if opts.TLS, err = selfSigned(); err != nil {
			return err
		}
	}
	shard, err := pgcluster.StartShard(startCtx, "bench", *replicas, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err := shard.Close(); err != nil {
			log.Error("close", "err", err)
		}
	}()

	secret, err := shard.Primary.QueryValue(startCtx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", *user)
	if err != nil {
		return err
	}
	var replicaAddrs []string
	for _, r := range shard.Replicas {
		replicaAddrs = append(replicaAddrs, r.Addr())
	}
	ports, err := pickPorts(*freePorts)
	if err != nil {
		return err
	}
	p := shard.Primary
	vars := []struct{ k, v string }{
		{"PRIMARY_HOST", "127.0.0.1"},
		{"PRIMARY_PORT", strconv.Itoa(p.Port)},
		{"PRIMARY_ADDR", p.Addr()},
		{"PRIMARY_LOG", p.LogPath()},
		{"SOCKET_DIR", p.SocketDir},
		{"PASSWORD_SECRET", secret},
		{"REPLICA_ADDRS", strings.Join(replicaAddrs, " ")},
		{"FREE_PORTS", strings.Join(ports, " ")},
	}
	var b strings.Builder
	for _, kv := range vars {
		fmt.Fprintf(&b, "%s=%s\n", kv.k, shellQuote(kv.v))
	}
	tmp := *info + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Clean(*info)); err != nil {
		return err
	}
	log.Info("ready; stop with SIGINT or SIGTERM", "primary", p.Addr(), "info", *info)
	<-ctx.Done()
	log.Info("stopping")
	return nil
}

// pickPorts returns n distinct loopback ports that were free just now.
func pickPorts(n int) ([]string, error) {
	var ports []string
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l) // held until all are picked, so they differ
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}

// shellQuote quotes s for POSIX shells.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// selfSigned makes a certificate for 127.0.0.1 and localhost, good for a day
// (from a throw-away authority: the bench's clients do not verify it).
func selfSigned() (*pgcluster.TLSFiles, error) {
	ca, err := pgcluster.NewCA("benchenv")
	if err != nil {
		return nil, err
	}
	return ca.Issue([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
}
