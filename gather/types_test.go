package gather

import (
	"math"
	"strings"
	"testing"
)

// ordered lists values of a type in ascending order; values in the same
// inner slice are equal. Each value is given in text and in binary, as a
// server sends them.
type orderedCase struct {
	name   string
	oid    uint32
	values [][][2][]byte // groups of equal values: {text, binary}
}

func tb(text string, bin []byte) [2][]byte { return [2][]byte{tx(text), bin} }

func eq(vs ...[2][]byte) [][2][]byte { return vs }

// days since 2000-01-01, for expected binary dates.
func days(y, m, d int64) int64 { return daysFromCivilTest(y, m, d) - 10957 }

// daysFromCivilTest counts days from 1970-01-01 the slow way, so that the
// test does not lean on the code it checks.
func daysFromCivilTest(y, m, d int64) int64 {
	leap := func(y int64) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }
	ml := []int64{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	var n int64
	if y >= 1970 {
		for yy := int64(1970); yy < y; yy++ {
			n += 365
			if leap(yy) {
				n++
			}
		}
	} else {
		for yy := y; yy < 1970; yy++ {
			n -= 365
			if leap(yy) {
				n--
			}
		}
	}
	for mm := int64(1); mm < m; mm++ {
		n += ml[mm-1]
		if mm == 2 && leap(y) {
			n++
		}
	}
	return n + d - 1
}

const usDay = 86400 * 1000000

func orderedCases() []orderedCase {
	return []orderedCase{
		{"int2", oidInt2, [][][2][]byte{
			eq(tb("-32768", i2b(-32768))), eq(tb("-1", i2b(-1))), eq(tb("0", i2b(0))),
			eq(tb("7", i2b(7))), eq(tb("32767", i2b(32767))),
		}},
		{"int4", oidInt4, [][][2][]byte{
			eq(tb("-2147483648", i4b(math.MinInt32))), eq(tb("-10", i4b(-10))), eq(tb("9", i4b(9))),
			eq(tb("10", i4b(10))), eq(tb("2147483647", i4b(math.MaxInt32))),
		}},
		{"int8", oidInt8, [][][2][]byte{
			eq(tb("-9223372036854775808", i8b(math.MinInt64))), eq(tb("-1", i8b(-1))), eq(tb("0", i8b(0))),
			eq(tb("100", i8b(100))), eq(tb("9223372036854775807", i8b(math.MaxInt64))),
		}},
		{"oid", oidOID, [][][2][]byte{
			eq(tb("0", i4b(0))), eq(tb("2147483648", i4b(math.MinInt32))), eq(tb("4294967295", i4b(-1))),
		}},
		{"float4", oidFloat4, [][][2][]byte{
			eq(tb("-Infinity", f4b(float32(math.Inf(-1))))),
			eq(tb("-3.4028235e+38", f4b(-math.MaxFloat32))),
			eq(tb("-1.5", f4b(-1.5))),
			eq(tb("-0", f4b(float32(math.Copysign(0, -1)))), tb("0", f4b(0))),
			eq(tb("1e-45", f4b(math.SmallestNonzeroFloat32))),
			eq(tb("0.1", f4b(0.1))),
			eq(tb("1.234567e+06", f4b(1234567))),
			eq(tb("Infinity", f4b(float32(math.Inf(1))))),
			eq(tb("NaN", f4b(float32(math.NaN())))),
		}},
		{"float8", oidFloat8, [][][2][]byte{
			eq(tb("-Infinity", f8b(math.Inf(-1)))),
			eq(tb("-1e+300", f8b(-1e300))),
			eq(tb("-1", f8b(-1))),
			eq(tb("-0.30000000000000004", f8b(-math.Nextafter(0.3, 1)))),
			eq(tb("-0", f8b(math.Copysign(0, -1))), tb("0", f8b(0))),
			eq(tb("5e-324", f8b(5e-324))),
			eq(tb("0.1", f8b(0.1))),
			eq(tb("0.30000000000000004", f8b(math.Nextafter(0.3, 1)))),
			eq(tb("1e+15", f8b(1e15))),
			eq(tb("Infinity", f8b(math.Inf(1)))),
			eq(tb("NaN", f8b(math.NaN())), tb("NaN", f8b(-math.NaN()))),
		}},
		{"numeric", oidNumeric, [][][2][]byte{
			eq(tb("-Infinity", numb("-Infinity"))),
			eq(tb("-99999999999999999999.5", numb("-99999999999999999999.5"))),
			eq(tb("-1.5", numb("-1.5")), tb("-1.50", numb("-1.50"))),
			eq(tb("-1.4999", numb("-1.4999"))),
			eq(tb("0", numb("0")), tb("0.000", numb("0.000"))),
			eq(tb("0.00001", numb("0.00001"))),
			eq(tb("0.0001", numb("0.0001"))),
			eq(tb("1", numb("1")), tb("1.0", numb("1.0")), tb("1.00000000", numb("1.00000000"))),
			eq(tb("9999.9999", numb("9999.9999"))),
			eq(tb("10000", numb("10000"))),
			eq(tb("12345678901234567890.123", numb("12345678901234567890.123"))),
			eq(tb("Infinity", numb("Infinity"))),
			eq(tb("NaN", numb("NaN"))),
		}},
		{"bool", oidBool, [][][2][]byte{
			eq(tb("f", boolb(false))), eq(tb("t", boolb(true))),
		}},
		{"text", oidText, [][][2][]byte{
			eq(tb("", []byte{})), eq(tb("A", tx("A"))), eq(tb("B", tx("B"))), eq(tb("a", tx("a"))),
			eq(tb("ab", tx("ab"))), eq(tb("b", tx("b"))), eq(tb("é", tx("é"))),
		}},
		{"varchar", oidVarchar, [][][2][]byte{
			eq(tb("a", tx("a"))), eq(tb("a ", tx("a "))), eq(tb("a!", tx("a!"))),
		}},
		{"bpchar", oidBpchar, [][][2][]byte{
			eq(tb("", []byte{}), tb("   ", tx("   "))),
			eq(tb("a", tx("a")), tb("a  ", tx("a  "))),
			eq(tb("a b", tx("a b"))),
			eq(tb("ab ", tx("ab "))),
		}},
		{"date", oidDate, [][][2][]byte{
			eq(tb("-infinity", i4b(math.MinInt32))),
			eq(tb("4714-11-24 BC", i4b(int32(days(-4713, 11, 24))))),
			eq(tb("0044-03-15 BC", i4b(int32(days(-43, 3, 15))))),
			eq(tb("0001-12-31 BC", i4b(int32(days(0, 12, 31))))),
			eq(tb("0001-01-01", i4b(int32(days(1, 1, 1))))),
			eq(tb("1999-12-31", i4b(-1))),
			eq(tb("2000-01-01", i4b(0))),
			eq(tb("2024-02-29", i4b(int32(days(2024, 2, 29))))),
			eq(tb("2024-03-01", i4b(int32(days(2024, 3, 1))))),
			eq(tb("10000-01-01", i4b(int32(days(10000, 1, 1))))),
			eq(tb("infinity", i4b(math.MaxInt32))),
		}},
		{"timestamp", oidTimestamp, [][][2][]byte{
			eq(tb("-infinity", i8b(math.MinInt64))),
			eq(tb("0044-03-15 12:00:00 BC", i8b(days(-43, 3, 15)*usDay+12*3600e6))),
			eq(tb("1999-12-31 23:59:59.999999", i8b(-1))),
			eq(tb("2000-01-01 00:00:00", i8b(0))),
			eq(tb("2000-01-01 00:00:00.5", i8b(500000))),
			eq(tb("2000-01-01 00:00:00.500001", i8b(500001))),
			eq(tb("2024-06-30 13:14:15.25", i8b(days(2024, 6, 30)*usDay+(13*3600+14*60+15)*1e6+250000))),
			eq(tb("infinity", i8b(math.MaxInt64))),
		}},
		{"timestamptz", oidTimestamptz, [][][2][]byte{
			eq(tb("-infinity", i8b(math.MinInt64))),
			eq(tb("1890-01-01 00:53:28+00:53:28", i8b(days(1890, 1, 1)*usDay))),
			eq(tb("1999-12-31 19:00:00-05", i8b(0)), tb("2000-01-01 00:00:00+00", i8b(0)),
				tb("2000-01-01 05:30:00+05:30", i8b(0))),
			eq(tb("2000-01-01 00:00:00.000001+00", i8b(1))),
			eq(tb("2000-01-01 01:00:00+00", i8b(3600e6)), tb("2000-01-01 00:00:00-01", i8b(3600e6))),
			eq(tb("infinity", i8b(math.MaxInt64))),
		}},
		{"uuid", oidUUID, [][][2][]byte{
			eq(tb("00000000-0000-0000-0000-000000000000", make([]byte, 16))),
			eq(tb("00000000-0000-0000-0000-00000000000a", append(make([]byte, 15), 0x0a))),
			eq(tb("0f000000-0000-0000-0000-000000000000", append([]byte{0x0f}, make([]byte, 15)...))),
			eq(tb("a0000000-0000-0000-0000-000000000000", append([]byte{0xa0}, make([]byte, 15)...))),
			eq(tb("ffffffff-ffff-ffff-ffff-ffffffffffff", []byte(strings.Repeat("\xff", 16)))),
		}},
	}
}

// TestOrderAndEquality checks, for every type in both formats, that the
// decoded values compare in the listed order and that keys are equal
// exactly for equal values.
func TestOrderAndEquality(t *testing.T) {
	t.Parallel()
	for _, tc := range orderedCases() {
		for format := int16(0); format <= 1; format++ {
			t.Run(tc.name+[]string{"/text", "/binary"}[format], func(t *testing.T) {
				t.Parallel()
				ct, err := newColType(col("c", tc.oid, format))
				if err != nil {
					t.Fatal(err)
				}
				type item struct {
					rank int
					raw  []byte
					v    value
					key  string
				}
				var items []item
				for rank, group := range tc.values {
					for _, pair := range group {
						raw := pair[format]
						v, err := decode(ct, raw)
						if err != nil {
							t.Fatalf("decode %q: %v", raw, err)
						}
						k, err := appendKey(nil, ct, raw, false)
						if err != nil {
							t.Fatalf("key %q: %v", raw, err)
						}
						items = append(items, item{rank, raw, v, string(k)})
					}
				}
				for _, a := range items {
					for _, b := range items {
						want := cmpInt(int64(a.rank), int64(b.rank))
						if got := compare(ct.kind, &a.v, &b.v); got != want {
							t.Errorf("compare(%q, %q) = %d, want %d", a.raw, b.raw, got, want)
						}
						if (a.key == b.key) != (want == 0) {
							t.Errorf("keys of %q and %q equal: %v, values equal: %v", a.raw, b.raw, a.key == b.key, want == 0)
						}
					}
				}
				nullKey, _ := appendKey(nil, ct, nil, true)
				for _, a := range items {
					if string(nullKey) == a.key {
						t.Errorf("key of %q equals the NULL key", a.raw)
					}
				}
			})
		}
	}
}

// TestDecodeRejects checks that malformed values are errors, not guesses.
func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		oid    uint32
		format int16
		raw    string
	}{
		{oidInt2, 0, "32768"}, {oidInt2, 0, ""}, {oidInt2, 0, "-"}, {oidInt2, 1, "\x00"},
		{oidInt4, 0, "1.5"}, {oidInt4, 0, " 1"}, {oidInt4, 0, "2147483648"}, {oidInt4, 1, "\x00\x00\x01"},
		{oidInt8, 0, "9223372036854775808"}, {oidInt8, 0, "-9223372036854775809"}, {oidInt8, 0, "99999999999999999999"},
		{oidInt8, 0, "+1"}, {oidInt8, 1, "1234567"},
		{oidOID, 0, "-1"}, {oidOID, 0, "4294967296"},
		{oidFloat8, 0, "inf"}, {oidFloat8, 0, "0x1p3"}, {oidFloat8, 0, "1e"}, {oidFloat8, 0, "nan"},
		{oidFloat8, 0, ""}, {oidFloat8, 1, "\x00\x00\x00\x00"}, {oidFloat4, 1, "\x00\x00\x00\x00\x00\x00\x00\x00"},
		{oidNumeric, 0, "1e5"}, {oidNumeric, 0, "+1"}, {oidNumeric, 0, "."}, {oidNumeric, 0, "1.2.3"},
		{oidNumeric, 0, "nan"}, {oidNumeric, 0, ""}, {oidNumeric, 1, "\x00\x01\x00\x00\x00\x00\x00\x00"},
		{oidNumeric, 1, "\x00\x01\x00\x00\x00\x00\x00\x00\x27\x10"}, // digit 10000
		{oidNumeric, 1, "\x00\x00\x00\x00\x12\x34\x00\x00"},         // bad sign
		{oidNumeric, 1, "\x00\x00\x00\x00\x00\x00\x40\x00"},         // dscale too large
		{oidNumeric, 1, "\xff\xff\x00\x00\x00\x00\x00\x00"},         // negative digit count
		{oidBool, 0, "true"}, {oidBool, 0, "T"}, {oidBool, 1, "\x02"}, {oidBool, 1, ""},
		{oidDate, 0, "2024-1-02"}, {oidDate, 0, "24-01-02"}, {oidDate, 0, "2024-13-01"}, {oidDate, 0, "2024-01-00"},
		{oidDate, 0, "01/02/2024"}, {oidDate, 0, "2024-01-02 AD"}, {oidDate, 0, "0000-01-01"},
		{oidDate, 0, "99999999-01-01"}, {oidDate, 1, "\x00\x00"},
		{oidTimestamp, 0, "2024-01-02"}, {oidTimestamp, 0, "2024-01-02 03:04"}, {oidTimestamp, 0, "2024-01-02 03:04:05.1234567"},
		{oidTimestamp, 0, "2024-01-02 03:04:05."}, {oidTimestamp, 0, "2024-01-02 03:61:05"}, {oidTimestamp, 0, "2024-01-02 03:04:05+00"},
		{oidTimestamptz, 0, "2024-01-02 03:04:05"}, {oidTimestamptz, 0, "2024-01-02 03:04:05+0"}, {oidTimestamptz, 0, "2024-01-02 03:04:05+00:99"},
		{oidTimestamptz, 0, "Tue Jan 02 03:04:05 2024 UTC"}, {oidTimestamptz, 1, "\x00"},
		{oidUUID, 0, "A0000000-0000-0000-0000-000000000000"}, {oidUUID, 0, "a0000000000000000000000000000000"}, {oidUUID, 1, "\x00"},
	}
	for _, c := range cases {
		ct, err := newColType(col("c", c.oid, c.format))
		if err != nil {
			t.Fatal(err)
		}
		if v, err := decode(ct, []byte(c.raw)); err == nil {
			t.Errorf("decode(%s, format %d, %q) = %+v, want an error", typeName(c.oid), c.format, c.raw, v)
		}
	}
}

// TestFloatText checks float output against what PostgreSQL 15 prints with
// the default extra_float_digits.
func TestFloatText(t *testing.T) {
	t.Parallel()
	cases := []struct {
		f    float64
		bits int
		want string
	}{
		{1e15, 64, "1e+15"},
		{1e14, 64, "100000000000000"},
		{123456789012345.6, 64, "123456789012345.6"},
		{0.0001, 64, "0.0001"},
		{0.00001, 64, "1e-05"},
		{1e300, 64, "1e+300"},
		{0.15000000223517418, 64, "0.15000000223517418"},
		{math.Copysign(0, -1), 64, "-0"},
		{math.NaN(), 64, "NaN"},
		{math.Inf(-1), 64, "-Infinity"},
		{float64(float32(1.5e-5)), 32, "1.5e-05"},
		{1e6, 32, "1e+06"},
		{123456, 32, "123456"},
		{1234567, 32, "1.234567e+06"},
		{1e5, 32, "100000"},
		{float64(float32(0.1) + float32(0.2)), 32, "0.3"},
		{math.Inf(1), 32, "Infinity"},
	}
	for _, c := range cases {
		if got := string(appendFloatText(nil, c.f, c.bits)); got != c.want {
			t.Errorf("float%d %v: got %q, want %q", c.bits/8, c.f, got, c.want)
		}
	}
}

// TestNumericForms checks that numeric values survive text and binary
// decoding and encoding unchanged, display scale included.
func TestNumericForms(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"0", "0.000", "1", "-1", "1.5", "-0.0001", "0.00001", "10000", "9999.9999", "100000000",
		"123456789012345678901234567890.123456789", "-42.4200", "0.1000", "NaN", "Infinity", "-Infinity",
		"1" + strings.Repeat("0", 100), "0." + strings.Repeat("0", 50) + "1",
	} {
		dt, err := parseDecimal([]byte(s), false)
		if err != nil {
			t.Fatalf("parse %q: %v", s, err)
		}
		if got := string(dt.appendText(nil)); got != s {
			t.Errorf("text %q -> %q", s, got)
		}
		db, err := decodeNumericBinary(numb(s))
		if err != nil {
			t.Fatalf("binary %q: %v", s, err)
		}
		if got := string(db.appendText(nil)); got != s {
			t.Errorf("binary %q -> text %q", s, got)
		}
		bin, err := dt.appendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(bin) != string(numb(s)) {
			t.Errorf("binary of %q: got %x, want %x", s, bin, numb(s))
		}
	}
}
