package router

import (
	"strings"
	"sync"
)

// readOnlyExtra are pg_catalog functions that PostgreSQL marks VOLATILE but
// that change nothing and behave the same on a replica, plus read-only
// builtins added after PostgreSQL 15 (the catalog builtin_functions.go was
// generated from).
var readOnlyExtra = []string{
	// volatile, read-only
	"clock_timestamp", "timeofday", "random", "gen_random_uuid", "pg_sleep", "pg_sleep_for", "pg_sleep_until",
	"pg_is_in_recovery", "pg_last_wal_receive_lsn", "pg_last_wal_replay_lsn", "pg_last_xact_replay_timestamp",
	"pg_is_wal_replay_paused", "pg_get_wal_replay_pause_state",
	"pg_database_size", "pg_relation_size", "pg_table_size", "pg_indexes_size", "pg_total_relation_size", "pg_tablespace_size",
	"pg_lock_status", "pg_blocking_pids", "pg_safe_snapshot_blocking_pids", "pg_notification_queue_usage",
	"pg_jit_available", "pg_partition_tree", "pg_partition_ancestors", "pg_sequence_last_value",
	"pg_xact_status", "txid_status", "pg_xact_commit_timestamp", "pg_xact_commit_timestamp_origin", "pg_last_committed_xact",
	"pg_collation_actual_version", "pg_database_collation_actual_version", "current_query",
	"pg_control_checkpoint", "pg_control_init", "pg_control_recovery", "pg_control_system",
	"pg_get_backend_memory_contexts", "pg_get_shmem_allocations", "pg_current_logfile", "lo_get",
	// PostgreSQL 16–18 read-only builtins
	"any_value", "random_normal", "array_sample", "array_shuffle", "erf", "erfc", "date_add", "date_subtract",
	"pg_input_is_valid", "pg_input_error_info", "to_bin", "to_oct", "uuid_extract_timestamp", "uuid_extract_version",
	"uuidv4", "uuidv7", "crc32", "crc32c", "array_reverse", "array_sort", "gamma", "lgamma", "casefold", "pg_basetype",
}

// writeOverride are functions the catalog marks STABLE that must still go
// to the primary: they assign a transaction ID, which a replica refuses.
var writeOverride = []string{"txid_current", "pg_current_xact_id"}

// builtinReadOnly is the set of pg_catalog function names a read may call.
var builtinReadOnly = sync.OnceValue(func() map[string]struct{} {
	names := strings.Fields(builtinStableFunctions)
	m := make(map[string]struct{}, len(names)+len(readOnlyExtra))
	for _, n := range names {
		m[n] = struct{}{}
	}
	for _, n := range readOnlyExtra {
		m[n] = struct{}{}
	}
	for _, n := range writeOverride {
		delete(m, n)
	}
	return m
})

// builtinOperators are the operator names of PostgreSQL 15's pg_catalog
// whose implementing function is not volatile (and != which the parser
// turns into <>). An expression using any other operator may call a user
// function, so it makes a statement a write.
var builtinOperators = func() map[string]struct{} {
	ops := `!! !~ !~* !~~ !~~* # ## #- #> #>> % & && &< &<| &> * *< *<= *<> *= *> *>= + - -> ->> -|- / < <->
		<< <<= <<| <= <> <@ <^ = > >= >> >>= >^ ? ?# ?& ?- ?-| ?| ?|| @ @-@ @> @? @@ @@@ ^ ^@ | |&> |/ |>> ||
		||/ ~ ~* ~<=~ ~<~ ~= ~>=~ ~>~ ~~ ~~* !=`
	m := make(map[string]struct{})
	for _, op := range strings.Fields(ops) {
		m[op] = struct{}{}
	}
	return m
}()

// functionSet is the read-only function list of one Analyzer: the
// builtins plus Config.ReadOnlyFunctions.
type functionSet struct {
	anySchema map[string]struct{} // configured "name": any schema
	qualified map[string]struct{} // configured "schema.name"
}

func newFunctionSet(extra []string) functionSet {
	fs := functionSet{anySchema: map[string]struct{}{}, qualified: map[string]struct{}{}}
	for _, f := range extra {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		if strings.Contains(f, ".") {
			fs.qualified[f] = struct{}{}
		} else {
			fs.anySchema[f] = struct{}{}
		}
	}
	return fs
}

// readOnly reports whether a call of schema.name (schema "" when the call
// was not qualified) is allowed in a read.
func (fs functionSet) readOnly(schema, name string) bool {
	if schema == "" || schema == "pg_catalog" {
		if _, ok := builtinReadOnly()[name]; ok {
			return true
		}
	}
	if _, ok := fs.anySchema[name]; ok {
		return true
	}
	if schema != "" {
		if _, ok := fs.qualified[schema+"."+name]; ok {
			return true
		}
	}
	return false
}
