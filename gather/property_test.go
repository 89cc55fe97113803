package gather

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The property tests generate typed values, spread rows over 1-5 sources,
// and compare the merge with an answer computed in one place by the test's
// own comparison, equality, aggregation and encoding, which share nothing
// with the package's decoding.

// oval is a typed test value.
type oval struct {
	null bool
	i    int64    // ints, bool, date (days since 2000), timestamp (µs since 2000)
	f    float64  // floats
	r    *big.Rat // numeric, finite
	spec int      // numeric: 0 finite, 1 NaN, 2 +Inf, 3 -Inf
	text string   // text forms that are not derived: numeric text, strings, uuid hex
	zone int      // timestamptz: offset in seconds of the text form
}

type otype struct {
	name string
	oid  uint32
	gen  func(r *rand.Rand) oval
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

var otypes = []otype{
	{"int2", oidInt2, func(r *rand.Rand) oval { return oval{i: pick[int64](r, -32768, -2, -1, 0, 1, 2, 3, 32767)} }},
	{"int4", oidInt4, func(r *rand.Rand) oval { return oval{i: pick[int64](r, math.MinInt32, -5, 0, 1, 2, 3, math.MaxInt32)} }},
	{"int8", oidInt8, func(r *rand.Rand) oval {
		return oval{i: pick[int64](r, math.MinInt64, -1000000000000, -1, 0, 1, 7, 8, math.MaxInt64)}
	}},
	{"float4", oidFloat4, func(r *rand.Rand) oval {
		return oval{f: pick(r, math.Inf(-1), -1.5, math.Copysign(0, -1), 0, 0.25, 3, 1e30, math.Inf(1), math.NaN())}
	}},
	{"float8", oidFloat8, func(r *rand.Rand) oval {
		return oval{f: pick(r, math.Inf(-1), -1e300, -1.5, math.Copysign(0, -1), 0, 1e-10, 0.1, 2, math.Inf(1), math.NaN())}
	}},
	{"numeric", oidNumeric, func(r *rand.Rand) oval {
		return numericVal(pick(r, "-Infinity", "-1.50", "-1.5", "-0.001", "0", "0.000", "0.0001", "1", "1.0",
			"2.25", "9999.9999", "10000", "123456789012345678901234567890", "NaN", "Infinity"))
	}},
	{"bool", oidBool, func(r *rand.Rand) oval { return oval{i: int64(r.IntN(2))} }},
	{"text", oidText, func(r *rand.Rand) oval { return oval{text: pick(r, "", "a", "A", "ab", "a b", "b", "é", "Z")} }},
	{"bpchar", oidBpchar, func(r *rand.Rand) oval { return oval{text: pick(r, "a  ", "ab ", "b  ", "   ", "a b")} }},
	{"date", oidDate, func(r *rand.Rand) oval {
		return oval{i: pick[int64](r, math.MinInt32, -800000, -1, 0, 1, 8800, 8801, math.MaxInt32)}
	}},
	{"timestamp", oidTimestamp, func(r *rand.Rand) oval {
		return oval{i: pick[int64](r, math.MinInt64, -86400e6*1000, -1, 0, 500000, 86400e6*9000+1, math.MaxInt64)}
	}},
	{"timestamptz", oidTimestamptz, func(r *rand.Rand) oval {
		return oval{i: pick[int64](r, math.MinInt64, -3600e6, 0, 1, 3600e6, 86400e6*9000, math.MaxInt64), zone: pick(r, 0, 3600, -5*3600, 19800)}
	}},
	{"uuid", oidUUID, func(r *rand.Rand) oval {
		return oval{text: pick(r, "00000000000000000000000000000000", "0000000000000000000000000000000a",
			"a0000000000000000000000000000000", "0f00000000000000000000000000ffff", "ffffffffffffffffffffffffffffffff")}
	}},
}

func numericVal(s string) oval {
	switch s {
	case "NaN":
		return oval{spec: 1, text: s}
	case "Infinity":
		return oval{spec: 2, text: s}
	case "-Infinity":
		return oval{spec: 3, text: s}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic(s)
	}
	return oval{r: r, text: s}
}

// ocmp orders two values as Postgres does, written from the documentation.
func ocmp(t otype, a, b oval) int {
	switch t.oid {
	case oidFloat4, oidFloat8:
		an, bn := math.IsNaN(a.f), math.IsNaN(b.f)
		switch {
		case an && bn:
			return 0
		case an:
			return 1
		case bn:
			return -1
		case a.f < b.f:
			return -1
		case a.f > b.f:
			return 1
		}
		return 0
	case oidNumeric:
		rank := func(v oval) int { return map[int]int{0: 0, 1: 2, 2: 1, 3: -1}[v.spec] }
		if ra, rb := rank(a), rank(b); ra != rb || ra != 0 {
			return cmp3(ra, rb)
		}
		return a.r.Cmp(b.r)
	case oidText:
		return strings.Compare(a.text, b.text)
	case oidBpchar:
		return strings.Compare(strings.TrimRight(a.text, " "), strings.TrimRight(b.text, " "))
	case oidUUID:
		return strings.Compare(a.text, b.text)
	}
	return cmp3(a.i, b.i)
}

func cmp3[T int | int64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// oenc encodes a value as a server would.
func oenc(t otype, format int16, v oval) []byte {
	if v.null {
		return nil
	}
	bin := format == 1
	switch t.oid {
	case oidInt2:
		if bin {
			return i2b(int16(v.i))
		}
		return tx(strconv.FormatInt(v.i, 10))
	case oidInt4:
		if bin {
			return i4b(int32(v.i))
		}
		return tx(strconv.FormatInt(v.i, 10))
	case oidInt8:
		if bin {
			return i8b(v.i)
		}
		return tx(strconv.FormatInt(v.i, 10))
	case oidFloat4, oidFloat8:
		bits := 64
		if t.oid == oidFloat4 {
			bits = 32
		}
		if bin && bits == 32 {
			return f4b(float32(v.f))
		}
		if bin {
			return f8b(v.f)
		}
		switch {
		case math.IsNaN(v.f):
			return tx("NaN")
		case math.IsInf(v.f, 1):
			return tx("Infinity")
		case math.IsInf(v.f, -1):
			return tx("-Infinity")
		}
		return tx(strconv.FormatFloat(v.f, 'g', -1, bits))
	case oidNumeric:
		if bin {
			return numb(v.text)
		}
		return tx(v.text)
	case oidBool:
		if bin {
			return boolb(v.i == 1)
		}
		return tx(map[int64]string{0: "f", 1: "t"}[v.i])
	case oidText, oidBpchar:
		return tx(v.text)
	case oidUUID:
		raw := make([]byte, 16)
		for i := range raw {
			b, _ := strconv.ParseUint(v.text[2*i:2*i+2], 16, 8)
			raw[i] = byte(b)
		}
		if bin {
			return raw
		}
		h := v.text
		return tx(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])
	case oidDate:
		if bin {
			return i4b(int32(v.i))
		}
		switch v.i {
		case math.MaxInt32:
			return tx("infinity")
		case math.MinInt32:
			return tx("-infinity")
		}
		at := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(v.i))
		return tx(isoDate(at) + bcSuffix(at))
	case oidTimestamp, oidTimestamptz:
		if bin {
			return i8b(v.i)
		}
		switch v.i {
		case math.MaxInt64:
			return tx("infinity")
		case math.MinInt64:
			return tx("-infinity")
		}
		base := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
		at := base.Add(time.Duration(v.i%86400e6)*time.Microsecond).AddDate(0, 0, int(v.i/86400e6))
		if t.oid == oidTimestamp {
			return tx(isoDate(at) + at.Format(" 15:04:05.999999") + bcSuffix(at))
		}
		at = at.In(time.FixedZone("", v.zone))
		off := at.Format("-07")
		if v.zone%3600 != 0 {
			off = at.Format("-07:00")
		}
		return tx(isoDate(at) + at.Format(" 15:04:05.999999") + off + bcSuffix(at))
	}
	panic(t.name)
}

// isoDate writes a date as DateStyle ISO does, years BC included.
func isoDate(at time.Time) string {
	y := at.Year()
	if y <= 0 {
		y = 1 - y
	}
	return fmt.Sprintf("%04d-%02d-%02d", y, int(at.Month()), at.Day())
}

func bcSuffix(at time.Time) string {
	if at.Year() <= 0 {
		return " BC"
	}
	return ""
}

// orow is a generated row: its values and the source it goes to.
type orow struct {
	vals []oval
	src  int
}

func TestPropertySortedMerge(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 400; seed++ {
		r := rand.New(rand.NewPCG(seed, 99))
		// Columns: an optional unique id, then one to three typed columns.
		var types []otype
		var formats []int16
		withID := r.IntN(3) > 0
		if withID {
			types = append(types, otypes[2]) // int8
			formats = append(formats, int16(r.IntN(2)))
		}
		for n := 1 + r.IntN(3); n > 0; n-- {
			types = append(types, otypes[r.IntN(len(otypes))])
			formats = append(formats, int16(r.IntN(2)))
		}
		cols := make([]Column, len(types))
		for i := range types {
			cols[i] = col(fmt.Sprintf("c%d", i), types[i].oid, formats[i])
		}
		p := Plan{Visible: 1 + r.IntN(len(cols))}
		for _, c := range r.Perm(len(cols))[:1+r.IntN(len(cols))] {
			p.Sort = append(p.Sort, SortKey{Col: c, Desc: r.IntN(2) == 0, NullsFirst: r.IntN(2) == 0})
		}
		p.Distinct = r.IntN(3) == 0
		nsrc := 1 + r.IntN(5)
		rows := make([]orow, r.IntN(60))
		for i := range rows {
			rows[i].src = r.IntN(nsrc)
			for c, ty := range types {
				v := ty.gen(r)
				if withID && c == 0 {
					v = oval{i: int64(i)}
				} else if r.IntN(6) == 0 {
					v = oval{null: true}
				}
				rows[i].vals = append(rows[i].vals, v)
			}
		}
		limit, offset := int64(-1), int64(0)
		if r.IntN(2) == 0 {
			limit = int64(r.IntN(20))
		}
		if r.IntN(2) == 0 {
			offset = int64(r.IntN(20))
		}

		less := func(a, b orow) int {
			for _, k := range p.Sort {
				x, y := a.vals[k.Col], b.vals[k.Col]
				if x.null || y.null {
					if x.null == y.null {
						continue
					}
					if x.null == k.NullsFirst {
						return -1
					}
					return 1
				}
				c := ocmp(types[k.Col], x, y)
				if k.Desc {
					c = -c
				}
				if c != 0 {
					return c
				}
			}
			return 0
		}
		perSource := make([][]orow, nsrc)
		for _, row := range rows {
			perSource[row.src] = append(perSource[row.src], row)
		}
		var all []orow
		srcs := make([]Source, nsrc)
		for i, rs := range perSource {
			slices.SortStableFunc(rs, less)
			all = append(all, rs...)
			var bodies [][]byte
			for _, row := range rs {
				bodies = append(bodies, encRow(types, formats, row.vals, len(types)))
			}
			srcs[i] = src(bodies...)
		}
		// One server's answer: all rows sorted; ties keep source order.
		slices.SortStableFunc(all, less)
		var want [][]byte
		var kept []orow
		for _, row := range all {
			if p.Distinct && slices.ContainsFunc(kept, func(k orow) bool { return oequalVisible(types, p.Visible, k, row) }) {
				continue
			}
			kept = append(kept, row)
			want = append(want, encRow(types, formats, row.vals, p.Visible))
		}
		want = applyLimit(want, limit, offset)

		m, err := NewMerger(p, cols)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		got, err := runAll(t, m, srcs, limit, offset)
		if err != nil {
			t.Fatalf("seed %d: plan %+v: %v", seed, p, err)
		}
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("seed %d: plan %+v cols %v limit %d offset %d\ngot  %q\nwant %q", seed, p, typeNamesOf(types), limit, offset, textRows(t, got), textRows(t, want))
		}
	}
}

func typeNamesOf(types []otype) []string {
	var s []string
	for _, t := range types {
		s = append(s, t.name)
	}
	return s
}

func applyLimit(rows [][]byte, limit, offset int64) [][]byte {
	if offset >= int64(len(rows)) {
		return nil
	}
	rows = rows[offset:]
	if limit >= 0 && limit < int64(len(rows)) {
		rows = rows[:limit]
	}
	return rows
}

// oequalVisible is Postgres's row equality over the visible columns,
// NULLs equal (as DISTINCT treats them).
func oequalVisible(types []otype, visible int, a, b orow) bool {
	for c := 0; c < visible; c++ {
		x, y := a.vals[c], b.vals[c]
		if x.null != y.null || (!x.null && ocmp(types[c], x, y) != 0) {
			return false
		}
	}
	return true
}

func encRow(types []otype, formats []int16, vals []oval, n int) []byte {
	fs := make([][]byte, n)
	for c := 0; c < n; c++ {
		fs[c] = oenc(types[c], formats[c], vals[c])
	}
	return row(fs...)
}

// TestPropertyAggregate spreads raw rows over shards, computes each shard's
// partial aggregates as a server would, and compares the merge with the
// aggregates of all rows computed in one place:
//
//	SELECT g, count(*), sum(x), min(x), max(x), bool_and(b), bool_or(b),
//	       sum(n), avg(x), avg(f) FROM t GROUP BY g [HAVING ...] ORDER BY g
//
// with the shards answering sum(x), count(x) for avg(x) and sum(f), count(f)
// for avg(f). x is int4, b bool, n numeric, f float8 of quarters (so that
// sums are exact in any order).
func TestPropertyAggregate(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 300; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		f := int16(r.IntN(2))
		gtype := pick(r, otypes[1], otypes[7], otypes[10]) // int4, text, timestamp
		nsrc := 1 + r.IntN(5)
		type raw struct {
			g       oval
			x, b, n oval
			fl      oval
			src     int
		}
		rows := make([]raw, r.IntN(80))
		for i := range rows {
			rw := raw{g: gtype.gen(r), src: r.IntN(nsrc)}
			if r.IntN(8) == 0 {
				rw.g = oval{null: true}
			}
			rw.x = oval{i: int64(r.IntN(2001) - 1000)}
			if r.IntN(3) == 0 {
				rw.x.i = int64(pick(r, math.MaxInt32, math.MinInt32))
			}
			rw.b = oval{i: int64(r.IntN(2))}
			rw.n = numericVal(pick(r, "1.5", "-0.25", "100", "0.001", "3", "99999999999999999999.99"))
			rw.fl = oval{f: float64(r.IntN(41)-20) / 4}
			for _, v := range []*oval{&rw.x, &rw.b, &rw.n, &rw.fl} {
				if r.IntN(5) == 0 {
					*v = oval{null: true}
				}
			}
			rows[i] = rw
		}
		// The groups, in the order of their keys.
		var keys []oval
		for _, rw := range rows {
			if !slices.ContainsFunc(keys, func(k oval) bool { return ogroupEq(gtype, k, rw.g) }) {
				keys = append(keys, rw.g)
			}
		}
		desc := r.IntN(2) == 0
		slices.SortFunc(keys, func(a, b oval) int {
			var c int
			switch {
			case a.null && b.null:
			case a.null:
				c = 1
			case b.null:
				c = -1
			default:
				c = ocmp(gtype, a, b)
			}
			if desc {
				return -c
			}
			return c
		})
		inGroup := func(k oval, rw raw) bool { return ogroupEq(gtype, k, rw.g) }

		// The shards' partial rows.
		cols := []Column{
			col("g", gtype.oid, f), col("count", oidInt8, f), col("sum", oidInt8, f), col("min", oidInt4, f),
			col("max", oidInt4, f), col("bool_and", oidBool, f), col("bool_or", oidBool, f), col("sum", oidNumeric, f),
			col("avg", oidInt8, f), col("avg", oidFloat8, f), col("count", oidInt8, f), col("count", oidInt8, f),
		}
		srcs := make([]Source, nsrc)
		for s := range srcs {
			var bodies [][]byte
			for _, k := range keys {
				var part []raw
				for _, rw := range rows {
					if rw.src == s && inGroup(k, rw) {
						part = append(part, rw)
					}
				}
				if len(part) == 0 {
					continue
				}
				a := oaggregate(len(part), func(i int) (x, b, n, fl oval) { return part[i].x, part[i].b, part[i].n, part[i].fl })
				bodies = append(bodies, row(oenc(gtype, f, k), enc8(f, a.count), encOpt8(f, a.sumX), encOpt4(f, a.minX), encOpt4(f, a.maxX),
					encOptBool(f, a.and), encOptBool(f, a.or), encOptNum(f, a.sumN, a.nScale), encOpt8(f, a.sumX),
					encOptF8(f, a.sumF), enc8(f, a.countX), enc8(f, a.countF)))
			}
			// A shard returns its groups in any order.
			r.Shuffle(len(bodies), func(i, j int) { bodies[i], bodies[j] = bodies[j], bodies[i] })
			srcs[s] = src(bodies...)
		}
		p := Plan{
			Visible: 10,
			Group:   []int{0},
			Aggs: []Agg{
				{Col: 1, Kind: AggCount}, {Col: 2, Kind: AggSum}, {Col: 3, Kind: AggMin}, {Col: 4, Kind: AggMax},
				{Col: 5, Kind: AggBoolAnd}, {Col: 6, Kind: AggBoolOr}, {Col: 7, Kind: AggSum},
				{Col: 8, Kind: AggAvg, CountCol: 10}, {Col: 9, Kind: AggAvg, CountCol: 11},
			},
			Sort: []SortKey{{Col: 0, Desc: desc, NullsFirst: desc}},
		}
		minCount := int64(r.IntN(4))
		if r.IntN(2) == 0 {
			p.Having = []Cond{{Col: 1, Op: OpGe, Value: strconv.FormatInt(minCount, 10)}}
		} else {
			minCount = 0
		}
		limit, offset := int64(-1), int64(0)
		if r.IntN(3) == 0 {
			limit, offset = int64(r.IntN(5)), int64(r.IntN(3))
		}

		// One server's answer.
		type expect struct {
			key oval
			a   oaggs
		}
		var want []expect
		for _, k := range keys {
			var grp []raw
			for _, rw := range rows {
				if inGroup(k, rw) {
					grp = append(grp, rw)
				}
			}
			a := oaggregate(len(grp), func(i int) (x, b, n, fl oval) { return grp[i].x, grp[i].b, grp[i].n, grp[i].fl })
			if a.count >= minCount {
				want = append(want, expect{k, a})
			}
		}
		if offset >= int64(len(want)) {
			want = nil
		} else {
			want = want[offset:]
		}
		if limit >= 0 && limit < int64(len(want)) {
			want = want[:limit]
		}

		m, err := NewMerger(p, cols)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		got, err := runAll(t, m, srcs, limit, offset)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if len(got) != len(want) {
			t.Fatalf("seed %d: got %d groups, want %d: %q", seed, len(got), len(want), textRows(t, got))
		}
		for i, g := range got {
			w := want[i]
			vals := rowValues(t, g)
			if len(vals) != 10 {
				t.Fatalf("seed %d: %d columns", seed, len(vals))
			}
			prefix := row(oenc(gtype, f, w.key), enc8(f, w.a.count), encOpt8(f, w.a.sumX), encOpt4(f, w.a.minX), encOpt4(f, w.a.maxX),
				encOptBool(f, w.a.and), encOptBool(f, w.a.or), encOptNum(f, w.a.sumN, w.a.nScale))
			if gp := row(vals[:8]...); !bytes.Equal(gp, prefix) {
				t.Fatalf("seed %d group %d: got %q, want %q", seed, i, textRow(t, gp), textRow(t, prefix))
			}
			checkAvgX(t, seed, f, vals[8], w.a.sumX, w.a.countX)
			checkAvgF(t, seed, f, vals[9], w.a.sumF, w.a.countF)
		}
	}
}

func ogroupEq(t otype, a, b oval) bool {
	if a.null || b.null {
		return a.null == b.null
	}
	return ocmp(t, a, b) == 0
}

// oaggs are the aggregates of some rows, nil pointers for NULL.
type oaggs struct {
	count, countX, countF int64
	sumX, minX, maxX      *int64
	and, or               *bool
	sumN                  *big.Rat
	nScale                int
	sumF                  *float64
}

func oaggregate(n int, at func(int) (x, b, num, fl oval)) oaggs {
	var a oaggs
	a.count = int64(n)
	for i := 0; i < n; i++ {
		x, b, num, fl := at(i)
		if !x.null {
			a.countX++
			if a.sumX == nil {
				a.sumX, a.minX, a.maxX = new(int64), new(int64), new(int64)
				*a.minX, *a.maxX = x.i, x.i
			}
			*a.sumX += x.i
			*a.minX = min(*a.minX, x.i)
			*a.maxX = max(*a.maxX, x.i)
		}
		if !b.null {
			if a.and == nil {
				a.and, a.or = new(bool), new(bool)
				*a.and = true
			}
			*a.and = *a.and && b.i == 1
			*a.or = *a.or || b.i == 1
		}
		if !num.null {
			if a.sumN == nil {
				a.sumN = new(big.Rat)
			}
			a.sumN.Add(a.sumN, num.r)
			if _, frac, ok := strings.Cut(num.text, "."); ok {
				a.nScale = max(a.nScale, len(frac))
			}
		}
		if !fl.null {
			a.countF++
			if a.sumF == nil {
				a.sumF = new(float64)
			}
			*a.sumF += fl.f
		}
	}
	return a
}

func enc8(f int16, v int64) []byte {
	if f == 1 {
		return i8b(v)
	}
	return tx(strconv.FormatInt(v, 10))
}

func encOpt8(f int16, v *int64) []byte {
	if v == nil {
		return nil
	}
	return enc8(f, *v)
}

func encOpt4(f int16, v *int64) []byte {
	if v == nil {
		return nil
	}
	if f == 1 {
		return i4b(int32(*v))
	}
	return tx(strconv.FormatInt(*v, 10))
}

func encOptBool(f int16, v *bool) []byte {
	if v == nil {
		return nil
	}
	if f == 1 {
		return boolb(*v)
	}
	return tx(map[bool]string{false: "f", true: "t"}[*v])
}

func encOptNum(f int16, v *big.Rat, scale int) []byte {
	if v == nil {
		return nil
	}
	s := v.FloatString(scale)
	if f == 1 {
		return numb(s)
	}
	return tx(s)
}

func encOptF8(f int16, v *float64) []byte {
	if v == nil {
		return nil
	}
	if f == 1 {
		return f8b(*v)
	}
	return tx(strconv.FormatFloat(*v, 'g', -1, 64))
}

// checkAvgX checks avg(int4): sum/count rounded half away from zero at the
// scale Postgres picks, which keeps at least 16 significant digits: with
// the quotient's first base-10000 digit at weight w (estimated from the
// operands' first digits), the scale is 16 - 4w.
func checkAvgX(t *testing.T, seed uint64, f int16, got []byte, sum *int64, count int64) {
	t.Helper()
	if sum == nil || count == 0 {
		if got != nil {
			t.Fatalf("seed %d: avg %q, want NULL", seed, got)
		}
		return
	}
	text := string(got)
	if f == 1 {
		text = numericFromBinary(t, got)
	}
	// Weight and first digit in base 10000, by division.
	wf := func(v int64) (int, int64) {
		if v < 0 {
			v = -v
		}
		if v == 0 {
			return 0, 0
		}
		w := 0
		for v >= 10000 {
			v /= 10000
			w++
		}
		return w, v
	}
	w1, f1 := wf(*sum)
	w2, f2 := wf(count)
	qw := w1 - w2
	if f1 <= f2 {
		qw--
	}
	scale := max(16-4*qw, 0)
	exact := new(big.Rat).SetFrac64(*sum, count)
	want := roundHalfAway(exact, scale)
	if text != want {
		t.Fatalf("seed %d: avg of sum %d count %d: got %s, want %s", seed, *sum, count, text, want)
	}
}

func roundHalfAway(r *big.Rat, scale int) string {
	neg := r.Sign() < 0
	a := new(big.Rat).Abs(r)
	a.Mul(a, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)))
	a.Add(a, big.NewRat(1, 2))
	q := new(big.Int).Quo(a.Num(), a.Denom())
	s := q.String()
	if len(s) <= scale {
		s = strings.Repeat("0", scale-len(s)+1) + s
	}
	out := s[:len(s)-scale]
	if scale > 0 {
		out += "." + s[len(s)-scale:]
	}
	if neg && q.Sign() != 0 {
		out = "-" + out
	}
	return out
}

func checkAvgF(t *testing.T, seed uint64, f int16, got []byte, sum *float64, count int64) {
	t.Helper()
	if sum == nil || count == 0 {
		if got != nil {
			t.Fatalf("seed %d: avg(f) %q, want NULL", seed, got)
		}
		return
	}
	want := *sum / float64(count)
	var v float64
	if f == 1 {
		v = math.Float64frombits(binary.BigEndian.Uint64(got))
	} else {
		var err error
		if v, err = strconv.ParseFloat(string(got), 64); err != nil {
			t.Fatalf("seed %d: avg(f) %q: %v", seed, got, err)
		}
	}
	if v != want {
		t.Fatalf("seed %d: avg(f) %v, want %v", seed, v, want)
	}
}

// numericFromBinary renders numeric_send's form as numeric_out would.
func numericFromBinary(t testing.TB, b []byte) string {
	t.Helper()
	if len(b) < 8 {
		t.Fatalf("binary numeric %x", b)
	}
	nd := int(binary.BigEndian.Uint16(b))
	weight := int(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	dscale := int(binary.BigEndian.Uint16(b[6:]))
	switch sign {
	case 0xC000:
		return "NaN"
	case 0xD000:
		return "Infinity"
	case 0xF000:
		return "-Infinity"
	}
	v := new(big.Rat)
	for i := 0; i < nd; i++ {
		d := int64(binary.BigEndian.Uint16(b[8+2*i:]))
		e := weight - i
		p := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10000), big.NewInt(int64(abs(e))), nil))
		term := new(big.Rat).SetInt64(d)
		if e >= 0 {
			term.Mul(term, p)
		} else {
			term.Quo(term, p)
		}
		v.Add(v, term)
	}
	if sign == 0x4000 {
		v.Neg(v)
	}
	return v.FloatString(dscale)
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
