// Package shardmap turns the shard-map part of a configuration (shards,
// default_shard, tables, ring) into an immutable Map that answers "which
// shard holds this key of this table".
//
// A key value is first normalised by the table's declared key type into a
// canonical byte string (see AppendText, AppendBinary and docs/sharding.md),
// so the same value sent as a SQL literal, a text bind parameter or a binary
// bind parameter of any compatible width lands on the same shard. Then:
//
//   - hash: xxHash64 of the normalised bytes, placed on a consistent-hash
//     ring of ring.vnodes points per shard (the first point at or after the
//     hash, wrapping around);
//   - list: the shard whose list holds the value, else the table's default;
//   - range: the shard whose [from, to) holds the value, else the default;
//   - replicated: every shard;
//   - tables not listed: the default shard.
//
// A Map never changes after New returns it, so it is shared between
// goroutines without locks; a reload builds a new Map and swaps it into a
// Holder. Compare tells an operator what a new map would move.
package shardmap
