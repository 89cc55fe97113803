// Package metrics exports shardwire's figures to Prometheus.
//
// Two kinds: counters and histograms that the hot path updates (queries per
// shard, node and role; query durations; errors by SQLSTATE class; shard-map
// reloads), pre-resolved per label set so a query costs an atomic add and
// an observation, never a label lookup; and state read at scrape time from a
// callback (client connections, pool connections by state, waiting clients,
// node health, role, lag and fencing, failovers, time without a writable
// primary). Labels are bounded: shard, node address, role, user, state,
// SQLSTATE class — never SQL text or client addresses.
package metrics
