package gather

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestAvg checks combined averages against what PostgreSQL 15 prints for
// the same rows on one server (the comment gives the query), in text and
// binary. Each partial is (sum, count) as one shard would return it.
func TestAvg(t *testing.T) {
	t.Parallel()
	type part struct{ sum, count string }
	cases := []struct {
		query string
		oid   uint32 // of the sum column
		parts []part
		want  string // "" for NULL
	}{
		{"avg(x) from (values (1),(2)) t(x)", oidInt8, []part{{"1", "1"}, {"2", "1"}}, "1.5000000000000000"},
		{"avg(x) from (values (1::int8),(2),(4)) t(x)", oidNumeric, []part{{"3", "2"}, {"4", "1"}}, "2.3333333333333333"},
		{"avg(x) from (values (-1),(-2)) t(x)", oidInt8, []part{{"-1", "1"}, {"-2", "1"}}, "-1.5000000000000000"},
		{"avg(x) from (values (-5),(0)) t(x)", oidInt8, []part{{"-5", "1"}, {"0", "1"}}, "-2.5000000000000000"},
		{"avg(x) from (values (2.5::numeric),(2.5),(2.5)) t(x)", oidNumeric, []part{{"5.0", "2"}, {"2.5", "1"}}, "2.5000000000000000"},
		{"avg(x) from (values (123456789.123::numeric),(1)) t(x)", oidNumeric, []part{{"123456789.123", "1"}, {"1", "1"}}, "61728395.061500000000"},
		{"avg(x) from (values (99999999999999999999::numeric),(1)) t(x)", oidNumeric, []part{{"99999999999999999999", "1"}, {"1", "1"}}, "50000000000000000000"},
		{"avg(x) from (values (0.00001234::numeric),(0)) t(x)", oidNumeric, []part{{"0.00001234", "1"}, {"0", "1"}}, "0.000006170000000000000000"},
		{"avg(x) from (values (1::numeric/3)) t(x)", oidNumeric, []part{{"0.33333333333333333333", "1"}, {"", "0"}}, "0.33333333333333333333"},
		{"avg(x) from (values (2),(2),(2)) t(x)", oidInt8, []part{{"4", "2"}, {"2", "1"}}, "2.0000000000000000"},
		{"avg(x) from (values (1) x10, (2)) t(x)", oidInt8, []part{{"5", "5"}, {"7", "6"}}, "1.0909090909090909"},
		{"avg(x) from generate_series(1,12345) x", oidInt8, []part{{"1", "1"}, {"76205684", "12344"}}, "6173.0000000000000000"},
		{"avg(x) from (values ('NaN'::numeric),(1)) t(x)", oidNumeric, []part{{"NaN", "1"}, {"1", "1"}}, "NaN"},
		{"avg(x) from (values ('Infinity'::numeric),(1)) t(x)", oidNumeric, []part{{"1", "1"}, {"Infinity", "1"}}, "Infinity"},
		{"avg(x) from (values ('Infinity'::numeric),('-Infinity')) t(x)", oidNumeric, []part{{"Infinity", "1"}, {"-Infinity", "1"}}, "NaN"},
		{"avg(x) from (values (20000),(10001)) t(x)", oidInt8, []part{{"20000", "1"}, {"10001", "1"}}, "15000.500000000000"},
		{"avg(x) from (values (9999),(10000)) t(x)", oidInt8, []part{{"9999", "1"}, {"10000", "1"}}, "9999.5000000000000000"},
		{"avg(x) from (values (5000),(5000)) t(x)", oidInt8, []part{{"5000", "1"}, {"5000", "1"}}, "5000.0000000000000000"},
		{"avg(x) from (values (1::numeric),(1)) t(x)", oidNumeric, []part{{"1", "1"}, {"1", "1"}}, "1.00000000000000000000"},
		{"avg(x) from (values (1),(1)) t(x)", oidInt8, []part{{"1", "1"}, {"1", "1"}}, "1.00000000000000000000"},
		{"avg(x) from (values (1.5::numeric),(0.5)) t(x)", oidNumeric, []part{{"1.5", "1"}, {"0.5", "1"}}, "1.00000000000000000000"},
		{"avg(x) from (values (30000::numeric),(30000),(30000)) t(x)", oidNumeric, []part{{"60000", "2"}, {"30000", "1"}}, "30000.000000000000"},
		{"avg(x) from (values (-0.5::numeric),(-0.5)) t(x)", oidNumeric, []part{{"-0.5", "1"}, {"-0.5", "1"}}, "-0.50000000000000000000"},
		{"avg(x) from (values (5),(6)) t(x) where false", oidInt8, []part{{"", "0"}, {"", "0"}}, ""},
		{"avg(x) from (values (1.5::float8),(2)) t(x)", oidFloat8, []part{{"1.5", "1"}, {"2", "1"}}, "1.75"},
		{"avg(x) from (values (0.1::float4),(0.2::float4)) t(x), shards summing x::float8", oidFloat8,
			[]part{{"0.10000000149011612", "1"}, {"0.20000000298023224", "1"}}, "0.15000000223517418"},
		{"avg(x) from (values (1e300::float8),(1e300)) t(x)", oidFloat8, []part{{"1e+300", "1"}, {"1e+300", "1"}}, "1e+300"},
	}
	for _, tc := range cases {
		for format := int16(0); format <= 1; format++ {
			t.Run(tc.query+[]string{"/text", "/binary"}[format], func(t *testing.T) {
				t.Parallel()
				enc := func(oid uint32, s string) []byte {
					switch {
					case s == "":
						return nil
					case format == 0:
						return tx(s)
					case oid == oidNumeric:
						return numb(s)
					case oid == oidFloat8:
						f, ok := parseFloat([]byte(s), 64)
						if !ok {
							t.Fatalf("bad float %q", s)
						}
						return f8b(f)
					}
					v, ok := parseInt([]byte(s), math.MinInt64, math.MaxInt64)
					if !ok {
						t.Fatalf("bad int %q", s)
					}
					return i8b(v)
				}
				cols := []Column{col("avg", tc.oid, format), col("n", oidInt8, format)}
				m := mustMerge(t, Plan{Visible: 1, Aggs: []Agg{{Col: 0, Kind: AggAvg, CountCol: 1}}}, cols)
				var srcs []Source
				for _, p := range tc.parts {
					srcs = append(srcs, src(row(enc(tc.oid, p.sum), enc(oidInt8, p.count))))
				}
				got, err := runAll(t, m, srcs, -1, 0)
				if err != nil {
					t.Fatal(err)
				}
				wantOID := uint32(oidNumeric)
				if tc.oid == oidFloat8 {
					wantOID = oidFloat8
				}
				cc := m.ClientColumns()
				if len(cc) != 1 || cc[0].TypeOID != wantOID || cc[0].Name != "avg" || cc[0].Format != format {
					t.Fatalf("client columns %+v", cc)
				}
				var want []byte
				if tc.want != "" {
					want = enc(wantOID, tc.want)
				}
				equalRows(t, got, [][]byte{row(want)})
			})
		}
	}
}

// TestAvgPaths checks that the int64 average and the exact one agree.
func TestAvgPaths(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	sums := []int64{0, 1, -1, 2, 9999, 10000, -10000, 123456789, math.MaxInt64, math.MinInt64, math.MinInt64 + 1}
	counts := []int64{1, 2, 3, 7, 9999, 10000, 10001, 123456789, 1 << 40, maxFastCount - 1}
	for i := 0; i < 2000; i++ {
		sums = append(sums, r.Int64()>>r.IntN(64))
		counts = append(counts, 1+r.Int64N(1<<r.IntN(59)))
	}
	for i, sum := range sums {
		for _, n := range []int64{counts[i%len(counts)], counts[(i*7)%len(counts)], 1, 3} {
			neg, digits, scale := avgInt64(sum, n, nil)
			fast := string(appendDigitsText(nil, neg, digits, scale))
			exact := string(newDecimalInt(sum).avg(n).appendText(nil))
			if fast != exact {
				t.Fatalf("avg of sum %d count %d: int64 path %s, exact %s", sum, n, fast, exact)
			}
		}
	}
}

// aggCols are the columns of the shards' answer to
//
//	SELECT g, count(*), sum(i), min(s), max(d), bool_and(b), bool_or(b),
//	       sum(i) AS avg, count(i) FROM t GROUP BY g
//
// with the last column hidden (the avg's count).
func aggCols(format int16) []Column {
	return []Column{
		col("g", oidText, format), col("count", oidInt8, format), col("sum", oidInt8, format),
		col("min", oidText, format), col("max", oidDate, format), col("bool_and", oidBool, format),
		col("bool_or", oidBool, format), col("avg", oidInt8, format), col("count", oidInt8, format),
	}
}

func aggPlan() Plan {
	return Plan{
		Visible: 8,
		Group:   []int{0},
		Aggs: []Agg{
			{Col: 1, Kind: AggCount}, {Col: 2, Kind: AggSum}, {Col: 3, Kind: AggMin}, {Col: 4, Kind: AggMax},
			{Col: 5, Kind: AggBoolAnd}, {Col: 6, Kind: AggBoolOr}, {Col: 7, Kind: AggAvg, CountCol: 8},
		},
	}
}

// aggRow encodes one shard's partial row; "" is NULL.
func aggRow(t testing.TB, format int16, vals ...string) []byte {
	t.Helper()
	cols := aggCols(format)
	var fs [][]byte
	for i, v := range vals {
		if v == "" {
			fs = append(fs, nil)
			continue
		}
		if format == 0 {
			fs = append(fs, tx(v))
			continue
		}
		switch cols[i].TypeOID {
		case oidText:
			fs = append(fs, tx(v))
		case oidInt8:
			n, ok := parseInt([]byte(v), math.MinInt64, math.MaxInt64)
			if !ok {
				t.Fatalf("bad int %q", v)
			}
			fs = append(fs, i8b(n))
		case oidBool:
			fs = append(fs, boolb(v == "t"))
		case oidDate:
			var y, m, d int64
			for i, p := range strings.Split(v, "-") {
				n, _ := parseInt([]byte(p), 0, 99999)
				switch i {
				case 0:
					y = n
				case 1:
					m = n
				default:
					d = n
				}
			}
			fs = append(fs, i4b(int32(days(y, m, d))))
		}
	}
	return row(fs...)
}

// decodeForTest renders a combined value as text whatever its format.
func decodeForTest(t testing.TB, c Column, raw []byte) string {
	t.Helper()
	if raw == nil {
		return "<null>"
	}
	if c.Format == 0 {
		return string(raw)
	}
	ct, err := newColType(c)
	if err != nil {
		t.Fatal(err)
	}
	v, err := decode(ct, raw)
	if err != nil {
		t.Fatal(err)
	}
	switch ct.kind {
	case kInt:
		return itoa(v.i)
	case kBool:
		return map[int64]string{0: "f", 1: "t"}[v.i]
	case kNumeric:
		return string(v.d.appendText(nil))
	case kFloat:
		return string(appendFloatText(nil, v.f, 64))
	case kDate:
		return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(v.i)).Format("2006-01-02")
	}
	return string(v.b)
}

func TestAggregate(t *testing.T) {
	t.Parallel()
	// Three shards' partials for groups a, b, NULL; shard 2 has no b.
	shards := func(t *testing.T, f int16) []Source {
		return []Source{
			src(
				aggRow(t, f, "a", "2", "5", "x", "2024-01-02", "t", "t", "5", "2"),
				aggRow(t, f, "b", "1", "", "", "", "", "", "", "0"),
				aggRow(t, f, "", "3", "-4", "m", "2023-05-06", "f", "t", "-4", "3"),
			),
			src(
				aggRow(t, f, "a", "1", "7", "w", "2024-01-01", "f", "f", "7", "1"),
				aggRow(t, f, "", "1", "1", "n", "2025-01-01", "t", "t", "1", "1"),
			),
			src(
				aggRow(t, f, "b", "2", "3", "b", "2000-02-29", "t", "t", "3", "2"),
				aggRow(t, f, "a", "4", "1", "y", "", "", "", "1", "1"),
			),
		}
	}
	const (
		rowA    = "a|7|13|w|2024-01-02|f|t|3.2500000000000000"
		rowB    = "b|3|3|b|2000-02-29|t|t|1.5000000000000000"
		rowNull = "<null>|4|-3|m|2025-01-01|f|t|-0.75000000000000000000"
	)
	cases := []struct {
		name          string
		edit          func(*Plan)
		limit, offset int64
		want          []string
	}{
		{"groups in first-seen order", nil, -1, 0, []string{rowA, rowB, rowNull}},
		{"order by group, NULLs last", func(p *Plan) { p.Sort = []SortKey{{Col: 0}} }, -1, 0, []string{rowA, rowB, rowNull}},
		{"order by group desc", func(p *Plan) { p.Sort = []SortKey{{Col: 0, Desc: true, NullsFirst: true}} }, -1, 0, []string{rowNull, rowB, rowA}},
		{"order by count desc", func(p *Plan) { p.Sort = []SortKey{{Col: 1, Desc: true}} }, -1, 0, []string{rowA, rowNull, rowB}},
		{"order by avg", func(p *Plan) { p.Sort = []SortKey{{Col: 7}} }, -1, 0, []string{rowNull, rowB, rowA}},
		{"order by hidden count", func(p *Plan) { p.Sort = []SortKey{{Col: 8}, {Col: 0}} }, -1, 0, []string{rowB, rowA, rowNull}},
		{"limit and offset after order", func(p *Plan) { p.Sort = []SortKey{{Col: 1}} }, 1, 1, []string{rowNull}},
		{"having count > 3", func(p *Plan) { p.Having = []Cond{{Col: 1, Op: OpGt, Value: "3"}} }, -1, 0, []string{rowA, rowNull}},
		{"having count >= 3.5", func(p *Plan) { p.Having = []Cond{{Col: 1, Op: OpGe, Value: "3.5"}} }, -1, 0, []string{rowA, rowNull}},
		{"having avg < 1.5", func(p *Plan) { p.Having = []Cond{{Col: 7, Op: OpLt, Value: "1.5"}} }, -1, 0, []string{rowNull}},
		{"having avg = 1.50", func(p *Plan) { p.Having = []Cond{{Col: 7, Op: OpEq, Value: "1.50"}} }, -1, 0, []string{rowB}},
		{"having sum <> 13 (NULL group's -3 too)", func(p *Plan) { p.Having = []Cond{{Col: 2, Op: OpNe, Value: "13"}} }, -1, 0, []string{rowB, rowNull}},
		{"having on the group (NULL never matches)", func(p *Plan) { p.Having = []Cond{{Col: 0, Op: OpLe, Value: "b"}} }, -1, 0, []string{rowA, rowB}},
		{"having on a hidden column", func(p *Plan) { p.Having = []Cond{{Col: 8, Op: OpEq, Value: "2"}} }, -1, 0, []string{rowB}},
		{"having on a date", func(p *Plan) { p.Having = []Cond{{Col: 4, Op: OpGt, Value: "2024-01-01"}} }, -1, 0, []string{rowA, rowNull}},
		{"having on a bool", func(p *Plan) { p.Having = []Cond{{Col: 5, Op: OpEq, Value: "true"}} }, -1, 0, []string{rowB}},
		{"two conditions", func(p *Plan) {
			p.Having = []Cond{{Col: 1, Op: OpGe, Value: "3"}, {Col: 3, Op: OpLt, Value: "n"}}
		}, -1, 0, []string{rowB, rowNull}},
	}
	for _, tc := range cases {
		for f := int16(0); f <= 1; f++ {
			t.Run(tc.name+[]string{"/text", "/binary"}[f], func(t *testing.T) {
				t.Parallel()
				p := aggPlan()
				if tc.edit != nil {
					tc.edit(&p)
				}
				m := mustMerge(t, p, aggCols(f))
				got, err := runAll(t, m, shards(t, f), tc.limit, tc.offset)
				if err != nil {
					t.Fatal(err)
				}
				cc := m.ClientColumns()
				var rows []string
				for _, g := range got {
					var vs []string
					for i, v := range rowValues(t, g) {
						vs = append(vs, decodeForTest(t, cc[i], v))
					}
					rows = append(rows, strings.Join(vs, "|"))
				}
				if strings.Join(rows, "\n") != strings.Join(tc.want, "\n") {
					t.Fatalf("got\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(tc.want, "\n"))
				}
			})
		}
	}
}

// TestAggregateWithoutGroup: every shard answers an aggregate without GROUP
// BY with one row, also over no rows, and the combination is one row.
func TestAggregateWithoutGroup(t *testing.T) {
	t.Parallel()
	cols := []Column{col("count", oidInt8, 0), col("sum", oidNumeric, 0), col("max", oidText, 0)}
	p := Plan{Aggs: []Agg{{Col: 0, Kind: AggCount}, {Col: 1, Kind: AggSum}, {Col: 2, Kind: AggMax}}}
	empty := row(tx("0"), nil, nil)
	cases := []struct {
		name string
		rows [][]byte
		want string
	}{
		{"no rows anywhere", [][]byte{empty, empty, empty}, "0|<null>|<null>"},
		{"one shard with rows", [][]byte{empty, row(tx("2"), tx("0.30"), tx("q")), empty}, "2|0.30|q"},
		{"exact numeric sum", [][]byte{row(tx("1"), tx("0.1"), tx("a")), row(tx("1"), tx("0.20"), tx("b"))}, "2|0.30|b"},
		{"large numeric sum", [][]byte{row(tx("1"), tx("99999999999999999999"), tx("a")), row(tx("1"), tx("1"), tx("a"))}, "2|100000000000000000000|a"},
		{"numeric sum to zero", [][]byte{row(tx("1"), tx("-1.5"), tx("a")), row(tx("1"), tx("1.500"), tx("a"))}, "2|0.000|a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var srcs []Source
			for _, r := range tc.rows {
				srcs = append(srcs, src(r))
			}
			got, err := runAll(t, mustMerge(t, p, cols), srcs, -1, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || textRow(t, got[0]) != tc.want {
				t.Fatalf("got %q, want %q", textRows(t, got), tc.want)
			}
		})
	}
	// Having filters the single row out.
	hp := p
	hp.Having = []Cond{{Col: 0, Op: OpGt, Value: "0"}}
	got, err := runAll(t, mustMerge(t, hp, cols), []Source{src(empty), src(empty)}, -1, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("having count > 0 over no rows: %q, %v", textRows(t, got), err)
	}
	// No shard row at all is a protocol anomaly, not a guessed row.
	if _, err := runAll(t, mustMerge(t, hp, cols), []Source{src(), src()}, -1, 0); err == nil {
		t.Fatal("no rows from any shard: no error")
	}
}

// TestGroupEquality groups by values equal under Postgres's equality but
// sent differently.
func TestGroupEquality(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		c      Column
		keys   [][]byte
		groups int
	}{
		{"numeric scales", col("n", oidNumeric, 0), [][]byte{tx("1.0"), tx("1.00"), tx("1"), tx("2"), tx("NaN"), tx("NaN")}, 3},
		{"numeric binary", col("n", oidNumeric, 1), [][]byte{numb("1.0"), numb("1.00"), numb("10"), numb("10.0")}, 2},
		{"float zero signs", col("f", oidFloat8, 0), [][]byte{tx("0"), tx("-0"), tx("NaN"), tx("NaN"), nil, nil}, 3},
		{"bpchar padding", col("c", oidBpchar, 0), [][]byte{tx("a"), tx("a  "), tx("b")}, 2},
		{"text is exact", col("t", oidText, 0), [][]byte{tx("a"), tx("a "), tx("A")}, 3},
		{"timestamptz offsets", col("t", oidTimestamptz, 0), [][]byte{tx("2024-01-01 00:00:00+00"), tx("2024-01-01 02:00:00+02")}, 1},
		{"bytea", col("b", oidBytea, 0), [][]byte{tx(`\x00`), tx(`\x00`), tx(`\x0000`)}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustMerge(t, Plan{Group: []int{0}, Aggs: []Agg{{Col: 1, Kind: AggCount}}}, []Column{tc.c, intText})
			var srcs []Source
			for _, k := range tc.keys {
				srcs = append(srcs, src(row(k, tx("1"))))
			}
			got, err := runAll(t, m, srcs, -1, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.groups {
				t.Fatalf("got groups %q, want %d", textRows(t, got), tc.groups)
			}
			// The group keeps the first value seen.
			if string(rowValues(t, got[0])[0]) != string(tc.keys[0]) {
				t.Fatalf("first group's key %q, want %q", rowValues(t, got[0])[0], tc.keys[0])
			}
		})
	}
}

// TestSums checks sums of each type, including Postgres's range errors.
func TestSums(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		c       Column
		vals    [][]byte
		want    []byte
		errCode string
		errMsg  string
	}{
		{"int8", col("s", oidInt8, 0), [][]byte{tx("9223372036854775800"), tx("7")}, tx("9223372036854775807"), "", ""},
		{"int8 overflow", col("s", oidInt8, 0), [][]byte{tx("9223372036854775800"), tx("8")}, nil, "22003", "bigint out of range"},
		{"int8 underflow binary", col("s", oidInt8, 1), [][]byte{i8b(math.MinInt64), i8b(-1)}, nil, "22003", "bigint out of range"},
		{"int4", col("s", oidInt4, 1), [][]byte{i4b(2147483640), i4b(7)}, i4b(2147483647), "", ""},
		{"int4 overflow", col("s", oidInt4, 0), [][]byte{tx("2147483640"), tx("8")}, nil, "22003", "integer out of range"},
		{"int2 overflow", col("s", oidInt2, 1), [][]byte{i2b(-32768), i2b(-1)}, nil, "22003", "smallint out of range"},
		{"nulls ignored", col("s", oidInt8, 0), [][]byte{nil, tx("3"), nil}, tx("3"), "", ""},
		{"all NULL", col("s", oidInt8, 0), [][]byte{nil, nil}, nil, "", ""},
		{"float8", col("s", oidFloat8, 0), [][]byte{tx("0.1"), tx("0.2")}, tx("0.30000000000000004"), "", ""},
		{"float8 binary", col("s", oidFloat8, 1), [][]byte{f8b(1.5), f8b(-0.25)}, f8b(1.25), "", ""},
		{"float8 overflow", col("s", oidFloat8, 0), [][]byte{tx("1e+308"), tx("1e+308")}, nil, "22003", "value out of range: overflow"},
		{"float8 infinity is no overflow", col("s", oidFloat8, 0), [][]byte{tx("Infinity"), tx("1")}, tx("Infinity"), "", ""},
		{"float8 NaN", col("s", oidFloat8, 0), [][]byte{tx("Infinity"), tx("-Infinity")}, tx("NaN"), "", ""},
		{"float4 rounds to float4", col("s", oidFloat4, 0), [][]byte{tx("0.1"), tx("0.2")}, tx("0.3"), "", ""},
		{"float4 overflow", col("s", oidFloat4, 1), [][]byte{f4b(3e38), f4b(3e38)}, nil, "22003", "value out of range: overflow"},
		{"numeric", col("s", oidNumeric, 0), [][]byte{tx("1.25"), tx("-0.125"), tx("100")}, tx("101.125"), "", ""},
		{"numeric binary", col("s", oidNumeric, 1), [][]byte{numb("0.1"), numb("0.20")}, numb("0.30"), "", ""},
		{"numeric binary large", col("s", oidNumeric, 1), [][]byte{numb("99999999999999999999"), numb("1")}, numb("100000000000000000000"), "", ""},
		{"numeric NaN", col("s", oidNumeric, 0), [][]byte{tx("1"), tx("NaN")}, tx("NaN"), "", ""},
		{"numeric infinities", col("s", oidNumeric, 1), [][]byte{numb("Infinity"), numb("5")}, numb("Infinity"), "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustMerge(t, Plan{Aggs: []Agg{{Col: 0, Kind: AggSum}}}, []Column{tc.c})
			var srcs []Source
			for _, v := range tc.vals {
				srcs = append(srcs, src(row(v)))
			}
			got, err := runAll(t, m, srcs, -1, 0)
			if tc.errCode != "" {
				var se *SQLError
				if !errors.As(err, &se) || se.Code != tc.errCode || se.Message != tc.errMsg {
					t.Fatalf("got %v, want %s %s", err, tc.errCode, tc.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			equalRows(t, got, [][]byte{row(tc.want)})
		})
	}
}

func TestCountOverflow(t *testing.T) {
	t.Parallel()
	m := mustMerge(t, Plan{Aggs: []Agg{{Col: 0, Kind: AggCount}}}, []Column{col("count", oidInt8, 1)})
	_, err := runAll(t, m, []Source{src(row(i8b(math.MaxInt64))), src(row(i8b(1)))}, -1, 0)
	if sqlState(err) != "22003" {
		t.Fatalf("got %v", err)
	}
}

// TestMinMax covers min and max of several types, NULLs skipped, and the
// original bytes of the winner kept.
func TestMinMax(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		c        Column
		vals     [][]byte
		min, max []byte
	}{
		{"int4 text", col("x", oidInt4, 0), [][]byte{tx("10"), nil, tx("-3"), tx("9")}, tx("-3"), tx("10")},
		{"float8 NaN is greatest", col("x", oidFloat8, 1), [][]byte{f8b(1), f8b(math.NaN()), f8b(-2)}, f8b(-2), f8b(math.NaN())},
		{"numeric keeps scale", col("x", oidNumeric, 0), [][]byte{tx("1.50"), tx("2"), tx("1.4")}, tx("1.4"), tx("2")},
		{"text C order", col("x", oidText, 0), [][]byte{tx("b"), tx("B"), tx("a")}, tx("B"), tx("b")},
		{"timestamptz", col("x", oidTimestamptz, 0), [][]byte{tx("2024-01-01 00:00:00+05"), tx("2023-12-31 20:00:00+00")}, tx("2024-01-01 00:00:00+05"), tx("2023-12-31 20:00:00+00")},
		{"uuid binary", col("x", oidUUID, 1), [][]byte{make([]byte, 16), []byte(strings.Repeat("\x01", 16))}, make([]byte, 16), []byte(strings.Repeat("\x01", 16))},
		{"all NULL", col("x", oidInt4, 0), [][]byte{nil, nil}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := mustMerge(t, Plan{Aggs: []Agg{{Col: 0, Kind: AggMin}, {Col: 1, Kind: AggMax}}}, []Column{tc.c, tc.c})
			var srcs []Source
			for _, v := range tc.vals {
				srcs = append(srcs, src(row(v, v)))
			}
			got, err := runAll(t, m, srcs, -1, 0)
			if err != nil {
				t.Fatal(err)
			}
			equalRows(t, got, [][]byte{row(tc.min, tc.max)})
		})
	}
}

// TestAggregateDistinct: DISTINCT applies to the combined rows.
func TestAggregateDistinct(t *testing.T) {
	t.Parallel()
	// SELECT DISTINCT count(*) FROM t GROUP BY g ORDER BY 1
	cols := []Column{intText, nameText}
	m := mustMerge(t, Plan{Visible: 1, Distinct: true, Group: []int{1}, Aggs: []Agg{{Col: 0, Kind: AggCount}}, Sort: []SortKey{{Col: 0}}}, cols)
	got, err := runAll(t, m, []Source{
		src(row(tx("1"), tx("a")), row(tx("2"), tx("b")), row(tx("1"), tx("c"))),
		src(row(tx("1"), tx("b")), row(tx("2"), tx("d"))),
	}, -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	equalRows(t, got, [][]byte{row(tx("1")), row(tx("2")), row(tx("3"))})
}

// TestGroupOnly: GROUP BY without aggregates acts like DISTINCT on the
// grouped columns.
func TestGroupOnly(t *testing.T) {
	t.Parallel()
	m := mustMerge(t, Plan{Group: []int{0}, Sort: []SortKey{{Col: 0, Desc: true}}}, []Column{nameText})
	got, err := runAll(t, m, sources([][]byte{row(tx("a")), row(tx("b"))}, [][]byte{row(tx("b")), row(tx("c"))}), -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	equalRows(t, got, [][]byte{row(tx("c")), row(tx("b")), row(tx("a"))})
}

func TestAggregateBadPartials(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		plan Plan
		cols []Column
		rows [][]byte
	}{
		{"NULL count", Plan{Aggs: []Agg{{Col: 0, Kind: AggCount}}}, []Column{intText}, [][]byte{row(nil)}},
		{"bad count", Plan{Aggs: []Agg{{Col: 0, Kind: AggCount}}}, []Column{intText}, [][]byte{row(tx("x"))}},
		{"NULL avg count", Plan{Aggs: []Agg{{Col: 0, Kind: AggAvg, CountCol: 1}}}, []Column{intText, intText}, [][]byte{row(tx("1"), nil)}},
		{"negative avg count", Plan{Aggs: []Agg{{Col: 0, Kind: AggAvg, CountCol: 1}}}, []Column{intText, intText}, [][]byte{row(tx("1"), tx("-1"))}},
		{"bad sum", Plan{Aggs: []Agg{{Col: 0, Kind: AggSum}}}, []Column{col("s", oidNumeric, 1)}, [][]byte{row([]byte{1, 2, 3})}},
		{"bad bool", Plan{Aggs: []Agg{{Col: 0, Kind: AggBoolOr}}}, []Column{col("b", oidBool, 0)}, [][]byte{row(tx("yes"))}},
		{"bad group key", Plan{Group: []int{0}}, []Column{col("d", oidDate, 0)}, [][]byte{row(tx("Jan 1"))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := runAll(t, mustMerge(t, tc.plan, tc.cols), []Source{src(tc.rows...)}, -1, 0)
			var se *SourceError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a SourceError", err)
			}
		})
	}
}
