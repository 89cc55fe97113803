package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is one loaded configuration file.
type Config struct {
	Path string `yaml:"-"`

	Listen      string `yaml:"listen"`
	AdminListen string `yaml:"admin_listen"`
	Database    string `yaml:"database"`
	Users       []User `yaml:"users"`
	AuthMethod  string `yaml:"auth_method"`
	TLS         *TLS   `yaml:"tls"`
	// ServerTLS is TLS towards Postgres (a shardwire key, not in the spec).
	ServerTLS *ServerTLS `yaml:"server_tls"`
	Pool      Pool       `yaml:"pool"`
	Routing   Routing    `yaml:"routing"`
	Health    Health     `yaml:"health"`
	Failover  Failover   `yaml:"failover"`
	Limits    Limits     `yaml:"limits"`
	Log       Log        `yaml:"log"`

	Shards       []Shard          `yaml:"shards"`
	DefaultShard string           `yaml:"default_shard"`
	Tables       map[string]Table `yaml:"tables"`
	Ring         Ring             `yaml:"ring"`

	// Lines maps a dotted key path ("pool.size", "tables.orders.key",
	// "shards.1.primary") to its line in the file, for error messages of
	// later stages (the shard map's validation).
	Lines map[string]int `yaml:"-"`
}

// User is a login that clients use and that shardwire uses towards Postgres.
type User struct {
	Name     string `yaml:"name"`
	Password string `yaml:"password"`
	// ServerPassword is what shardwire sends to Postgres; defaults to Password.
	ServerPassword string `yaml:"server_password"`
	Admin          bool   `yaml:"admin"`
}

// ServerTLS is how shardwire's connections to Postgres (pools, health
// checks, cancel requests) use TLS. Mode has libpq's sslmode meanings:
// disable (the default), prefer (TLS when the server offers it, else
// plain), require (TLS, certificate not checked), verify-ca (certificate
// signed by CA) and verify-full (also issued for the node's host name).
type ServerTLS struct {
	Mode string `yaml:"mode"`
	CA   string `yaml:"ca"`   // PEM roots for verify-ca and verify-full; empty: the system's
	Cert string `yaml:"cert"` // optional client certificate, with Key
	Key  string `yaml:"key"`
}

// ClientTLS returns the TLS configuration for connections to host, and
// whether a server without TLS is still accepted (prefer). It returns nil
// when TLS is off. Files are read on each call: callers keep the result.
func (t *ServerTLS) ClientTLS(host string) (*tls.Config, bool, error) {
	if t == nil || t.Mode == "" || t.Mode == "disable" {
		return nil, false, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, false, fmt.Errorf("server_tls client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	var roots *x509.CertPool
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, false, fmt.Errorf("server_tls.ca: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, false, fmt.Errorf("server_tls.ca: no PEM certificate in %s", t.CA)
		}
		conf.RootCAs = roots
	}
	switch t.Mode {
	case "prefer", "require":
		// Encryption without authentication, as libpq's modes of the same
		// names (no CA file given).
		conf.InsecureSkipVerify = true
	case "verify-ca":
		// The chain is checked against the roots; the host name is not.
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		}
	}
	return conf, t.Mode == "prefer", nil
}

// TLS enables TLS towards clients.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Pool configures server connection pools.
type Pool struct {
	Mode           string        `yaml:"mode"`
	Size           int           `yaml:"size"`
	MinIdle        int           `yaml:"min_idle"`
	MaxClients     int           `yaml:"max_clients"`
	AcquireTimeout time.Duration `yaml:"acquire_timeout"`
	IdleTimeout    time.Duration `yaml:"idle_timeout"`
	MaxLifetime    time.Duration `yaml:"max_lifetime"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// PreparedStatementsCache bounds the proxy-global prepared statements one
	// server connection keeps (LRU); 0 means the default.
	PreparedStatementsCache int `yaml:"prepared_statements_cache"`
}

// Routing configures read/write splitting.
type Routing struct {
	Reads              string        `yaml:"reads"`
	Balance            string        `yaml:"balance"`
	Fallback           string        `yaml:"fallback"`
	MaxReplicaLag      time.Duration `yaml:"max_replica_lag"`
	MaxReplicaLagBytes int64         `yaml:"max_replica_lag_bytes"`
	ReadYourWrites     bool          `yaml:"read_your_writes"`
	ReadOnlyFunctions  []string      `yaml:"read_only_functions"`
	CrossShardWrites   string        `yaml:"cross_shard_writes"`
	TwoPhaseCommit     bool          `yaml:"two_phase_commit"`
	// TwoPhaseRecoveryAfter is how old a prepared transaction of
	// shardwire's with no decision record must be before any instance
	// rolls it back (its coordinator is presumed dead).
	TwoPhaseRecoveryAfter time.Duration `yaml:"two_phase_recovery_after"`
}

// Health configures node checks.
type Health struct {
	Interval           time.Duration `yaml:"interval"`
	Timeout            time.Duration `yaml:"timeout"`
	FailuresBeforeDown int           `yaml:"failures_before_down"`
	SuccessesBeforeUp  int           `yaml:"successes_before_up"`
}

// Failover configures what happens when a primary dies.
type Failover struct {
	Mode  string        `yaml:"mode"`
	Grace time.Duration `yaml:"grace"`
}

// Limits bounds what a client may do.
type Limits struct {
	MaxMessageSize    ByteSize      `yaml:"max_message_size"`
	AuthTimeout       time.Duration `yaml:"auth_timeout"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
	ClientIdleTimeout time.Duration `yaml:"client_idle_timeout"`
	// IdleTransactionTimeout closes a client that sends nothing for this
	// long inside a transaction (0: never), so one stalled client cannot
	// hold a server connection and its locks indefinitely.
	IdleTransactionTimeout time.Duration `yaml:"idle_transaction_timeout"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Shard is one shard: a primary and its streaming replicas.
type Shard struct {
	Name     string   `yaml:"name"`
	Primary  string   `yaml:"primary"`
	Replicas []string `yaml:"replicas"`
	// Weights optionally weighs nodes for read balancing, by address.
	Weights map[string]int `yaml:"weights"`
}

// Table says how one table is placed on shards.
type Table struct {
	Key      string              `yaml:"key"`
	Type     string              `yaml:"type"`
	Strategy string              `yaml:"strategy"`
	Lists    map[string][]string `yaml:"lists"`
	Ranges   []Range             `yaml:"ranges"`
	// Default is the shard for list/range values that match nothing.
	Default string `yaml:"default"`
}

// Range is one [From, To) interval of a range-sharded table; an empty bound is open.
type Range struct {
	Shard string `yaml:"shard"`
	From  string `yaml:"from"`
	To    string `yaml:"to"`
}

// Ring configures the consistent-hash ring.
type Ring struct {
	VNodes int `yaml:"vnodes"`
}

// ByteSize is a size in bytes that YAML may spell as 64MiB, 8kB or 1048576.
type ByteSize int64

// UnmarshalYAML accepts plain integers and integers with a unit suffix.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// ParseByteSize parses "64MiB", "64MB", "512kB", "1024".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	mult := map[string]int64{"": 1, "B": 1, "kB": 1 << 10, "KB": 1 << 10, "KiB": 1 << 10, "MB": 1 << 20, "MiB": 1 << 20, "GB": 1 << 30, "GiB": 1 << 30}
	m, ok := mult[strings.TrimSpace(s[i:])]
	if !ok {
		return 0, fmt.Errorf("invalid size unit in %q (use B, kB, MB, GB)", s)
	}
	return ByteSize(n * m), nil
}

// Error is one problem in a file, printed as FILE:LINE: reason.
type Error struct {
	File   string
	Line   int
	Reason string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Reason)
}

// Errors is every problem found in one file.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Load reads, expands and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// Parse expands, decodes and validates data; name is used in error messages.
func Parse(name string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	var errs Errors
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		lines[i] = envRef.ReplaceAllStringFunc(line, func(ref string) string {
			m := envRef.FindStringSubmatch(ref)
			if v, ok := lookup(m[1]); ok {
				return v
			}
			if m[2] != "" {
				return m[3]
			}
			errs = append(errs, &Error{name, i + 1, fmt.Sprintf("environment variable %s is not set", m[1])})
			return ""
		})
	}
	expanded := []byte(strings.Join(lines, "\n"))

	var root yaml.Node
	if err := yaml.Unmarshal(expanded, &root); err != nil {
		return nil, append(errs, yamlError(name, err)...)
	}
	cfg := Defaults()
	cfg.Path = name
	if len(root.Content) > 0 {
		dec := yaml.NewDecoder(strings.NewReader(string(expanded)))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil {
			return nil, append(errs, yamlError(name, err)...)
		}
	}
	cfg.Lines = map[string]int{}
	if len(root.Content) > 0 {
		indexLines(root.Content[0], "", cfg.Lines)
	}
	errs = append(errs, cfg.validate()...)
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError turns yaml.v3's "line N: reason" messages into Errors.
func yamlError(name string, err error) Errors {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out Errors
	for _, m := range msgs {
		if sub := yamlLine.FindStringSubmatch(m); sub != nil {
			n, _ := strconv.Atoi(sub[1])
			out = append(out, &Error{name, n, sub[2]})
		} else {
			out = append(out, &Error{name, 0, strings.TrimPrefix(m, "yaml: ")})
		}
	}
	return out
}

func indexLines(n *yaml.Node, prefix string, out map[string]int) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := join(k.Value)
			out[path] = k.Line
			indexLines(v, path, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			path := join(strconv.Itoa(i))
			out[path] = c.Line
			indexLines(c, path, out)
		}
	}
}

// Line returns the line of a dotted key path, or of its nearest ancestor
// present in the file, or 0.
func (c *Config) Line(path string) int {
	for path != "" {
		if l, ok := c.Lines[path]; ok {
			return l
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// Errorf builds an Error positioned at a key path of this config.
func (c *Config) Errorf(path, format string, args ...any) *Error {
	return &Error{File: c.Path, Line: c.Line(path), Reason: fmt.Sprintf(format, args...)}
}

// Defaults returns a Config holding every default value.
func Defaults() *Config {
	return &Config{
		Listen:      "127.0.0.1:6432",
		AdminListen: "127.0.0.1:9930",
		Database:    "app",
		AuthMethod:  "scram-sha-256",
		Pool: Pool{
			Mode:                    "transaction",
			Size:                    20,
			MaxClients:              10000,
			AcquireTimeout:          5 * time.Second,
			IdleTimeout:             10 * time.Minute,
			MaxLifetime:             time.Hour,
			ConnectTimeout:          5 * time.Second,
			PreparedStatementsCache: 512,
		},
		Routing: Routing{
			Reads:                 "replicas",
			Balance:               "least_outstanding",
			Fallback:              "primary",
			MaxReplicaLag:         time.Second,
			ReadYourWrites:        true,
			CrossShardWrites:      "refuse",
			TwoPhaseRecoveryAfter: 30 * time.Second,
		},
		Health: Health{
			Interval:           500 * time.Millisecond,
			Timeout:            time.Second,
			FailuresBeforeDown: 3,
			SuccessesBeforeUp:  2,
		},
		Failover: Failover{Mode: "follow"},
		Limits: Limits{
			MaxMessageSize:  64 << 20,
			AuthTimeout:     10 * time.Second,
			ShutdownTimeout: 30 * time.Second,
		},
		Log:  Log{Level: "info", Format: "text"},
		Ring: Ring{VNodes: 256},
	}
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

func (c *Config) validate() Errors {
	var errs Errors
	bad := func(path, format string, args ...any) { errs = append(errs, c.Errorf(path, format, args...)) }

	for _, k := range []struct{ path, addr string }{{"listen", c.Listen}, {"admin_listen", c.AdminListen}} {
		if k.addr == "" && k.path == "admin_listen" {
			continue // no HTTP endpoint
		}
		if _, _, err := net.SplitHostPort(k.addr); err != nil {
			bad(k.path, "%s %q is not host:port", k.path, k.addr)
		}
	}
	if c.Database == "" {
		bad("database", "database must not be empty")
	}
	if c.Database == AdminDatabase {
		bad("database", "database %q is reserved for the admin console", AdminDatabase)
	}
	if !oneOf(c.AuthMethod, "scram-sha-256", "md5", "trust") {
		bad("auth_method", "auth_method %q is not one of scram-sha-256, md5, trust", c.AuthMethod)
	}
	if len(c.Users) == 0 {
		bad("users", "at least one user is required")
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		p := fmt.Sprintf("users.%d", i)
		if u.Name == "" {
			bad(p, "user %d has no name", i)
		}
		if seen[u.Name] {
			bad(p+".name", "user %q is listed twice", u.Name)
		}
		seen[u.Name] = true
		if u.Password == "" && c.AuthMethod != "trust" {
			bad(p+".password", "user %q has no password (auth_method %s needs one)", u.Name, c.AuthMethod)
		}
	}
	if c.TLS != nil {
		if c.TLS.Cert == "" || c.TLS.Key == "" {
			bad("tls", "tls needs both cert and key")
		}
	}
	if t := c.ServerTLS; t != nil {
		if !oneOf(t.Mode, "", "disable", "prefer", "require", "verify-ca", "verify-full") {
			bad("server_tls.mode", "server_tls.mode %q is not one of disable, prefer, require, verify-ca, verify-full", t.Mode)
		}
		if (t.Cert == "") != (t.Key == "") {
			bad("server_tls", "server_tls needs both cert and key for a client certificate, or neither")
		}
		if _, _, err := t.ClientTLS(""); err != nil {
			bad("server_tls", "%v", err)
		}
	}
	if !oneOf(c.Pool.Mode, "session", "transaction") {
		bad("pool.mode", "pool.mode %q is not one of session, transaction", c.Pool.Mode)
	}
	if c.Pool.Size < 1 {
		bad("pool.size", "pool.size must be at least 1")
	}
	if c.Pool.MinIdle < 0 || c.Pool.MinIdle > c.Pool.Size {
		bad("pool.min_idle", "pool.min_idle must be between 0 and pool.size")
	}
	if c.Pool.MaxClients < 1 {
		bad("pool.max_clients", "pool.max_clients must be at least 1")
	}
	if c.Pool.AcquireTimeout <= 0 {
		bad("pool.acquire_timeout", "pool.acquire_timeout must be positive")
	}
	if c.Pool.ConnectTimeout <= 0 {
		bad("pool.connect_timeout", "pool.connect_timeout must be positive")
	}
	if c.Pool.PreparedStatementsCache < 1 {
		bad("pool.prepared_statements_cache", "pool.prepared_statements_cache must be at least 1")
	}
	if !oneOf(c.Routing.Reads, "replicas", "primary") {
		bad("routing.reads", "routing.reads %q is not one of replicas, primary", c.Routing.Reads)
	}
	if !oneOf(c.Routing.Balance, "least_outstanding", "round_robin", "random") {
		bad("routing.balance", "routing.balance %q is not one of least_outstanding, round_robin, random", c.Routing.Balance)
	}
	if !oneOf(c.Routing.Fallback, "primary", "error") {
		bad("routing.fallback", "routing.fallback %q is not one of primary, error", c.Routing.Fallback)
	}
	if !oneOf(c.Routing.CrossShardWrites, "refuse", "allow") {
		bad("routing.cross_shard_writes", "routing.cross_shard_writes %q is not one of refuse, allow", c.Routing.CrossShardWrites)
	}
	if c.Routing.TwoPhaseRecoveryAfter < time.Second {
		bad("routing.two_phase_recovery_after", "routing.two_phase_recovery_after must be at least 1s, not %s", c.Routing.TwoPhaseRecoveryAfter)
	}
	if c.Routing.MaxReplicaLag < 0 {
		bad("routing.max_replica_lag", "routing.max_replica_lag must not be negative")
	}
	if c.Health.Interval <= 0 {
		bad("health.interval", "health.interval must be positive")
	}
	if c.Health.Timeout <= 0 {
		bad("health.timeout", "health.timeout must be positive")
	}
	if c.Health.FailuresBeforeDown < 1 {
		bad("health.failures_before_down", "health.failures_before_down must be at least 1")
	}
	if c.Health.SuccessesBeforeUp < 1 {
		bad("health.successes_before_up", "health.successes_before_up must be at least 1")
	}
	if !oneOf(c.Failover.Mode, "off", "follow", "promote") {
		bad("failover.mode", "failover.mode %q is not one of off, follow, promote", c.Failover.Mode)
	}
	if c.Limits.MaxMessageSize < 1024 {
		bad("limits.max_message_size", "limits.max_message_size must be at least 1kB")
	}
	if c.Limits.AuthTimeout <= 0 {
		bad("limits.auth_timeout", "limits.auth_timeout must be positive")
	}
	if c.Limits.ShutdownTimeout < 0 {
		bad("limits.shutdown_timeout", "limits.shutdown_timeout must not be negative")
	}
	if c.Limits.ClientIdleTimeout < 0 {
		bad("limits.client_idle_timeout", "limits.client_idle_timeout must not be negative")
	}
	if c.Limits.IdleTransactionTimeout < 0 {
		bad("limits.idle_transaction_timeout", "limits.idle_transaction_timeout must not be negative")
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		bad("log.level", "log.level %q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !oneOf(c.Log.Format, "text", "json") {
		bad("log.format", "log.format %q is not one of text, json", c.Log.Format)
	}
	if len(c.Shards) == 0 {
		bad("shards", "at least one shard is required")
	}
	names := map[string]bool{}
	addrs := map[string]string{}
	for i, s := range c.Shards {
		p := fmt.Sprintf("shards.%d", i)
		if s.Name == "" {
			bad(p, "shard %d has no name", i)
		} else if names[s.Name] {
			bad(p+".name", "shard %q is listed twice", s.Name)
		}
		names[s.Name] = true
		nodes := append([]string{s.Primary}, s.Replicas...)
		for j, a := range nodes {
			kp := p + ".primary"
			if j > 0 {
				kp = fmt.Sprintf("%s.replicas.%d", p, j-1)
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				bad(kp, "shard %q: node address %q is not host:port", s.Name, a)
				continue
			}
			if other, dup := addrs[a]; dup {
				bad(kp, "node %s is listed twice (also in shard %q)", a, other)
			}
			addrs[a] = s.Name
		}
		for a, w := range s.Weights {
			if !oneOf(a, nodes...) {
				bad(p+".weights", "shard %q: weight for %s, which is not one of its nodes", s.Name, a)
			}
			if w < 0 {
				bad(p+".weights", "shard %q: weight for %s must not be negative", s.Name, a)
			}
		}
	}
	if c.DefaultShard == "" && len(c.Shards) > 0 {
		// Without default_shard the first shard holds unsharded tables.
	} else if c.DefaultShard != "" && !names[c.DefaultShard] {
		bad("default_shard", "default_shard %q is not a shard", c.DefaultShard)
	}
	if c.Ring.VNodes < 1 || c.Ring.VNodes > 65536 {
		bad("ring.vnodes", "ring.vnodes must be between 1 and 65536")
	}
	return errs
}

// AdminDatabase is the database name of the admin console.
const AdminDatabase = "shardwire"

// DefaultShardName returns default_shard, or the first shard's name.
func (c *Config) DefaultShardName() string {
	if c.DefaultShard != "" {
		return c.DefaultShard
	}
	if len(c.Shards) > 0 {
		return c.Shards[0].Name
	}
	return ""
}

// User returns the user with that name.
func (c *Config) User(name string) (User, bool) {
	for _, u := range c.Users {
		if u.Name == name {
			if u.ServerPassword == "" {
				u.ServerPassword = u.Password
			}
			return u, true
		}
	}
	return User{}, false
}

// Shard returns the shard with that name.
func (c *Config) Shard(name string) (Shard, bool) {
	for _, s := range c.Shards {
		if s.Name == name {
			return s, true
		}
	}
	return Shard{}, false
}
