// Package health watches the PostgreSQL nodes of every shard, publishes
// what it knows as an immutable Topology, and moves writes when a primary
// fails (failover.mode follow or promote).
//
// # Use from the proxy
//
// New(cfg, Options{}) then Start(ctx); Close at shutdown. Everything the
// proxy calls is non-blocking:
//
//   - Topology() returns the current snapshot (atomic load). Per shard:
//     Writer (nil when no writable primary is known, WriterReason says why),
//     Readers (replicas that may take reads now), Nodes with role, state,
//     timeline, LSNs, lag, last error. A transaction keeps the snapshot it
//     started with. Topology.Changed() is closed when a newer snapshot
//     replaces it; WaitWriter(ctx, shard) waits on that for a writer (a write
//     arriving mid-failover waits up to pool.acquire_timeout).
//   - Topology.ReplayLSN(addr) is a replica's replay position as of its last
//     check (a lower bound of the real one) for read-your-writes, and
//     Topology.WriterLSNAfter(shard, t) the writer's WAL insert position read
//     by a check sent after t: every commit acknowledged before t is at or
//     below it (even with synchronous_commit off), so it is the target a
//     client that committed at t needs, with no extra round trip, known
//     within about one health.interval of t.
//   - ReportFailure(addr, err): a session met a connection error on a node.
//   - AllowDial(addr) / DialResult(addr, err): the per-node circuit breaker
//     for the pools' connection attempts (return ErrCircuitOpen when
//     AllowDial says no).
//   - Unfence(ctx, addr): the operator's re-attach of a fenced node.
//   - Metrics(): counters and gauges as plain values.
//
// # Checks
//
// One goroutine per node checks it every health.interval, with
// health.timeout for connecting plus querying, over a connection of its own
// (pgconn, application_name shardwire-health), reopened when broken: when
// the kept connection fails, the same check retries once on a new one, so
// a restart that is already over costs no failure and a crashed node is
// seen as "connection refused" at once. One query, one round trip, reads
// pg_is_in_recovery(), the timeline, and the WAL positions:
// pg_current_wal_lsn() and pg_current_wal_insert_lsn() on a primary; on a
// replica
// pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn() and the age of
// pg_last_xact_replay_timestamp() while received WAL awaits replay. The
// checker logs in as Options.User, else the first admin user, else the
// first user, with its server_password, to the configured database.
//
// Timelines. A primary's timeline is read from the name of its current WAL
// file (pg_walfile_name(pg_current_wal_lsn())), which is the timeline it
// writes on from the moment promotion ends; pg_control_checkpoint() would
// report the old timeline until the next checkpoint, which after a fast
// promotion may be minutes away, and so would hide a fresh promotion from
// the follow rule. A replica cannot call pg_walfile_name; its timeline is
// the newer of the timeline its WAL receiver receives
// (pg_stat_wal_receiver.received_tli, visible to superusers and members of
// pg_read_all_stats only) and that of its last restartpoint
// (pg_control_checkpoint()). Only fenced nodes need a replica's timeline
// (to see them re-attached), so without pg_read_all_stats that takes until
// the replica's next restartpoint, or Unfence.
//
// Up and down. failures_before_down consecutive failures mark a node down,
// successes_before_up consecutive successful checks bring it back (its very
// first check decides either way). Errors saying the node does not serve at
// all (connection refused, SQLSTATE 57P02/57P03) mark it down at
// once: nothing to smooth over, and a dead replica stops getting reads
// before the next check. A session's ReportFailure counts as one failure
// (however many arrive between two checks) and triggers a check right away;
// it never starts a failover, which takes failed checks of the checker.
//
// Lag. The checker keeps the recent history of the writer's WAL position
// (time first seen, position). A replica is as far behind as the oldest
// position it has not replayed is old, at the time of its check: it misses
// data that existed then. A replica that replayed every position seen lags
// by less than an interval and reports 0, so a quiet primary never makes
// replicas look lagged, and a replica whose WAL receiver died while the
// primary writes on is seen falling behind. The measure is a lower bound
// that is late by at most one check of the primary. Byte lag is the
// writer's newest position seen by the replica's check minus the replica's
// replay position. While the writer is down or unknown there is nothing to
// compare with and nothing new arrives: lag is then the replica's own
// view, the replay timestamp's age while received WAL awaits replay (else
// 0), and bytes received but not replayed. A replica takes reads while
// up, not fenced, and within routing.max_replica_lag and
// routing.max_replica_lag_bytes (0 disables either limit).
//
// # Writes and failover
//
// Each shard has a leader: the configured primary until a failover. Writes
// go to the one node that is up, not fenced, reports primary, and is on the
// highest timeline among such nodes, if that node is the leader, or is on a
// timeline newer than the leader's (then it becomes the leader: follow).
// Two nodes claiming primary on the same highest timeline is undecidable:
// no writer ("writes fail clearly rather than split brain"). With
// failover.mode off writes only ever go to the configured primary.
//
// follow: when a node reports primary on a newer timeline (someone such as
// Patroni, repmgr or a cloud service promoted it), writes move to it at the
// check that sees it, so within interval × failures_before_down plus an
// interval of the old primary's failure whenever the promotion itself is
// that quick.
//
// promote: when the leader has failed failures_before_down consecutive
// checks and failover.grace has passed since, and no other node reports
// primary, shardwire promotes the up, unfenced replica with the most WAL
// (received or replayed, whichever is further; ties: replayed, then
// configuration order), among replicas checked since the primary began
// failing. Just before, it asks every other node again and gives up if one
// reports primary on the old timeline or newer (the old primary is back,
// or somebody else promoted). Then SELECT pg_promote(true, 60), waits until
// the node hands out a transaction id (accepts writes), and moves writes
// there. The other replicas are re-pointed: their primary_conninfo keeps
// every keyword (replication user, password, sslmode, application_name)
// but host and port, which become the new primary's address as configured
// (built from the checker's login when the setting is unreadable), then
// ALTER SYSTEM SET primary_conninfo, ALTER SYSTEM SET
// recovery_target_timeline = 'latest', SELECT pg_reload_conf(): PostgreSQL
// 13 and later restart the WAL receiver on reload and follow the new
// timeline ('latest' is the default since PostgreSQL 12; the setting only
// guards against a replica configured otherwise, from its next restart). Replicas down at that moment are re-pointed when they come back;
// failures are retried with a back-off. Every decision is logged with its
// reason. The checker's user needs to be a superuser for promote, or hold
// EXECUTE on pg_promote and pg_reload_conf, ALTER SYSTEM on
// primary_conninfo and recovery_target_timeline, and pg_read_all_settings.
//
// One promoter: run exactly one shardwire with failover.mode promote per
// shard; any others use follow (they move writes when they see the new
// primary). The guard above narrows the race between two promoters to the
// moment between its question and pg_promote; it cannot close it.
//
// Fencing. After writes leave a node, it is fenced: no writes and no reads.
// So is any node reporting primary on a timeline older than the newest one
// seen in the shard (a former primary restarted in place). A fenced node is
// re-attached when a check after the fence sees it as a replica on the
// leader's timeline or newer: after pg_rewind --source-server=<new primary>,
// standby.signal and primary_conninfo pointing at the new primary, it comes
// back as a replica of the new timeline (immediately visible when the
// checker may read pg_stat_wal_receiver, else at its first restartpoint).
// Unfence is the operator's shortcut.
//
// Fencing state lives in memory. A restarted shardwire trusts the highest
// timeline it sees: if the new primary is down and the old one up at that
// moment, and no replica reveals the newer timeline, it would send writes
// to the old one. Fix the configuration (list the new primary as primary)
// after a failover, and rewind or remove old primaries.
package health
