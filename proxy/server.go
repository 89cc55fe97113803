package proxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/shardwire/shardwire/sockio"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/health"
	"github.com/shardwire/shardwire/metrics"
	"github.com/shardwire/shardwire/pool"
	"github.com/shardwire/shardwire/router"
	"github.com/shardwire/shardwire/shardmap"
)

// reportedParams are the parameters Postgres reports with ParameterStatus
// (GUC_REPORT); a client's startup values for them are echoed at login.
var reportedParams = map[string]string{
	"application_name": "application_name", "client_encoding": "client_encoding", "datestyle": "DateStyle",
	"intervalstyle": "IntervalStyle", "timezone": "TimeZone", "search_path": "search_path",
	"standard_conforming_strings": "standard_conforming_strings",
}

// Server accepts client connections and serves them.
type Server struct {
	cfg     atomic.Pointer[config.Config]
	log     *slog.Logger
	debug   bool // log takes debug records (its level is fixed)
	auth    atomic.Pointer[authenticator]
	tlsConf *tls.Config

	poolsMu sync.Mutex
	pools   map[poolKey]*pool.Pool

	sessionsMu sync.Mutex
	sessions   map[uint32]*session

	clients  atomic.Int64
	draining atomic.Bool
	wg       sync.WaitGroup
	lnMu     sync.Mutex
	ln       net.Listener
	metrics  *metrics.Recorder

	statements statementRegistry
	analyzer   *router.Analyzer
	checker    atomic.Pointer[health.Checker] // nil: every shard's configured primary, no replicas
	shards     atomic.Pointer[shardmap.Map]
	roundRobin atomic.Uint64

	gates    cowMap[string, *shardGate]
	targets  cowMap[targetKey, *attachTarget]
	reloadFn func() error

	// connect replaces dialling Postgres in this package's benchmarks.
	connect func(ctx context.Context, addr string) (net.Conn, pool.ServerInfo, error)
	// Cross-shard transactions: this process's name in prepared
	// transaction ids, their sequence, and those being committed now.
	instance string
	txSeq    atomic.Uint64
	inflight sync.Map
	// idle parks clients between transactions without a goroutine (nil
	// where it cannot: each client then waits on its own).
	idle *idleWaiter
}

type poolKey struct{ addr, user string }

// New builds a server for cfg.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	auth, err := newAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{log: log, debug: log.Enabled(context.Background(), slog.LevelDebug), pools: map[poolKey]*pool.Pool{}, sessions: map[uint32]*session{}, instance: newInstanceID(),
		analyzer: router.NewAnalyzer(router.Config{ReadOnlyFunctions: cfg.Routing.ReadOnlyFunctions})}
	m, err := shardmap.New(cfg)
	if err != nil {
		return nil, err
	}
	s.cfg.Store(cfg)
	s.auth.Store(auth)
	s.shards.Store(m)
	if cfg.TLS != nil {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("load tls certificate: %w", err)
		}
		s.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if s.idle, err = newIdleWaiter(s); err != nil {
		log.Warn("idle clients will each keep a goroutine", "err", err)
	}
	return s, nil
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.lnMu.Lock()
	if s.draining.Load() {
		s.lnMu.Unlock()
		return ln.Close()
	}
	s.ln = ln
	s.lnMu.Unlock()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.draining.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		s.wg.Add(1)
		go s.serveConn(conn)
	}
}

// serveConn runs one client connection; a panic ends only this connection.
// The goroutine then serves other sessions as a worker while there is work.
func (s *Server) serveConn(conn net.Conn) {
	if sess := s.accept(conn); sess != nil {
		s.work(sess, false)
	}
}

// accept runs a new connection's startup: it returns the session to serve,
// or nil when the connection has ended (admin console, cancel request,
// refusal). A session says Done to s.wg when it ends; accept says it for
// the rest.
func (s *Server) accept(conn net.Conn) (served *session) {
	ended := false // the session ended here, and said Done itself
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic serving client; connection closed", "panic", r, "stack", string(debug.Stack()))
			_ = conn.Close()
			served = nil
		}
		if served == nil && !ended {
			s.wg.Done()
		}
	}()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	conn = sockio.Wrap(conn)
	cc := newClientConn(conn, int(s.config().Limits.MaxMessageSize))
	_ = conn.SetDeadline(time.Now().Add(s.config().Limits.AuthTimeout))
	sess, err := s.handshake(cc)
	var admin *adminHandoff
	if errors.As(err, &admin) {
		_ = cc.Conn.SetDeadline(time.Time{})
		admin.a.run()
		s.clients.Add(-1)
		return nil
	}
	if err != nil {
		if ce := asClientError(err); ce != nil {
			_ = cc.send(appendError(nil, "FATAL", ce.code, ce.msg))
		}
		s.log.Debug("client handshake ended", "remote", conn.RemoteAddr().String(), "err", err)
		_ = cc.Close()
		return nil
	}
	if sess == nil { // a cancel request
		_ = cc.Close()
		return nil
	}
	_ = cc.Conn.SetDeadline(time.Time{})
	if s.draining.Load() {
		sess.sendFatal(&clientError{fatal: true, code: codeAdminShutdown, msg: "shardwire is shutting down"})
		ended = true
		sess.close()
		return nil
	}
	sess.fd = socketFD(cc.Conn)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		sess.logger().Debug("client connected")
	}
	return sess
}

// work serves sess, then, as a worker of the idle waiter, whatever session
// wakes next, until no session needs it.
func (s *Server) work(sess *session, woken bool) {
	var bufs sessionScratch
	for sess != nil {
		s.serveSession(sess, woken, &bufs)
		sess, woken = s.idle.next(), true
	}
}

// serveSession runs sess until it ends or parks; a panic ends only sess.
func (s *Server) serveSession(sess *session, woken bool, bufs *sessionScratch) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic serving client; connection closed", "panic", r, "stack", string(debug.Stack()))
			_ = sess.client.Close()
			sess.end()
		}
	}()
	if sess.run(woken, bufs) {
		return
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		sess.logger().Debug("client disconnected", "duration", time.Since(time.Unix(0, sess.started)))
	}
}

// handshake runs startup and authentication; it returns nil, nil for a
// cancel request, which it has handled.
func (s *Server) handshake(cc *clientConn) (*session, error) {
	req, err := readStartup(cc, s.tlsConf)
	if err != nil {
		return nil, err
	}
	if req.cancel {
		s.cancel(req.cancelPID, req.cancelKey)
		return nil, nil
	}
	if _, repl := req.params["replication"]; repl && req.params["replication"] != "false" && req.params["replication"] != "off" && req.params["replication"] != "0" {
		return nil, &clientError{fatal: true, code: codeFeatureNotSupported, msg: "replication connections are not supported by shardwire"}
	}
	userName := req.params["user"]
	if userName == "" {
		return nil, &clientError{fatal: true, code: codeInvalidAuthSpec, msg: "no PostgreSQL user name specified in startup packet"}
	}
	db := req.params["database"]
	if db == "" {
		db = userName
	}
	if n := s.clients.Add(1); n > int64(s.config().Pool.MaxClients) {
		s.clients.Add(-1)
		return nil, &clientError{fatal: true, code: codeTooManyConnections, msg: "sorry, too many clients already (pool.max_clients)"}
	}
	ok := false
	defer func() {
		if !ok {
			s.clients.Add(-1)
		}
	}()
	if neg := req.negotiation(); neg != nil {
		if err := cc.send(neg); err != nil {
			return nil, err
		}
	}
	user, err := s.auth.Load().authenticate(cc, userName)
	if err != nil {
		if errors.Is(err, errAuthFailed) {
			s.log.Info("authentication failed", "user", userName, "remote", cc.RemoteAddr().String())
			return nil, &clientError{fatal: true, code: codeInvalidPassword, msg: fmt.Sprintf("password authentication failed for user %q", userName)}
		}
		return nil, err
	}
	if db == config.AdminDatabase {
		if !user.Admin {
			return nil, &clientError{fatal: true, code: "42501", msg: fmt.Sprintf("user %q may not use the admin console (admin: true in users)", user.Name)}
		}
		out := appendAuth(nil, authOK, nil)
		for _, kv := range [][2]string{{"server_version", "15.0 (shardwire admin console)"}, {"server_encoding", "UTF8"}, {"client_encoding", "UTF8"},
			{"DateStyle", "ISO, MDY"}, {"integer_datetimes", "on"}, {"standard_conforming_strings", "on"}} {
			out = appendParameterStatus(out, kv[0], kv[1])
		}
		out = appendBackendKeyData(out, 0, make([]byte, 4))
		out = appendReady(out, 'I')
		if err := cc.send(out); err != nil {
			return nil, err
		}
		ok = true
		return nil, &adminHandoff{&adminSession{srv: s, client: cc, user: user}}
	}
	if db != s.config().Database {
		return nil, &clientError{fatal: true, code: codeInvalidCatalog, msg: fmt.Sprintf("database %q does not exist", db)}
	}
	params, err := newSessionParams(req.params)
	if err != nil {
		return nil, err
	}
	sess := &session{
		srv: s, client: cc, user: user, txnMode: s.config().Pool.Mode == "transaction",
		started: time.Now().UnixNano(), addr: cc.RemoteAddr().String(),
		params: params, txStatus: 'I',
	}
	sess.startupParams = sess.params.share()
	keyLen := 4
	if req.effectiveMinor() >= 2 {
		keyLen = 32
	}
	secret := make([]byte, keyLen)
	_, _ = rand.Read(secret)
	sess.secret = string(secret)
	s.register(sess)

	// Parameters as a server would report them, with the client's own values.
	p := s.pool(s.defaultPrimary(), user)
	pctx, pcancel := context.WithTimeout(context.Background(), s.config().Pool.AcquireTimeout)
	serverParams, err := p.ServerParams(pctx)
	pcancel()
	if err != nil {
		s.forget(sess)
		return nil, &clientError{fatal: true, code: codeConnectionFailure, msg: fmt.Sprintf("could not connect to the database server: %v", err)}
	}
	out := appendAuth(nil, authOK, nil)
	sess.seenBase = serverParams
	for k, v := range req.params {
		if name, ok := reportedParams[strings.ToLower(k)]; ok && serverParams[name] != v {
			if sess.seen == nil {
				sess.seen = map[string]string{}
			}
			sess.seen[name] = v
		}
	}
	for k, v := range serverParams {
		if o, ok := sess.seen[k]; ok {
			v = o
		}
		out = appendParameterStatus(out, k, v)
	}
	for k, v := range sess.seen {
		if _, ok := serverParams[k]; !ok {
			out = appendParameterStatus(out, k, v)
		}
	}
	out = appendBackendKeyData(out, sess.pid, []byte(sess.secret))
	out = appendReady(out, 'I')
	if err := cc.send(out); err != nil {
		s.forget(sess)
		return nil, err
	}
	ok = true
	return sess, nil
}

func (s *Server) register(sess *session) {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	for {
		var b [4]byte
		_, _ = rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:]) & 0x7fffffff
		if _, taken := s.sessions[pid]; !taken && pid != 0 {
			sess.pid = pid
			s.sessions[pid] = sess
			return
		}
	}
}

// appendSessions appends every registered session to dst.
func (s *Server) appendSessions(dst []*session) []*session {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	for _, sess := range s.sessions {
		dst = append(dst, sess)
	}
	return dst
}

// forget drops a session from the registry and reports whether it was
// there. A login that fails stops counting its client itself.
func (s *Server) forget(sess *session) bool {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	if s.sessions[sess.pid] != sess {
		return false
	}
	delete(s.sessions, sess.pid)
	return true
}

// unregister forgets an ended session and stops counting its client.
func (s *Server) unregister(sess *session) {
	if s.forget(sess) {
		s.clients.Add(-1)
	}
}

// cancel handles a CancelRequest: the key must match exactly.
func (s *Server) cancel(pid uint32, key []byte) {
	s.sessionsMu.Lock()
	sess := s.sessions[pid]
	s.sessionsMu.Unlock()
	if sess == nil || subtle.ConstantTimeCompare([]byte(sess.secret), key) != 1 {
		s.log.Debug("cancel request for unknown client ignored")
		return
	}
	sess.cancelRequest()
}

// UseMetrics makes the server count into r. Call it before Serve.
func (s *Server) UseMetrics(r *metrics.Recorder) { s.metrics = r }

// nodeMetrics returns the pre-resolved metrics of a node in a role.
func (s *Server) nodeMetrics(shard, addr string, writer bool) *metrics.Node {
	if s.metrics == nil {
		return nil
	}
	role := "replica"
	if writer {
		role = "primary"
	}
	return s.metrics.Node(shard, addr, role)
}

// MetricsState is the proxy's and the health checker's state for a scrape.
func (s *Server) MetricsState() metrics.State {
	st := metrics.State{Clients: int(s.clients.Load())}
	shardOf := map[string]string{}
	for _, sh := range s.config().Shards {
		shardOf[sh.Primary] = sh.Name
		for _, r := range sh.Replicas {
			shardOf[r] = sh.Name
		}
	}
	s.poolsMu.Lock()
	for k, p := range s.pools {
		ps := p.Stats()
		st.Pools = append(st.Pools, metrics.PoolState{
			Shard: shardOf[k.addr], Node: k.addr, User: k.user,
			Active: ps.Open - ps.Idle, Idle: ps.Idle, Waiting: ps.Waiting, WaitSeconds: ps.WaitTime.Seconds(),
			Dials: ps.Dials, DialErrors: ps.DialErrors,
		})
	}
	s.poolsMu.Unlock()
	if s.health() != nil {
		hm := s.health().Metrics()
		for _, n := range hm.Nodes {
			st.Nodes = append(st.Nodes, metrics.NodeState{
				Shard: n.Shard, Node: n.Addr, Role: n.Role.String(), State: n.State.String(),
				LagSeconds: n.Lag.Seconds(), LagBytes: n.LagBytes, BreakerOpen: n.BreakerOpen,
			})
		}
		for _, sh := range hm.Shards {
			st.Shards = append(st.Shards, metrics.ShardState{
				Shard: sh.Shard, Writable: sh.HasWriter, Failovers: sh.Failovers, Promotions: sh.Promotions,
				SecondsWithoutWriter: sh.TimeWithoutWriter.Seconds(),
			})
		}
	}
	return st
}

// Ready reports whether the proxy should get traffic: it is not draining and
// every shard has a writable primary. The reason says why not.
func (s *Server) Ready() (bool, string) {
	if s.draining.Load() {
		return false, "draining"
	}
	if s.health() == nil {
		return true, ""
	}
	t := s.health().Topology()
	for _, sh := range s.config().Shards {
		if t.Writer(sh.Name) == nil {
			reason := "no writable primary"
			if ts := t.Shard(sh.Name); ts != nil && ts.WriterReason != "" {
				reason = ts.WriterReason
			}
			return false, fmt.Sprintf("shard %s: %s", sh.Name, reason)
		}
	}
	return true, ""
}

// UseHealth makes routing follow c's topology: writes to each shard's
// current writer, reads to replicas fit to serve them, dials through c's
// circuit breakers. Call it before Serve.
func (s *Server) UseHealth(c *health.Checker) { s.checker.Store(c) }

// health returns the current health checker, or nil.
func (s *Server) health() *health.Checker { return s.checker.Load() }

// config returns the configuration in force.
func (s *Server) config() *config.Config { return s.cfg.Load() }

// breaker routes the pools' dial decisions to the current checker.
type breaker struct{ s *Server }

func (b breaker) AllowDial(addr string) bool {
	if c := b.s.health(); c != nil {
		return c.AllowDial(addr)
	}
	return true
}

func (b breaker) DialResult(addr string, err error) {
	if c := b.s.health(); c != nil {
		c.DialResult(addr, err)
	}
}

// defaultPrimary is the node whose parameters clients see at login.
func (s *Server) defaultPrimary() string {
	shard := s.config().DefaultShardName()
	if s.health() != nil {
		if w := s.health().Topology().Writer(shard); w != nil {
			return w.Addr
		}
	}
	sh, _ := s.config().Shard(shard)
	return sh.Primary
}

func (s *Server) pool(addr string, user config.User) *pool.Pool {
	key := poolKey{addr, user.Name}
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	p := s.pools[key]
	if p == nil {
		pc := s.config().Pool
		opts := pool.Options{
			Addr: addr, User: user.Name, Password: user.ServerPassword, Database: s.config().Database,
			Size: pc.Size, MinIdle: pc.MinIdle, IdleTimeout: pc.IdleTimeout, MaxLifetime: pc.MaxLifetime,
			ConnectTimeout: pc.ConnectTimeout, Logger: s.log,
		}
		opts.Breaker = breaker{s}
		host, _, _ := net.SplitHostPort(addr)
		var err error
		if opts.TLS, opts.TLSOptional, err = s.config().ServerTLS.ClientTLS(host); err != nil {
			// Checked when the file was loaded; if it broke since, every
			// dial fails with why rather than going without TLS.
			opts.Connect = func(context.Context) (net.Conn, pool.ServerInfo, error) { return nil, pool.ServerInfo{}, err }
		}
		if s.connect != nil {
			opts.Connect = func(ctx context.Context) (net.Conn, pool.ServerInfo, error) { return s.connect(ctx, addr) }
		}
		p = pool.New(opts)
		s.pools[key] = p
	}
	return p
}

// PoolStats returns each pool's counters, keyed by node and user.
func (s *Server) PoolStats() map[[2]string]pool.Stats {
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	out := make(map[[2]string]pool.Stats, len(s.pools))
	for k, p := range s.pools {
		out[[2]string{k.addr, k.user}] = p.Stats()
	}
	return out
}

// Clients returns the number of connected clients.
func (s *Server) Clients() int64 { return s.clients.Load() }

// Shutdown stops accepting, lets open transactions finish, and closes every
// client between transactions; after ctx ends it closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.lnMu.Lock()
	s.draining.Store(true)
	if s.ln != nil {
		_ = s.ln.Close()
	}
	s.lnMu.Unlock()
	// Wake clients idle between transactions; busy ones are woken when
	// their server connection is released.
	s.idle.wakeAll()
	s.sessionsMu.Lock()
	for _, sess := range s.sessions {
		sess.mu.Lock()
		idle := sess.server == nil
		sess.mu.Unlock()
		if idle {
			_ = sess.client.SetReadDeadline(time.Now())
		}
	}
	s.sessionsMu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("shutdown timed out with %d clients: closing them", s.clients.Load())
		s.sessionsMu.Lock()
		for _, sess := range s.sessions {
			_ = sess.client.Close()
		}
		s.sessionsMu.Unlock()
		<-done
	}
	s.idle.close()
	s.poolsMu.Lock()
	for _, p := range s.pools {
		p.Close()
	}
	s.poolsMu.Unlock()
	return err
}
