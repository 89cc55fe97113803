package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestSpecFileLoads(t *testing.T) {
	t.Parallel()
	cfg, err := Load("../configs/shardwire.yaml")
	if err == nil {
		t.Fatal("spec file loaded without APP_PASSWORD set; want an error naming it")
	}
	if !strings.Contains(err.Error(), "APP_PASSWORD is not set") {
		t.Fatalf("error %q does not name the variable", err)
	}
	_ = cfg
}

func TestSpecFileWithEnv(t *testing.T) {
	t.Setenv("APP_PASSWORD", "secret1")
	t.Setenv("OPS_PASSWORD", "secret2")
	cfg, err := Load("../configs/shardwire.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Listen, "127.0.0.1:6432"},
		{"admin_listen", cfg.AdminListen, "127.0.0.1:9930"},
		{"database", cfg.Database, "app"},
		{"users", len(cfg.Users), 2},
		{"app password", cfg.Users[0].Password, "secret1"},
		{"ops admin", cfg.Users[1].Admin, true},
		{"auth", cfg.AuthMethod, "scram-sha-256"},
		{"pool.mode", cfg.Pool.Mode, "transaction"},
		{"pool.size", cfg.Pool.Size, 20},
		{"pool.max_clients", cfg.Pool.MaxClients, 10000},
		{"pool.acquire_timeout", cfg.Pool.AcquireTimeout, 5 * time.Second},
		{"routing.reads", cfg.Routing.Reads, "replicas"},
		{"routing.max_replica_lag", cfg.Routing.MaxReplicaLag, time.Second},
		{"routing.read_your_writes", cfg.Routing.ReadYourWrites, true},
		{"health.interval", cfg.Health.Interval, 500 * time.Millisecond},
		{"health.timeout", cfg.Health.Timeout, time.Second},
		{"health.failures_before_down", cfg.Health.FailuresBeforeDown, 3},
		{"failover.mode", cfg.Failover.Mode, "follow"},
		{"shards", len(cfg.Shards), 2},
		{"s1 replica", cfg.Shards[1].Replicas[0], "127.0.0.1:15533"},
		{"default_shard", cfg.DefaultShard, "s0"},
		{"tables", len(cfg.Tables), 5},
		{"stores list", strings.Join(cfg.Tables["stores"].Lists["s1"], ","), "us,ca"},
		{"events range", cfg.Tables["events"].Ranges[1].From, "2026-01-01"},
		{"countries", cfg.Tables["countries"].Strategy, "replicated"},
		{"ring.vnodes", cfg.Ring.VNodes, 256},
		{"line of tables.orders", cfg.Line("tables.orders"), 56},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestErrorsCarryLines(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key", "listen: 127.0.0.1:1\nbogus: 1\n", "f.yaml:2: field bogus not found"},
		{"bad mode", "users: [{name: a, password: b}]\nshards: [{name: s0, primary: 'h:1'}]\npool:\n  mode: party\n", "f.yaml:4: pool.mode \"party\" is not one of"},
		{"bad duration", "pool:\n  acquire_timeout: soon\n", "f.yaml:2:"},
		{"syntax", "listen: [\n", "f.yaml:"},
		{"dup shard", "users: [{name: a, password: b}]\nshards:\n  - {name: s0, primary: 'h:1'}\n  - {name: s0, primary: 'h:2'}\n", "f.yaml:4: shard \"s0\" is listed twice"},
		{"dup node", "users: [{name: a, password: b}]\nshards:\n  - {name: s0, primary: 'h:1'}\n  - {name: s1, primary: 'h:1'}\n", "f.yaml:4: node h:1 is listed twice"},
		{"no users", "shards: [{name: s0, primary: 'h:1'}]\n", "at least one user"},
		{"missing env", "users: [{name: a, password: '${NOPE}'}]\nshards: [{name: s0, primary: 'h:1'}]\n", "f.yaml:1: environment variable NOPE is not set"},
		{"bad default shard", "users: [{name: a, password: b}]\nshards: [{name: s0, primary: 'h:1'}]\ndefault_shard: s9\n", "f.yaml:3: default_shard \"s9\" is not a shard"},
		{"bad size", "users: [{name: a, password: b}]\nshards: [{name: s0, primary: 'h:1'}]\nlimits: {max_message_size: 12parsecs}\n", "f.yaml:3"},
		{"negative idle transaction timeout", "users: [{name: a, password: b}]\nshards: [{name: s0, primary: 'h:1'}]\nlimits:\n  idle_transaction_timeout: -1s\n", "f.yaml:4: limits.idle_transaction_timeout must not be negative"},
		{"bad server_tls mode", "users: [{name: a, password: b}]\nshards: [{name: s0, primary: 'h:1'}]\nserver_tls:\n  mode: maybe\n", "f.yaml:4: server_tls.mode \"maybe\" is not one of"},
		{"server_tls cert without key", "users: [{name: a, password: b}]\nshards: [{name: s0, primary: 'h:1'}]\nserver_tls:\n  mode: require\n  cert: /x.crt\n", "f.yaml:3: server_tls needs both cert and key"},
		{"server_tls missing ca", "users: [{name: a, password: b}]\nshards: [{name: s0, primary: 'h:1'}]\nserver_tls:\n  mode: verify-full\n  ca: /nonexistent/ca.crt\n", "f.yaml:3: server_tls.ca: open /nonexistent/ca.crt"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("f.yaml", []byte(c.yaml), env(nil))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestEnvDefaultAndComments(t *testing.T) {
	t.Parallel()
	y := "# ${NOT_EXPANDED_IN_COMMENT}\nusers: [{name: a, password: '${P:-dflt}'}]\nshards: [{name: s0, primary: 'h:1'}]\nlimits: {max_message_size: 8MiB}\n"
	cfg, err := Parse("f.yaml", []byte(y), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Users[0].Password != "dflt" {
		t.Fatalf("password = %q", cfg.Users[0].Password)
	}
	if cfg.Limits.MaxMessageSize != 8<<20 {
		t.Fatalf("max_message_size = %d", cfg.Limits.MaxMessageSize)
	}
	if cfg.DefaultShardName() != "s0" {
		t.Fatalf("default shard = %q", cfg.DefaultShardName())
	}
	u, _ := cfg.User("a")
	if u.ServerPassword != "dflt" {
		t.Fatalf("server password defaults to password, got %q", u.ServerPassword)
	}
}
