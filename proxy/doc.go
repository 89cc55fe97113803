// Package proxy serves PostgreSQL clients: startup and TLS, authentication
// (SCRAM-SHA-256, md5, trust), and every message of the simple and extended
// protocols, relayed to server connections borrowed from package pool.
//
// # One session, at most two goroutines, none while idle
//
// A busy client has one goroutine that reads the client and writes to the
// attached server connection; it reads the server's replies itself after
// each flush point. A second goroutine relays what the server sends when
// replies must flow while the client is read: slow statements (no reply by
// the idle waiter's next sweep, within 100 ms; 5 ms where there is no
// waiter), large pipelines, pinned connections and session mode. Both
// share the session's state under one mutex; socket I/O never happens under
// it, so a slow client cannot block the server side or the reverse (large
// pipelines cannot deadlock).
//
// A client idle between transactions ends up with no goroutine at all. It
// first waits on its own goroutine, which costs nothing per transaction;
// the idle waiter (idle_linux.go) sweeps every 100 ms and wakes a client
// still waiting, whose session then parks: one epoll instance watches every
// parked client's socket and is itself waited on through Go's netpoller.
// When the socket turns readable (a query, or a hang-up) the session is
// handed to a worker: a goroutine that served a session before, so its
// stack has already grown. A parking session lends its reusable buffers to
// that worker, so a parked client holds little more than its session state
// and socket. Only plain sockets on Linux are parked, in transaction mode;
// TLS clients and other systems wait on their own goroutine with a 256-byte
// buffer.
//
// # Transaction pooling
//
// A server connection is borrowed at the first message that needs one and
// handed back at ReadyForQuery 'I' with nothing in flight (every forwarded
// message is matched to its reply in an ordered queue of "slots"). What a
// transaction-pooled client must not notice:
//
//   - Prepared statements. A client's named statement is renamed to a
//     proxy-global name derived from its text and parameter types
//     (sw_<xxhash64>). Each server connection remembers which global
//     statements it holds (a bounded LRU); a Bind or Describe on a connection
//     that lacks the statement is preceded by an injected Parse whose
//     ParseComplete is swallowed. The client's Close is answered by the proxy.
//     A Parse of a statement some server already accepted is answered without
//     borrowing, so a client preparing outside a transaction cannot starve
//     (pgbench -M prepared with more clients than connections). The unnamed
//     statement is re-sent when a Bind reaches a connection that lacks it.
//   - Session state. SET/RESET/DISCARD (simple or extended protocol) are
//     tracked per client from the statement text once Postgres confirms them
//     (inside a transaction: at COMMIT; dropped at ROLLBACK, and those made
//     since a savepoint at ROLLBACK TO it: see survivingChanges; a Query
//     string's statements one CommandComplete at a time); startup
//     parameters count too. A fingerprint of the state is compared on every
//     borrow; a connection whose state differs gets "RESET ALL; SET …" first.
//   - Things bound to one backend pin the client to its connection for the
//     rest of the session: SQL PREPARE, LISTEN, session advisory locks, WITH
//     HOLD cursors, temporary tables.
//
// In session mode a client keeps one connection; it is reset with DISCARD
// ALL before another client gets it.
//
// # Several shards
//
// A statement whose route spans shards runs outside a transaction block on
// a fanout: one connection per shard, borrowed for the statement. Reads are
// merged by package gather (scatter.go), multi-row INSERTs split
// (split.go), COPY FROM split row by row (copyin.go) and COPY TO gathered
// (copyout.go), writes to replicated tables and keyless writes run on
// every shard. A transaction block that moves between shards parks its
// connections and commits them with two-phase commit and a decision record
// on the default shard (twophase.go), which RecoverPrepared uses to finish
// what a dead instance left prepared. docs/crossshard.md has the rules.
//
// # Failure
//
// A client that vanishes mid-transaction has its backend's query cancelled
// and the connection discarded at once. A server connection that breaks is
// reported to the client (08006) with a ReadyForQuery for every pending
// Sync, and the session stays usable in transaction mode. A panic in one
// session closes that client only.
package proxy
