// Package router analyses SQL text for the proxy: what a statement does to
// session state, whether it may run on a replica, which tables it names,
// and on which shards of a shard map it must run. It does no I/O; the
// proxy executes what it decides.
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
// One plain SELECT, UPDATE or DELETE made only of words, numbers, spaces and
// simple punctuation (no call, literal, comment or INTO) is answered by a
// byte scan without the lexer; FuzzInspect checks both agree.
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
// Key resolution (see Sharding) costs about the size of the WHERE and ON
// clauses per class of equal columns, thanks to a union-find per query
// level and memoisation, and is capped by a work budget per analysis
// (fixBudget): past it, the remaining columns are left unfixed, so their
// tables are refused rather than misrouted. Statements built to defeat it
// (1,000 chained equalities, 1,000 FROM items by 1,000 unqualified names,
// 1,000 chained outer joins) analyse in about as long again as the parse
// itself (TestKeyAnalysisCost).
//
// # Literals and shapes
//
// The i-th literal Normalize (or Scratch.Literals) reports is the i-th $? of
// the shape; Literal.Start is its offset in the original text, which is
// what the parser reports as a constant's location (except that for a
// negated number, -5 or - 5, the parser reports the minus sign's offset
// and the lexer the digit's; the key walker records such a value as
// "literal i, negated"), so a cached analysis can refer to "literal i" and
// each statement supplies the values with Literal.Value. Continued
// strings ('a' newline 'b') are one literal, and a U&'…' literal includes
// its UESCAPE clause.
//
// # Sharding
//
// Analyzer.Route decides where a statement runs on a shardmap.Map. On a
// cache miss the walker also records, per statement, every relation it
// names and where the statement fixes a column of that relation to
// constants ("key references"). They depend only on the shape: a value is
// "literal i" (the i-th literal of Scratch.Literals, read with
// Literal.Value from the text of each execution) or "$n" (a bind
// parameter), never the value itself. Since the map may change under a
// cached analysis, every column is recorded, not just today's key; Route
// looks up each table's key column in the map it is given.
//
// Recognised, for a table T with key k:
//
//   - WHERE k = c, c = k, k IS NOT DISTINCT FROM c, k IN (c, …),
//     k = ANY(ARRAY[c, …]), k = ANY('{…}') and k = ANY($n) (an array in
//     text or binary format), (k, x) = (c, y); c is a literal, a negated
//     number (-5: the parser points at the sign, the lexer at the digits,
//     which literalAt reconciles), or $n, optionally under one cast to the
//     key's type family ('42'::bigint, DATE '2026-01-01', CAST($1 AS uuid)).
//     A cast to another type is not used, as it may change the value
//     ('2026-01-01 10:00'::date is midnight), and neither is a cast on the
//     column side (ts::date = … spans many keys);
//   - qualified as k, T.k, schema.T.k or alias.k; an unqualified name in
//     the query level that names T is T's column (or ambiguous, which
//     Postgres rejects);
//   - AND: each conjunct that fixes k narrows it (the intersection of
//     shard sets; an empty intersection matches no row); OR: only if every
//     branch fixes k (the union); NOT, <>, LIKE, BETWEEN, IS NULL,
//     subqueries (k IN (SELECT …)) and expressions (k = $1 + 1) fix nothing;
//   - equalities between columns in WHERE and inner-join ON (and USING)
//     carry a fixed key to the other side, also through several hops; an
//     outer join's ON fixes only its nullable side (customers c LEFT JOIN
//     orders o ON o.customer_id = c.id WHERE c.id = 5 fixes both), and a
//     subquery's equality with an outer column (EXISTS (… WHERE o.k =
//     c.id), LATERAL) takes the outer column's condition;
//   - CTEs, subqueries in FROM, sublinks, UNION branches and data-modifying
//     CTEs: each occurrence of T must have its key fixed in its own query
//     level. A condition outside the level where T is named does not reach
//     it (WITH x AS (SELECT * FROM orders) SELECT … FROM x WHERE k = 1 is
//     refused);
//   - INSERT INTO T (cols) VALUES (…), (…): per row, the constant or $n at
//     k's position (the union over rows). No column list, DEFAULT, NULL, an
//     expression or INSERT … SELECT give no usable key (the column order of
//     the table is not known to the router);
//   - UPDATE T SET k = …, and INSERT … ON CONFLICT DO UPDATE SET k = …: k = k
//     and k = EXCLUDED.k are allowed; a constant that lives on the same
//     single shard as the rows is allowed; anything else is refused.
//
// Route's rules, per statement: a table the map does not list is
// unsharded and needs the default shard; tables in pg_catalog,
// information_schema, pg_temp and unqualified pg_* names are on every
// server and need nothing; a replicated table needs any one shard when
// read and every shard when written (Route.Replicated); a sharded table
// needs the shards of its key values. Every table of one statement must
// need the same shard set, otherwise the statement is refused (0A000):
// a join of sharded tables on different shards, an unsharded table with a
// sharded key that is not on the default shard, a replicated write fed
// from one shard. The statements of a Query string add up (union): a
// result with several shards is returned, not refused, and the caller
// decides (it may not run it yet). A statement naming no table (SELECT 1,
// BEGIN, FETCH) gets the default shard with NoTables set, so that a
// transaction already on another shard keeps it there.
//
// A SELECT, UPDATE or DELETE with no usable key for a sharded table runs
// on every shard the table may have rows on (By ByScatter); every other
// table of the statement must agree with that set as above. An UPDATE or
// DELETE that spans several shards (so, or by a key set) may not read
// another sharded table (a join or subquery would see only its own
// shard's rows); a SELECT is checked by PlanScatter (see Scatter-gather).
//
// Refused, with a *RouteError carrying the SQLSTATE: a sharded table
// without a usable key in an INSERT, COPY, MERGE, DDL or TRUNCATE (0A000,
// naming the table and its key column); an update of the key (0A000); a statement needing several incompatible shard sets
// (0A000); a key value its type cannot read (the shardmap.ValueError's
// code: 22P02, 22003, 22007, 22008, 22P03, 42804); an INSERT of a list or
// range value no shard holds (23514). In a read, UPDATE or DELETE such a
// value, k = NULL, or contradicting conditions match no row: the route
// says AnyShard (ByNoRows). A statement the parser rejects goes to the
// default shard, whose server reports the error; one too long or complex
// to parse is refused (0A000). A parse failure that depends on the
// literals (DATE 5 shares its shape with DATE '2026-01-01') or on the
// text's length is never cached, so it cannot hide a valid statement of
// its shape.
//
// Not seen: views, functions and rules that read sharded tables (a view
// not in the map is an unsharded table), search_path (an unqualified name
// is looked up as written, i.e. as public.name), and sequences.
//
// Hints and session settings override, in this order: a statement's
// /* shardwire: shard=NAME */, its /* shardwire: key=VALUE */, the
// session's SET shardwire.shard, then SET shardwire.key, then the keys in
// the statement. A shard hint or setting sends the statement to that shard
// whatever it is, DDL included (the way to run maintenance per shard). A
// key hint or setting replaces the key values of every sharded table in
// the statement, placed with each table's type and strategy (they must
// agree); unsharded and replicated tables keep their rules, and an update
// of the key is still refused. For a statement naming no table (a
// function call, BEGIN) the key is placed as the map's hash tables place
// it, if all those that accept the value agree; otherwise it is ignored.
//
// The cost for a cached shape is one map lookup per table, one Locate
// per key value and no allocation (BenchmarkRouteCached).
//
// # Scatter-gather
//
// Analyzer.PlanScatter plans a SELECT whose Route spans several shards:
// the SQL each shard runs and a gather.Plan saying how the proxy merges
// the rows, so that the client gets exactly what one server holding every
// row would return. What it cannot show to be exact it refuses (0A000,
// "SELECT across shards is not supported: <construct>").
//
// Where rows come from: a query level may read one group of sharded
// tables, co-located (shardmap.Table.Colocated) and joined on equal keys
// (in the ON clause of each join that combines them, or in WHERE; through
// other columns too, o.customer_id = x.c AND x.c = c.id), plus replicated
// tables; then each joined row is on one shard. An outer join whose
// preserved side has no sharded table is refused (its rows would come
// back once per shard), and so are unsharded tables and system catalogs.
// A subquery (EXISTS, IN, scalar, LATERAL) may read sharded tables only
// if its WHERE ties their key to a key of the enclosing row (o.customer_id
// = c.id, or c.id IN (SELECT o.customer_id …) as a condition of WHERE):
// all the rows it can read are then on that row's shard, so it may even
// aggregate. A FROM subquery or CTE over sharded tables that keeps rows
// apart (no aggregate, GROUP BY, DISTINCT, LIMIT or window) is a sharded
// relation whose key is the output columns equal to its tables' key.
// Refused: set operations, SELECT INTO, FOR UPDATE/SHARE, data-modifying
// WITH, window functions, TABLESAMPLE, functions in FROM other than
// unnest, generate_series and the JSON/regexp set-returning functions.
//
// How rows merge: ORDER BY items resolve as Postgres resolves them (a
// position, an output name, else an input expression) to output columns,
// or to hidden columns appended for the merge ("?sw_sort_N", with
// Plan.Visible and Plan.Hidden; after SELECT * the plan numbers columns
// from the end); ASC/DESC and NULLS FIRST/LAST are kept; a COLLATE other
// than "C", "POSIX" or "default" and USING are refused. LIMIT n OFFSET m
// becomes LIMIT n+m on the shards and both in the plan; $n operands become
// LIMIT $l::int8 + $o::int8 and LimitParam/OffsetParam. Aggregates: count,
// sum, min, max, bool_and, bool_or, every, and avg as a sum (keeping the
// column's name) and a hidden count; DISTINCT is refused except for min,
// max and the booleans, where it changes nothing; FILTER is kept; any
// other aggregate, an expression on an aggregate, a function shardwire
// does not know (it may be a user-defined aggregate) is refused. GROUP BY
// items (positions, output names, expressions) become plan columns,
// hidden if not output; every other output must be an aggregate, a GROUP
// BY item or a constant; GROUPING SETS, ROLLUP and CUBE are refused.
// HAVING must be a conjunction of "aggregate or GROUP BY item op constant"
// and moves to the plan; the shards of an aggregate query get no HAVING,
// ORDER BY, DISTINCT, LIMIT or OFFSET (a $n operand stays as NULLIF($n,
// $n), so the client's Bind still fits). DISTINCT (not DISTINCT ON) stays
// on the shards of a plain query and is applied again by the merge.
//
// Known limits: a GROUP BY name that is both an output name and an input
// column of another meaning is taken as the output column (Postgres takes
// the input column; the query is then valid only through a primary key's
// functional dependency); an aggregate inside a subquery of the select
// list whose argument is an unqualified column the subquery's tables lack
// belongs to the outer query in Postgres, which PlanScatter cannot see;
// volatile functions (now(), random()) are evaluated by each shard; text
// order in the merge is byte order (databases in the C locale).
//
// Plans are cached by exact text per shard map (4 MiB); a cached plan
// costs a map lookup (BenchmarkPlanScatterCached).
//
// # Cache
//
// Analyses are cached by shape in a sync.Map keyed by a seeded hash (the
// shape itself is compared on a hit), so hits take no lock and sessions do
// not contend. A mutex guards inserts and CLOCK eviction; the budget counts
// each entry's strings and key references plus a fixed overhead, and a
// single analysis larger than an eighth of the budget is not cached. A
// cached shape costs one lexer pass, one hash and one map lookup (see
// BenchmarkClassifyCached).
package router
