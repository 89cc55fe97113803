package gather

import (
	"encoding/binary"
	"testing"
)

// fuzzConfigs are the merges FuzzMerge drives; the first input byte picks
// one.
var fuzzConfigs = []struct {
	plan Plan
	cols []Column
}{
	{Plan{Visible: 1}, []Column{intText, nameText}},
	{Plan{Sort: []SortKey{{Col: 0}, {Col: 1, Desc: true, NullsFirst: true}}}, []Column{col("n", oidNumeric, 1), col("f", oidFloat8, 0)}},
	{Plan{Sort: []SortKey{{Col: 1}}, Distinct: true, Visible: 2}, []Column{col("t", oidTimestamptz, 0), col("d", oidDate, 1), col("b", oidBpchar, 0)}},
	{Plan{Distinct: true}, []Column{col("n", oidNumeric, 0), col("u", oidUUID, 0), col("f", oidFloat4, 1)}},
	{Plan{Group: []int{0}, Aggs: []Agg{{Col: 1, Kind: AggCount}, {Col: 2, Kind: AggSum}, {Col: 3, Kind: AggAvg, CountCol: 4}},
		Having: []Cond{{Col: 3, Op: OpGt, Value: "0.5"}}, Sort: []SortKey{{Col: 2, Desc: true}}, Visible: 4},
		[]Column{col("g", oidText, 0), col("c", oidInt8, 1), col("s", oidNumeric, 1), col("a", oidNumeric, 0), col("n", oidInt8, 0)}},
	{Plan{Aggs: []Agg{{Col: 0, Kind: AggMin}, {Col: 1, Kind: AggMax}, {Col: 2, Kind: AggBoolAnd}, {Col: 3, Kind: AggAvg, CountCol: 4}, {Col: 5, Kind: AggSum}}, Visible: 4},
		[]Column{col("t", oidTimestamp, 0), col("u", oidUUID, 1), col("b", oidBool, 0), col("a", oidFloat8, 1), col("n", oidInt8, 1), col("s", oidInt4, 0)}},
}

// fuzzInput frames rows for FuzzMerge: config byte, then per row a source
// byte, a uint16 length and the DataRow body.
func fuzzInput(cfg byte, rows ...[]byte) []byte {
	b := []byte{cfg}
	for i, r := range rows {
		b = append(b, byte(i%3))
		b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
		b = append(b, r...)
	}
	return b
}

func FuzzMerge(f *testing.F) {
	f.Add(fuzzInput(0, row(tx("1"), tx("a")), row(tx("2"), nil), []byte{0, 2, 0xff}))
	f.Add(fuzzInput(1, row(numb("1.5"), tx("NaN")), row(numb("-Infinity"), tx("1e+300")), row(numb("99999999999999999999.1"), nil)))
	f.Add(fuzzInput(2, row(tx("2024-01-01 00:00:00+05:30"), i4b(3), tx("a ")), row(tx("infinity"), i4b(4), tx("a"))))
	f.Add(fuzzInput(3, row(tx("1.0"), tx("00000000-0000-0000-0000-000000000000"), f4b(1)), row(tx("1.00"), tx("00000000-0000-0000-0000-000000000000"), f4b(1))))
	f.Add(fuzzInput(4, row(tx("a"), i8b(2), numb("1.5"), tx("3"), tx("2")), row(tx("a"), i8b(1), numb("NaN"), tx("1"), tx("1")),
		row(nil, i8b(1), nil, nil, tx("0"))))
	f.Add(fuzzInput(5, row(tx("2000-01-01 00:00:00"), make([]byte, 16), tx("t"), f8b(1), i8b(1), tx("2147483647")),
		row(tx("0044-03-15 00:00:00 BC"), make([]byte, 16), tx("f"), f8b(2), i8b(1), tx("1"))))
	f.Add(fuzzInput(4, []byte{0, 5, 0, 0, 0, 1, 'a', 0, 0, 0, 8}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		cfg := fuzzConfigs[int(data[0])%len(fuzzConfigs)]
		m, err := NewMerger(cfg.plan, cfg.cols)
		if err != nil {
			t.Fatal(err)
		}
		var groups [3][][]byte
		for p := 1; p+3 <= len(data); {
			s := int(data[p]) % 3
			n := int(binary.BigEndian.Uint16(data[p+1:]))
			p += 3
			n = min(n, len(data)-p)
			groups[s] = append(groups[s], data[p:p+n])
			p += n
		}
		want := len(m.ClientColumns())
		fs := make([]field, want)
		_, _ = runAllCheck(t, m, sources(groups[:]...), func(r []byte) {
			if err := splitRow(r, want, fs); err != nil {
				t.Fatalf("emitted a malformed row %x: %v", r, err)
			}
		})
	})
}

func runAllCheck(t *testing.T, m *Merger, srcs []Source, check func([]byte)) ([][]byte, error) {
	t.Helper()
	var out [][]byte
	_, err := m.Run(t.Context(), srcs, -1, 0, func(r []byte) error {
		check(r)
		out = append(out, append([]byte{}, r...))
		return nil
	})
	return out, err
}

// FuzzDecode checks that any bytes either fail to decode or decode to a
// value whose key and order are consistent, and that numeric values read
// back the same after the merge writes them.
func FuzzDecode(f *testing.F) {
	oids := []uint32{oidBool, oidInt2, oidInt4, oidInt8, oidOID, oidFloat4, oidFloat8, oidNumeric, oidText, oidBpchar,
		oidDate, oidTimestamp, oidTimestamptz, oidUUID, oidBytea}
	for i, tc := range orderedCases() {
		for _, g := range tc.values {
			for _, pair := range g {
				f.Add(uint8(i), uint8(0), pair[0])
				f.Add(uint8(i), uint8(1), pair[1])
			}
		}
	}
	f.Fuzz(func(t *testing.T, which, format uint8, raw []byte) {
		ct, err := newColType(col("c", oids[int(which)%len(oids)], int16(format%2)))
		if err != nil {
			t.Fatal(err)
		}
		k1, err := appendKey(nil, ct, raw, false)
		if err != nil {
			return
		}
		if !ct.ordered() {
			return
		}
		v, err := decode(ct, raw)
		if err != nil {
			t.Fatalf("key without value: %v", err)
		}
		if c := compare(ct.kind, &v, &v); c != 0 {
			t.Fatalf("%q compares %d with itself", raw, c)
		}
		if ct.kind != kNumeric {
			return
		}
		for _, bin := range []bool{false, true} {
			var enc []byte
			if enc, err = appendNumericField(nil, colType{kind: kNumeric, binary: bin}, v.d); err != nil {
				continue // too large for the binary form
			}
			back, err := decode(colType{oid: oidNumeric, kind: kNumeric, binary: bin}, enc[4:])
			if err != nil {
				t.Fatalf("%s written as %s does not read back: %.200v", quote(raw), quote(enc), err)
			}
			k2 := appendValueKey(nil, kNumeric, &back)
			if back.d.cmp(v.d) != 0 || string(k1) != string(k2) || (v.d.scale == v.d.dscale && back.d.dscale != v.d.dscale) {
				t.Fatalf("%s written as %s reads back as %s", quote(raw), quote(enc), quote(back.d.appendText(nil)))
			}
		}
	})
}
