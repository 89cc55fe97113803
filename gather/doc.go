// Package gather merges the results of one statement run on several shards
// into the single result the client would have got from one server: rows
// concatenated, or merged in ORDER BY order, LIMIT and OFFSET applied after
// the merge, partial aggregates combined per group, DISTINCT applied.
//
// A Plan, built by the router from the statement, says how. The merge reads
// each shard's rows through a Source and holds at most a window of rows per
// shard, except where the answer needs every row first (aggregates and
// unsorted DISTINCT hold one entry per group or distinct row).
//
// Rows are DataRow message bodies as the servers sent them; values are
// decoded only where the merge must compare or combine them, in the text or
// binary format the server used.
//
// # Use
//
// NewMerger checks a Plan against the columns of the shards' RowDescription
// and returns a Merger, or an *UnsupportedError (SQLSTATE 0A000) naming what
// it cannot do right. ClientColumns is what the client's RowDescription
// describes (AppendRowDescription writes it). Run reads the Sources and
// calls emit with each output row (AppendDataRow frames it); it returns the
// row count for "SELECT n". Every shard must have been asked for the same
// result formats, and its session must have the same settings
// (DateStyle, TimeZone, extra_float_digits) as the others.
//
// Run stops reading as soon as the limit is reached or an error occurs;
// the caller drains or cancels what the shards still send. Errors: the
// emit function's own; *SourceError for a failing Source or a malformed
// row or value, with the source's index; *SQLError for what one server
// would have raised too (22003 when combined sums leave their type's range,
// 2201W/2201X for a negative LIMIT/OFFSET). UnsupportedError and SQLError
// have a SQLState method.
//
// # Modes
//
// Without Sort or aggregates the sources are concatenated in order, source
// 0 first. With Sort, each source must already be in that order (the
// shards ran the ORDER BY): a heap merge of the sources' current rows
// yields the merged order, rows with equal sort keys in source order, and
// only one row per source is held. A source found out of order is an error
// (ErrNotSorted) rather than a wrongly ordered result: a database whose
// collation is not C does that. Sort keys may be hidden columns (after
// Visible), which are stripped from the output.
//
// DISTINCT keeps the first of equal rows (over the visible columns). When
// sorted on visible columns only, duplicates have equal sort keys, so the
// merge remembers just the rows of the current run of equal keys (nothing
// at all when the sort keys are every visible column); otherwise, and
// unsorted, it remembers every distinct row.
//
// With Aggs or Group, the rows are the shards' partial aggregates, and the
// merge combines them per group (hashing the grouped columns' values), then
// applies Having, DISTINCT, Sort, OFFSET and LIMIT to the combined rows in
// memory: one entry per group. A column neither grouped nor aggregated
// (one that depends on the grouped ones) keeps the first row's value.
// Combining:
//
//   - AggCount: the sum of the counts, in the count column's type.
//   - AggSum: the sum in the column's type, the type sum returned on the
//     shards (int8 for sum(int2/int4), numeric for sum(int8) and
//     sum(numeric), float4/float8 for floats); NULL when every partial is.
//     Integer sums leaving their type's range fail like int8pl: 22003
//     "bigint out of range". Numeric sums are exact, with the largest
//     display scale. Float sums add in the column's precision, so they can
//     differ in the last bits from one server's sum, which adds in another
//     order; an overflow to infinity fails like float8pl.
//   - AggMin, AggMax: the least or greatest non-NULL value, sent as the
//     shard sent it.
//   - AggBoolAnd, AggBoolOr: over the non-NULL partials.
//   - AggAvg: sum/count of the partial sums (Col) and counts (CountCol).
//     For integer and numeric sums the result is numeric, computed as
//     numeric_div does in numeric_avg, int8_avg and numeric_poly_avg:
//     exact, rounded half away from zero at select_div_scale's scale (at
//     least 16 significant digits and at least the sum's display scale),
//     so avg(x) of 1 and 2 is 1.5000000000000000 as on one server. For
//     float sums it is float8 sum/count. avg(real) accumulates in float8 on
//     a server: the shards should send sum(x::float8), not sum(x), or the
//     result loses float8 precision. CountCol must count the non-NULL
//     values (count(x), not count(*)).
//
// An aggregate without GROUP BY combines the one row every shard returns,
// also over no rows (count 0, other aggregates NULL), into one row; if no
// shard returned its row, Run fails rather than invent one.
//
// # Types
//
// Values are decoded in both formats for: smallint, integer, bigint, oid,
// real, double precision, numeric (text and the binary NUMERIC form; NaN
// and the infinities), boolean, text, varchar, name, character(n), date,
// timestamp, timestamptz and uuid. They compare as Postgres's default
// operator classes do: text by bytes, that is the C collation, which is
// what our clusters use (initdb --locale=C); NaN above every other float
// and numeric; -0 equal to 0; character(n) ignoring trailing spaces;
// timestamptz by instant whatever the offset printed. Text-format dates
// and timestamps must be in DateStyle ISO (the default); text floats are
// written as float8out does with extra_float_digits above 0 (the default
// 1, and what drivers set): the shortest exact form.
//
// GROUP BY and DISTINCT need to know when two values are equal. For the
// types above the merge uses Postgres's equality (1.0 = 1.00 in numeric,
// 'a' = 'a ' in character(n), NaN = NaN), not the bytes. bytea and "char"
// compare equal exactly when their bytes are equal, so they can be grouped
// and deduplicated too, but not ordered. Any other type is refused for
// ORDER BY, GROUP BY, DISTINCT, min, max, sum and HAVING with an
// UnsupportedError: equal bytes would be a wrong guess for some of them in
// either format (interval '1 day' equals '24 hours', citext is
// case-insensitive, jsonb numbers keep their scale, binary forms are not
// canonical). Such types pass through untouched in columns the merge does
// not look at.
//
// HAVING constants are read as the column's type would read them, with an
// integer or numeric column compared exactly with a numeric constant
// (count(*) > 1.5 works) and a float column with a float8 one; a
// timestamptz constant must carry its UTC offset (the merge does not know
// the session's time zone).
package gather
