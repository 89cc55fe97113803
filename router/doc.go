// Package router analyses SQL text for the proxy: what a statement does to
// session state, whether it may run on a replica, and which tables it names.
// It does no I/O; the proxy executes what it decides.
//
// # Layers
//
// Lexer is a hand-written scanner for PostgreSQL's SQL syntax (scan.l, with
// standard_conforming_strings on): -- and nested /* */ comments, '…' strings
// with doubled-quote escapes and newline continuation, E'…' with backslash escapes,
// N'…', U&'…' [UESCAPE 'c'], B'…', X'…', $tag$…$tag$, "identifiers" with ""
// escapes, numbers (1e10, .5, 0x1F, 0o17, 0b101, 1_000), $n parameters,
// operators (with PostgreSQL's rule for trailing + and -) and punctuation.
// It never fails or panics and always advances; an unterminated string,
// identifier or comment runs to the end of the input.
//
// Normalize turns a statement into its shape: literals become the
// placeholder $? (never valid SQL, so it cannot collide with a statement's
// own text or with a $n parameter), comments go, unquoted words are
// lower-cased and spacing is canonical. AppendNormalize does the same into
// caller buffers without allocating. Comments are dropped from the shape
// including shardwire hints: the hints are reported by Inspect, and a
// /* shardwire: key=42 */ kept in the shape would make each key value a new
// shape and defeat the cache.
//
// Inspect reads a simple Query string (several statements separated by ;)
// with the lexer alone: per statement its Command, SET/RESET effects,
// transaction access mode, pin reason and hints. It is cheap enough for every
// query: one pass, no allocation for ordinary statements via AppendInspect.
// It does not validate SQL: the server does. The proxy should record a SET
// only once the server has accepted it, and remember that a SET inside a
// transaction block is undone by ROLLBACK (or ROLLBACK TO a savepoint taken
// before it) and that SET LOCAL never outlives the transaction.
//
// Analyzer.Classify decides read or write with PostgreSQL's real grammar
// (pg_query_go, PostgreSQL 17's parser) on a cache miss, behind a cache of
// analyses keyed by shape and bounded in estimated bytes (see below). It
// also lists the tables a statement names. A session that keeps a Scratch
// and calls ClassifyWith gets the shape and literals of each statement
// without allocating.
//
// # Read or write
//
// A statement is a read (ClassRead) when it is SELECT, VALUES, TABLE, SHOW,
// EXPLAIN without ANALYZE, EXPLAIN ANALYZE of a read, or COPY … TO STDOUT of
// a read, and it has no FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE, no SELECT
// INTO, no INSERT/UPDATE/DELETE/MERGE anywhere (data-modifying CTEs), and
// calls only read-only functions and built-in operators. Everything else is
// ClassWrite, and what the parser cannot parse is ClassUnknown, which the
// proxy treats as a write. A Query string is a read only if all its
// statements are.
//
// Read-only functions are the pg_catalog functions, aggregates and window
// functions that PostgreSQL 15 marks IMMUTABLE or STABLE (it forbids those
// to modify data; builtin_functions.go lists them and says how the list was
// made), plus volatile ones that only read (random, clock_timestamp,
// pg_is_in_recovery, pg_relation_size, …), called unqualified or as
// pg_catalog.f. Left out on purpose: nextval, setval, currval and lastval
// (currval and lastval read session state that lives on the primary where
// nextval ran), txid_current and pg_current_xact_id (they assign a
// transaction ID, which a replica refuses), set_config, advisory lock
// functions, pg_current_wal_lsn (fails on a replica), and functions that run
// a query given as text (query_to_xml, ts_stat). Config.ReadOnlyFunctions
// extends the list: "f" allows f in any schema, "s.f" only s.f. An operator
// outside PostgreSQL's built-in operator names, or qualified with a schema
// other than pg_catalog, may call a user function and makes a write.
//
// Not seen: a view or type I/O function that calls a writing function, and a
// user function that shadows a built-in name in a schema searched before
// pg_catalog. Such databases must not rely on automatic read routing.
//
// The cached analysis must depend only on the shape, since all statements
// of one shape share it; the walker therefore never looks at constant
// values. EXPLAIN's ANALYZE option counts whatever its value, because
// EXPLAIN (ANALYZE 'off') and (ANALYZE 'on') have the same shape.
//
// # Pinning
//
// In transaction pooling a server connection serves many clients, so state
// that outlives a transaction must either be re-created on whichever
// connection a client borrows (settings: tracked via SetCommand) or keep the
// client on its connection. Statement.Pin names the second kind:
//
//   - SQL PREPARE (protocol-level Parse is handled by the proxy instead);
//   - LISTEN (notifications arrive on that connection);
//   - pg_advisory_lock, pg_advisory_lock_shared, pg_try_advisory_lock,
//     pg_try_advisory_lock_shared: session-level locks (the _xact_ variants
//     end with the transaction and do not pin);
//   - DECLARE … WITH HOLD (the cursor outlives the transaction);
//   - CREATE TEMP/TEMPORARY TABLE, VIEW or SEQUENCE, CREATE … pg_temp.x, and
//     SELECT … INTO TEMP, except CREATE TEMP TABLE … ON COMMIT DROP;
//   - set_config(name, value, is_local) unless is_local is literally TRUE:
//     it changes a setting without a SET statement the proxy could replay;
//   - LOAD (a library loaded into one backend).
//
// SET ROLE and SET SESSION AUTHORIZATION do not pin: they are ordinary
// settings ("role", "session_authorization") that SetCommand.SQL re-applies,
// so the proxy tracks them like any other. Note that RESET ALL leaves both
// alone, as in PostgreSQL, so resetting a connection for another client must
// reset them explicitly (or use DISCARD ALL). PgBouncer pins nothing; these
// choices are shardwire's.
//
// # Hints
//
// A comment /* shardwire: role=primary */ (or role=replica, role=auto,
// shard=NAME, key=VALUE; several pairs separated by spaces or commas, in
// /* */ or -- comments anywhere in the statement) overrides routing for that
// statement. An unknown key or a bad value sets Hints.Err, which the proxy
// should return to the client rather than guess.
//
// # Limits
//
// pg_query's C code converts the parse tree to protobuf recursively without
// a stack check: a left-deep chain of about 23,000 binary operators, casts,
// joins or UNIONs overflowed an 8 MiB thread stack and killed the process
// (measured with pg_query_go v6.2.5). The Analyzer therefore does not parse
// a statement with more than 3,000 such operators and keywords, a name of
// more than 64 dotted parts (the grammar joins those quadratically), more
// than 256 KiB of text, or text that cannot be SQL (an unterminated string,
// identifier or comment, a stray $?); it routes them as ClassUnknown, with
// the reason. Parsing costs about 2 µs per select-list item, so the 256 KiB
// cap also bounds the CPU one cache miss can take. The grammar is
// PostgreSQL 17's: it accepts a few forms PostgreSQL 15 rejects (0x1F,
// 1_000), which the server then rejects itself, and a statement it cannot
// parse is ClassUnknown, which is safe.
//
// # Literals and shapes
//
// The i-th literal Normalize (or Scratch.Literals) reports is the i-th $? of
// the shape; Literal.Start is its offset in the original text, which is
// what the parser reports as a constant's location (except that for a
// negated number, -5 or - 5, the parser reports the minus sign's offset
// and the lexer the digit's), so a cached analysis can refer to "literal
// i" and each statement supplies the values with Literal.Value. Continued strings ('a' newline 'b') are one literal, and a
// U&'…' literal includes its UESCAPE clause.
//
// # Cache
//
// Analyses are cached by shape in a sync.Map keyed by a seeded hash (the
// shape itself is compared on a hit), so hits take no lock and sessions do
// not contend. A mutex guards inserts and CLOCK eviction; the budget counts
// each entry's strings plus a fixed overhead, and a single analysis larger
// than an eighth of the budget is not cached. A cached shape costs one
// lexer pass, one hash and one map lookup (see BenchmarkClassifyCached).
package router
