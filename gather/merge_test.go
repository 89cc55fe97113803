package gather

import (
	"context"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

var (
	intText  = col("id", oidInt8, 0)
	intBin   = col("id", oidInt8, 1)
	nameText = col("name", oidText, 0)
)

func TestConcat(t *testing.T) {
	t.Parallel()
	a := [][]byte{row(tx("1"), tx("a")), row(tx("2"), nil)}
	b := [][]byte{}
	c := [][]byte{row(tx("3"), tx("c")), row(tx("1"), tx("a")), row(tx("4"), tx(""))}
	all := [][]byte{a[0], a[1], c[0], c[1], c[2]}
	cases := []struct {
		name          string
		plan          Plan
		limit, offset int64
		want          [][]byte
	}{
		{"all in source order", Plan{}, -1, 0, all},
		{"limit within the first source", Plan{}, 1, 0, all[:1]},
		{"limit across sources", Plan{}, 3, 0, all[:3]},
		{"offset across sources", Plan{}, -1, 3, all[3:]},
		{"offset and limit", Plan{}, 2, 1, all[1:3]},
		{"offset past the end", Plan{}, 5, 10, nil},
		{"limit 0", Plan{}, 0, 0, nil},
		{"hidden column stripped", Plan{Visible: 1}, -1, 0, [][]byte{
			row(tx("1")), row(tx("2")), row(tx("3")), row(tx("1")), row(tx("4")),
		}},
		{"distinct", Plan{Distinct: true}, -1, 0, [][]byte{a[0], a[1], c[0], c[2]}},
		{"distinct over visible columns", Plan{Distinct: true, Visible: 1}, -1, 0, [][]byte{
			row(tx("1")), row(tx("2")), row(tx("3")), row(tx("4")),
		}},
		{"distinct then offset and limit", Plan{Distinct: true}, 2, 2, [][]byte{c[0], c[2]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustMerge(t, tc.plan, []Column{intText, nameText})
			got, err := runAll(t, m, sources(a, b, c), tc.limit, tc.offset)
			if err != nil {
				t.Fatal(err)
			}
			equalRows(t, got, tc.want)
		})
	}
}

// TestConcatStopsAtLimit checks that a satisfied limit stops the reading.
func TestConcatStopsAtLimit(t *testing.T) {
	t.Parallel()
	s0, s1 := src(row(tx("1")), row(tx("2"))), src(row(tx("3")))
	m := mustMerge(t, Plan{}, []Column{intText})
	got, err := runAll(t, m, []Source{s0, s1}, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || s1.calls != 0 {
		t.Fatalf("got %d rows, second source read %d times; want 2 rows and no read", len(got), s1.calls)
	}
}

func TestSortedMerge(t *testing.T) {
	t.Parallel()
	i := func(v string) []byte {
		if v == "null" {
			return nil
		}
		return tx(v)
	}
	// Rows are (key, source tag); each source sorted by the plan.
	r := func(k, tag string) []byte { return row(i(k), tx(tag)) }
	cases := []struct {
		name          string
		plan          Plan
		srcs          [][][]byte
		limit, offset int64
		want          []string
	}{
		{
			name: "ascending, ties in source order",
			plan: Plan{Sort: []SortKey{{Col: 0}}},
			srcs: [][][]byte{
				{r("1", "a"), r("3", "a"), r("5", "a")},
				{r("1", "b"), r("2", "b"), r("5", "b")},
				{r("0", "c"), r("5", "c"), r("9", "c")},
			},
			limit: -1,
			want:  []string{"0|c", "1|a", "1|b", "2|b", "3|a", "5|a", "5|b", "5|c", "9|c"},
		},
		{
			name: "descending with NULLs first (the DESC default)",
			plan: Plan{Sort: []SortKey{{Col: 0, Desc: true, NullsFirst: true}}},
			srcs: [][][]byte{
				{r("null", "a"), r("10", "a"), r("-2", "a")},
				{r("11", "b"), r("10", "b")},
				{r("null", "c"), r("-10", "c")},
			},
			limit: -1,
			want:  []string{"<null>|a", "<null>|c", "11|b", "10|a", "10|b", "-2|a", "-10|c"},
		},
		{
			name: "ascending with NULLs last (the ASC default)",
			plan: Plan{Sort: []SortKey{{Col: 0}}},
			srcs: [][][]byte{
				{r("2", "a"), r("null", "a")},
				{r("null", "b")},
				{r("1", "c"), r("3", "c"), r("null", "c")},
			},
			limit: -1,
			want:  []string{"1|c", "2|a", "3|c", "<null>|a", "<null>|b", "<null>|c"},
		},
		{
			name: "ascending NULLS FIRST",
			plan: Plan{Sort: []SortKey{{Col: 0, NullsFirst: true}}},
			srcs: [][][]byte{
				{r("null", "a"), r("2", "a")},
				{r("1", "b")},
			},
			limit: -1,
			want:  []string{"<null>|a", "1|b", "2|a"},
		},
		{
			name: "descending NULLS LAST",
			plan: Plan{Sort: []SortKey{{Col: 0, Desc: true}}},
			srcs: [][][]byte{
				{r("2", "a"), r("null", "a")},
				{r("3", "b"), r("null", "b")},
			},
			limit: -1,
			want:  []string{"3|b", "2|a", "<null>|a", "<null>|b"},
		},
		{
			name: "two keys, second descending",
			plan: Plan{Sort: []SortKey{{Col: 0}, {Col: 1, Desc: true, NullsFirst: true}}},
			srcs: [][][]byte{
				{r("1", "z"), r("1", "b"), r("2", "y")},
				{r("1", "x"), r("2", "z"), r("2", "a")},
			},
			limit: -1,
			want:  []string{"1|z", "1|x", "1|b", "2|z", "2|y", "2|a"},
		},
		{
			name:  "limit and offset across source boundaries",
			plan:  Plan{Sort: []SortKey{{Col: 0}}},
			srcs:  [][][]byte{{r("1", "a"), r("4", "a")}, {r("2", "b"), r("3", "b")}, {}},
			limit: 2, offset: 1,
			want: []string{"2|b", "3|b"},
		},
		{
			name: "text in C order",
			plan: Plan{Sort: []SortKey{{Col: 1}}},
			srcs: [][][]byte{
				{r("1", "B"), r("1", "a"), r("1", "é")},
				{r("2", ""), r("2", "Z"), r("2", "ab"), r("2", "b")},
			},
			limit: -1,
			want:  []string{"2|", "1|B", "2|Z", "1|a", "2|ab", "2|b", "1|é"},
		},
		{
			name: "distinct, sorted on every visible column",
			plan: Plan{Distinct: true, Sort: []SortKey{{Col: 0}, {Col: 1}}},
			srcs: [][][]byte{
				{r("1", "a"), r("1", "b"), r("2", "a")},
				{r("1", "a"), r("1", "b"), r("3", "a")},
				{r("1", "a"), r("2", "a"), r("2", "a")},
			},
			limit: -1,
			want:  []string{"1|a", "1|b", "2|a", "3|a"},
		},
		{
			name: "distinct, sorted on some columns: duplicates apart within a run",
			plan: Plan{Distinct: true, Sort: []SortKey{{Col: 0}}},
			srcs: [][][]byte{
				{r("1", "a"), r("1", "b"), r("2", "a")},
				{r("1", "a"), r("3", "a")},
				{r("1", "b"), r("1", "c"), r("2", "a"), r("3", "b")},
			},
			limit: -1,
			want:  []string{"1|a", "1|b", "1|c", "2|a", "3|a", "3|b"},
		},
		{
			name: "distinct, offset and limit count distinct rows",
			plan: Plan{Distinct: true, Sort: []SortKey{{Col: 0}}},
			srcs: [][][]byte{
				{r("1", "a"), r("2", "a"), r("3", "a")},
				{r("1", "a"), r("2", "a"), r("3", "a")},
			},
			limit: 1, offset: 1,
			want: []string{"2|a"},
		},
		{
			name: "empty sources",
			plan: Plan{Sort: []SortKey{{Col: 0}}},
			srcs: [][][]byte{{}, {}, {}},
			want: nil, limit: -1,
		},
		{
			name: "no sources",
			plan: Plan{Sort: []SortKey{{Col: 0}}},
			want: nil, limit: -1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustMerge(t, tc.plan, []Column{intText, nameText})
			got, err := runAll(t, m, sources(tc.srcs...), tc.limit, tc.offset)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(textRows(t, got), ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %q, want %q", textRows(t, got), tc.want)
			}
		})
	}
}

// TestHiddenSortKey sorts on a hidden column and checks it is stripped.
func TestHiddenSortKey(t *testing.T) {
	t.Parallel()
	for _, format := range []int16{0, 1} {
		enc := func(v int64) []byte {
			if format == 1 {
				return i8b(v)
			}
			return tx(itoa(v))
		}
		m := mustMerge(t, Plan{Visible: 1, Sort: []SortKey{{Col: 1, Desc: true, NullsFirst: true}}},
			[]Column{nameText, col("k", oidInt8, format)})
		got, err := runAll(t, m, sources(
			[][]byte{row(tx("x"), enc(30)), row(tx("y"), enc(10))},
			[][]byte{row(tx("z"), nil), row(tx("w"), enc(20))},
		), -1, 0)
		if err != nil {
			t.Fatal(err)
		}
		equalRows(t, got, [][]byte{row(tx("z")), row(tx("x")), row(tx("w")), row(tx("y"))})
	}
}

func itoa(v int64) string {
	if v < 0 {
		return "-" + itoa(-v)
	}
	if v < 10 {
		return string(rune('0' + v))
	}
	return itoa(v/10) + string(rune('0'+v%10))
}

// TestDistinctHiddenSortKey: with a hidden sort key, duplicates of the
// visible columns can lie apart, so every distinct row is remembered.
func TestDistinctHiddenSortKey(t *testing.T) {
	t.Parallel()
	m := mustMerge(t, Plan{Visible: 1, Distinct: true, Sort: []SortKey{{Col: 1}}}, []Column{nameText, intText})
	got, err := runAll(t, m, sources(
		[][]byte{row(tx("a"), tx("1")), row(tx("b"), tx("2"))},
		[][]byte{row(tx("b"), tx("1")), row(tx("a"), tx("3"))},
	), -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	equalRows(t, got, [][]byte{row(tx("a")), row(tx("b"))})
}

// TestSortedMergeBinary merges binary rows of several types.
func TestSortedMergeBinary(t *testing.T) {
	t.Parallel()
	cols := []Column{col("f", oidFloat8, 1), col("n", oidNumeric, 1), col("d", oidDate, 1), col("t", oidText, 1)}
	m := mustMerge(t, Plan{Sort: []SortKey{{Col: 0}, {Col: 1, Desc: true, NullsFirst: true}, {Col: 2}}}, cols)
	r := func(f float64, n string, d int32, tag string) []byte { return row(f8b(f), numb(n), i4b(d), tx(tag)) }
	nan := f8b(math.NaN())
	got, err := runAll(t, m, sources(
		[][]byte{r(-1, "5", 0, "a1"), r(0, "1.10", 3, "a2"), row(nan, numb("1"), i4b(0), tx("a3"))},
		[][]byte{r(-1, "NaN", 9, "b1"), r(0, "1.1", 2, "b2"), r(0, "1.1", 4, "b3"), r(2.5, "-Infinity", 0, "b4")},
	), -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, g := range got {
		tags = append(tags, string(rowValues(t, g)[3]))
	}
	want := "b1,a1,b2,a2,b3,b4,a3"
	if strings.Join(tags, ",") != want {
		t.Fatalf("got %v, want %s", tags, want)
	}
}

// TestNotSorted: a source out of ORDER BY order is an error, not a wrong
// merge.
func TestNotSorted(t *testing.T) {
	t.Parallel()
	m := mustMerge(t, Plan{Sort: []SortKey{{Col: 0}}}, []Column{nameText})
	_, err := runAll(t, m, sources(
		[][]byte{row(tx("a")), row(tx("c"))},
		[][]byte{row(tx("b")), row(tx("B"))}, // what en_US would do
	), -1, 0)
	var se *SourceError
	if !errors.As(err, &se) || se.Source != 1 || !errors.Is(err, ErrNotSorted) {
		t.Fatalf("got %v, want ErrNotSorted from source 1", err)
	}
}

// TestMalformed feeds broken rows to every merge mode.
func TestMalformed(t *testing.T) {
	t.Parallel()
	good := row(tx("1"), tx("x"))
	bad := map[string][]byte{
		"empty":              {},
		"one byte":           {0},
		"fewer columns":      row(tx("1")),
		"more columns":       row(tx("1"), tx("x"), tx("y")),
		"negative count":     {0xff, 0xff},
		"truncated length":   append(row(tx("1")), 0, 0)[:8],
		"length past end":    {0, 2, 0, 0, 0, 1, '1', 0, 0, 0, 9, 'x'},
		"length -2":          {0, 2, 0, 0, 0, 1, '1', 0xff, 0xff, 0xff, 0xfe},
		"trailing bytes":     append(row(tx("1"), tx("x")), 0),
		"undecodable number": row(tx("one"), tx("x")),
	}
	plans := map[string]Plan{
		"concat":    {},
		"distinct":  {Distinct: true},
		"sorted":    {Sort: []SortKey{{Col: 0}}},
		"aggregate": {Group: []int{1}, Aggs: []Agg{{Col: 0, Kind: AggSum}}},
	}
	for pname, p := range plans {
		for bname, b := range bad {
			if bname == "undecodable number" && pname == "concat" {
				continue // concatenation passes values through undecoded
			}
			t.Run(pname+"/"+bname, func(t *testing.T) {
				t.Parallel()
				m := mustMerge(t, p, []Column{intText, nameText})
				_, err := runAll(t, m, sources([][]byte{good}, [][]byte{good, b, good}), -1, 0)
				var se *SourceError
				if !errors.As(err, &se) || se.Source != 1 {
					t.Fatalf("got %v, want a SourceError of source 1", err)
				}
			})
		}
	}
}

// TestSourceFailure checks that an error of a source reaches the caller
// wrapped, with the source's index.
func TestSourceFailure(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection reset")
	for _, p := range []Plan{{}, {Sort: []SortKey{{Col: 0}}}, {Aggs: []Agg{{Col: 0, Kind: AggCount}}}} {
		s1 := src(row(tx("1")), row(tx("2")))
		s1.err, s1.failAfter = boom, 1
		m := mustMerge(t, p, []Column{intText})
		_, err := runAll(t, m, []Source{src(row(tx("1"))), s1}, -1, 0)
		var se *SourceError
		if !errors.As(err, &se) || se.Source != 1 || !errors.Is(err, boom) {
			t.Fatalf("plan %+v: got %v, want source 1's error", p, err)
		}
	}
}

func TestEmitErrorAndCancel(t *testing.T) {
	t.Parallel()
	m := mustMerge(t, Plan{Sort: []SortKey{{Col: 0}}}, []Column{intText})
	stop := errors.New("client gone")
	n, err := m.Run(context.Background(), sources([][]byte{row(tx("1")), row(tx("2"))}), -1, 0, func([]byte) error { return stop })
	if !errors.Is(err, stop) || n != 0 {
		t.Fatalf("got %d, %v; want 0, client gone", n, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Run(ctx, sources([][]byte{row(tx("1"))}), -1, 0, func([]byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: got %v", err)
	}

	// Cancellation noticed in the middle of a long merge.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	rows := make([][]byte, 5000)
	for i := range rows {
		rows[i] = row(tx("1"))
	}
	emitted := 0
	_, err = m.Run(ctx, sources(rows, rows), -1, 0, func([]byte) error {
		if emitted++; emitted == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || emitted > 10+checkEvery {
		t.Fatalf("got %v after %d rows, want context.Canceled soon after 10", err, emitted)
	}
}

func TestRunNegativeLimits(t *testing.T) {
	t.Parallel()
	m := mustMerge(t, Plan{}, []Column{intText})
	if _, err := runAll(t, m, nil, -1, -1); sqlState(err) != "2201X" {
		t.Fatalf("offset -1: got %v", err)
	}
	if _, err := runAll(t, m, nil, -2, 0); sqlState(err) != "2201W" {
		t.Fatalf("limit -2: got %v", err)
	}
}

// TestHiddenAndNegativeColumns: Hidden trailing columns are stripped when
// Visible is 0, and negative column numbers count from the end.
func TestHiddenAndNegativeColumns(t *testing.T) {
	t.Parallel()
	cols := []Column{nameText, intText, col("k", oidInt4, 1)} // SELECT * gave name, id; k is hidden
	rows := func(vals ...[]byte) [][]byte {
		var out [][]byte
		for i := 0; i < len(vals); i += 3 {
			out = append(out, row(vals[i], vals[i+1], vals[i+2]))
		}
		return out
	}
	s0 := rows(tx("a"), tx("1"), i4b(1), tx("b"), tx("2"), i4b(3))
	s1 := rows(tx("c"), tx("3"), i4b(2))
	cases := []struct {
		name string
		plan Plan
		want [][]byte
	}{
		{"hidden sort key from the end", Plan{Hidden: 1, Sort: []SortKey{{Col: -1}}},
			[][]byte{row(tx("a"), tx("1")), row(tx("c"), tx("3")), row(tx("b"), tx("2"))}},
		{"visible and hidden agree", Plan{Visible: 2, Hidden: 1, Sort: []SortKey{{Col: -3}}},
			[][]byte{row(tx("a"), tx("1")), row(tx("b"), tx("2")), row(tx("c"), tx("3"))}},
		{"every column hidden", Plan{Hidden: 3, Sort: []SortKey{{Col: -3}}},
			[][]byte{row(), row(), row()}},
		{"negative aggregate columns", Plan{Hidden: 1, Group: []int{-3}, Aggs: []Agg{{Col: -2, Kind: AggAvg, CountCol: -1}},
			Having: []Cond{{Col: -1, Op: OpGt, Value: "2"}}, Sort: []SortKey{{Col: -3, Desc: true}}},
			[][]byte{row(tx("b"), tx("0.66666666666666666667"))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustMerge(t, tc.plan, cols)
			got, err := runAll(t, m, sources(s0, s1), -1, 0)
			if err != nil {
				t.Fatal(err)
			}
			equalRows(t, got, tc.want)
			if n := len(m.ClientColumns()); n != len(rowValues(t, tc.want[0])) {
				t.Fatalf("%d client columns", n)
			}
		})
	}
	for _, p := range []Plan{{Hidden: 4}, {Visible: 1, Hidden: 1}, {Hidden: -1}, {Sort: []SortKey{{Col: -4}}}} {
		if _, err := NewMerger(p, cols); err == nil {
			t.Errorf("plan %+v: no error", p)
		}
	}
}

// TestNewMergerRefuses checks what the merge will not do.
func TestNewMergerRefuses(t *testing.T) {
	t.Parallel()
	jsonb := col("j", oidJSONB, 0)
	interval := col("i", oidInterval, 1)
	bytea := col("b", oidBytea, 0)
	cases := []struct {
		name        string
		plan        Plan
		cols        []Column
		unsupported bool
	}{
		{"order by jsonb", Plan{Sort: []SortKey{{Col: 0}}}, []Column{jsonb}, true},
		{"order by bytea", Plan{Sort: []SortKey{{Col: 0}}}, []Column{bytea}, true},
		{"group by interval", Plan{Group: []int{0}}, []Column{interval}, true},
		{"distinct on jsonb", Plan{Distinct: true}, []Column{jsonb}, true},
		{"min of interval", Plan{Aggs: []Agg{{Col: 0, Kind: AggMin}}}, []Column{interval}, true},
		{"sum of text", Plan{Aggs: []Agg{{Col: 0, Kind: AggSum}}}, []Column{nameText}, true},
		{"sum of interval", Plan{Aggs: []Agg{{Col: 0, Kind: AggSum}}}, []Column{interval}, true},
		{"count from numeric", Plan{Aggs: []Agg{{Col: 0, Kind: AggCount}}}, []Column{col("n", oidNumeric, 0)}, true},
		{"bool_and of int", Plan{Aggs: []Agg{{Col: 0, Kind: AggBoolAnd}}}, []Column{intText}, true},
		{"avg of text", Plan{Aggs: []Agg{{Col: 0, Kind: AggAvg, CountCol: 1}}}, []Column{nameText, intText}, true},
		{"avg counted in numeric", Plan{Aggs: []Agg{{Col: 0, Kind: AggAvg, CountCol: 1}}}, []Column{intText, col("n", oidNumeric, 0)}, true},
		{"having on jsonb", Plan{Group: []int{0}, Aggs: []Agg{{Col: 1, Kind: AggCount}}, Having: []Cond{{Col: 2, Op: OpEq, Value: "{}"}}}, []Column{nameText, intText, jsonb}, true},
		{"having with a non-number", Plan{Aggs: []Agg{{Col: 0, Kind: AggCount}}, Having: []Cond{{Col: 0, Op: OpGt, Value: "many"}}}, []Column{intText}, true},
		{"having on timestamptz without offset", Plan{Aggs: []Agg{{Col: 0, Kind: AggMax}}, Having: []Cond{{Col: 0, Op: OpGt, Value: "2024-01-01"}}}, []Column{col("t", oidTimestamptz, 0)}, true},
		{"visible out of range", Plan{Visible: 3}, []Column{intText}, false},
		{"sort column out of range", Plan{Sort: []SortKey{{Col: 1}}}, []Column{intText}, false},
		{"negative group column", Plan{Group: []int{-2}}, []Column{intText}, false},
		{"aggregate twice", Plan{Aggs: []Agg{{Col: 0, Kind: AggSum}, {Col: 0, Kind: AggMax}}}, []Column{intText}, false},
		{"aggregate of a grouped column", Plan{Group: []int{0}, Aggs: []Agg{{Col: 0, Kind: AggMax}}}, []Column{intText}, false},
		{"avg count out of range", Plan{Aggs: []Agg{{Col: 0, Kind: AggAvg, CountCol: 4}}}, []Column{intText}, false},
		{"unknown aggregate", Plan{Aggs: []Agg{{Col: 0, Kind: 99}}}, []Column{intText}, false},
		{"having without aggregates", Plan{Having: []Cond{{Col: 0, Op: OpEq, Value: "1"}}}, []Column{intText}, false},
		{"bad operator", Plan{Aggs: []Agg{{Col: 0, Kind: AggCount}}, Having: []Cond{{Col: 0, Op: 0, Value: "1"}}}, []Column{intText}, false},
		{"bad format", Plan{}, []Column{col("x", oidText, 2)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewMerger(tc.plan, tc.cols)
			var ue *UnsupportedError
			switch {
			case err == nil:
				t.Fatal("no error")
			case tc.unsupported && (!errors.As(err, &ue) || sqlState(err) != "0A000"):
				t.Fatalf("got %v, want an UnsupportedError", err)
			case !tc.unsupported && errors.As(err, &ue):
				t.Fatalf("got UnsupportedError %v, want a plan error", err)
			}
		})
	}
}

// TestOpaqueTypesPassThrough: types the merge does not know are fine where
// it need not look at them, and bytea can be grouped and deduplicated.
func TestOpaqueTypesPassThrough(t *testing.T) {
	t.Parallel()
	jsonb := col("j", oidJSONB, 0)
	bytea := col("b", oidBytea, 0)
	m := mustMerge(t, Plan{Sort: []SortKey{{Col: 0}}}, []Column{intText, jsonb})
	got, err := runAll(t, m, sources([][]byte{row(tx("2"), tx(`{"a": 1}`))}, [][]byte{row(tx("1"), tx(`[]`))}), -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	equalRows(t, got, [][]byte{row(tx("1"), tx(`[]`)), row(tx("2"), tx(`{"a": 1}`))})

	m = mustMerge(t, Plan{Distinct: true}, []Column{bytea})
	got, err = runAll(t, m, sources([][]byte{row(tx(`\x01`)), row(tx(`\x02`))}, [][]byte{row(tx(`\x01`))}), -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	equalRows(t, got, [][]byte{row(tx(`\x01`)), row(tx(`\x02`))})
}

// TestRowsNotRetained checks that the merge copies what it keeps: the
// sources scribble over a row on the next call.
func TestRowsNotRetained(t *testing.T) {
	t.Parallel()
	m := mustMerge(t, Plan{Sort: []SortKey{{Col: 1}, {Col: 0}}, Distinct: true}, []Column{intText, nameText})
	got, err := runAll(t, m, sources(
		[][]byte{row(tx("1"), tx("aaaa")), row(tx("1"), tx("bbbb")), row(tx("1"), tx("bbbb"))},
		[][]byte{row(tx("2"), tx("aaaa")), row(tx("1"), tx("bbbb")), row(tx("1"), tx("cccc"))},
	), -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(textRows(t, got), ","); s != "1|aaaa,2|aaaa,1|bbbb,1|cccc" {
		t.Fatalf("got %s", s)
	}
}

func TestEOFOnly(t *testing.T) {
	t.Parallel()
	// A source whose Next wraps io.EOF ends normally.
	m := mustMerge(t, Plan{}, []Column{intText})
	got, err := runAll(t, m, []Source{eofSource{}}, -1, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v", got, err)
	}
}

type eofSource struct{}

func (eofSource) Next() ([]byte, error) { return nil, wrapped{io.EOF} }

type wrapped struct{ error }

func (w wrapped) Unwrap() error { return w.error }

// TestConcurrentRuns shares one Merger between goroutines (run with -race).
func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	m := mustMerge(t, Plan{Visible: 2, Group: []int{0}, Aggs: []Agg{{Col: 1, Kind: AggAvg, CountCol: 2}}, Sort: []SortKey{{Col: 1, Desc: true, NullsFirst: true}}},
		[]Column{nameText, intText, intText})
	want := "b|3.0000000000000000,a|1.5000000000000000"
	errs := make(chan error, 8)
	for i := 0; i < cap(errs); i++ {
		go func() {
			got, err := runAll(t, m, sources(
				[][]byte{row(tx("a"), tx("1"), tx("1")), row(tx("b"), tx("3"), tx("1"))},
				[][]byte{row(tx("a"), tx("2"), tx("1"))},
			), -1, 0)
			if err == nil && strings.Join(textRows(t, got), ",") != want {
				err = errors.New(strings.Join(textRows(t, got), ","))
			}
			errs <- err
		}()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
