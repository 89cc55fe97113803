package shardmap

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

// input is one way a client may send a key value.
type input struct {
	text   string // used when !binary
	binary bool
	oid    uint32
	raw    []byte
}

func txt(s string) input             { return input{text: s} }
func bin(oid uint32, b []byte) input { return input{binary: true, oid: oid, raw: b} }
func be16(v int16) []byte            { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
func be32(v int32) []byte            { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
func be64(v int64) []byte            { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (in input) normalize(typ KeyType) ([]byte, error) {
	if in.binary {
		return NormalizeBinary(typ, in.oid, in.raw)
	}
	return NormalizeText(typ, in.text)
}

func lit(t *testing.T, s string) input {
	t.Helper()
	v, err := UnquoteLiteral(s)
	if err != nil {
		t.Fatalf("UnquoteLiteral(%q): %v", s, err)
	}
	return txt(v)
}

// usSince2000 is Go's own count of microseconds since 2000-01-01 UTC: an
// oracle independent of the parser under test.
func usSince2000(tm time.Time) int64 {
	// Not Sub: a time.Duration only spans ±292 years.
	return tm.UnixMicro() - 946684800*1000000
}

func daysSince2000(y int, m time.Month, d int) int32 {
	return int32((time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() - 946684800) / 86400)
}

func TestNormalizeEquivalences(t *testing.T) {
	t.Parallel()
	uuidBytes := mustHex(t, "a0eebc999c0b4ef8bb6d6bb9bd380a11")
	tenUTC := usSince2000(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	cases := []struct {
		name   string
		typ    KeyType
		want   []byte
		inputs []input
	}{
		{"bigint 42", Bigint, mustHex(t, "000000000000002a"), []input{
			txt("42"), txt(" 42\n"), txt("+42"), txt("0042"), lit(t, "42"), lit(t, "'42'"),
			bin(OIDInt8, be64(42)), bin(OIDInt4, be32(42)), bin(OIDInt2, be16(42)),
			bin(0, be64(42)), bin(0, be32(42)), bin(0, be16(42)),
			bin(OIDText, []byte("42")), bin(OIDVarchar, []byte(" 42")), bin(OIDUnknown, []byte("42")),
		}},
		{"bigint -1", Bigint, mustHex(t, "ffffffffffffffff"), []input{
			txt("-1"), bin(OIDInt2, be16(-1)), bin(OIDInt4, be32(-1)), bin(OIDInt8, be64(-1)),
		}},
		{"bigint min", Bigint, mustHex(t, "8000000000000000"), []input{
			txt("-9223372036854775808"), bin(OIDInt8, be64(-1<<63)),
		}},
		{"bigint max", Bigint, mustHex(t, "7fffffffffffffff"), []input{txt("9223372036854775807")}},
		{"integer is bigint's encoding", Integer, mustHex(t, "000000000000002a"), []input{
			txt("42"), lit(t, "'42'"), bin(OIDInt4, be32(42)), bin(OIDInt8, be64(42)), bin(OIDInt2, be16(42)),
		}},
		{"integer min", Integer, be64(-2147483648), []input{txt("-2147483648"), bin(OIDInt4, be32(-2147483648))}},
		{"uuid", UUID, uuidBytes, []input{
			txt("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), txt("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
			txt("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"), txt("a0eebc999c0b4ef8bb6d6bb9bd380a11"),
			txt("a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11"), txt("{a0eebc999c0b4ef8bb6d6bb9bd380a11}"),
			lit(t, "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
			bin(OIDUUID, uuidBytes), bin(0, uuidBytes), bin(OIDText, []byte("A0EEBC999C0B4EF8BB6D6BB9BD380A11")),
		}},
		{"date", Date, be32(daysSince2000(2026, 1, 1)), []input{
			txt("2026-01-01"), txt(" 2026-1-1 "), txt("2026-01-01 13:45:00"), txt("2026-01-01T23:59:59.999+05"),
			txt("2026-01-01 AD"), lit(t, "'2026-01-01'"),
			bin(OIDDate, be32(daysSince2000(2026, 1, 1))), bin(0, be32(9497)), bin(OIDText, []byte("2026-01-01")),
		}},
		{"date 2000-01-01 is zero", Date, be32(0), []input{txt("2000-01-01")}},
		{"date before 2000", Date, be32(-1), []input{txt("1999-12-31"), bin(OIDDate, be32(-1))}},
		{"date epoch", Date, be32(daysSince2000(1970, 1, 1)), []input{txt("epoch"), txt("EPOCH"), txt("1970-01-01")}},
		{"date infinity", Date, be32(0x7fffffff), []input{txt("infinity"), txt("+Infinity"), bin(OIDDate, be32(0x7fffffff))}},
		{"date -infinity", Date, be32(-0x80000000), []input{txt("-infinity")}},
		{"date BC", Date, be32(daysSince2000(0, 3, 15)), []input{txt("0001-03-15 BC"), txt("0001-03-15 bc")}},
		{"date leap day", Date, be32(daysSince2000(2024, 2, 29)), []input{txt("2024-02-29")}},
		{"timestamp ignores an offset", Timestamp, be64(tenUTC), []input{
			txt("2026-01-01 10:00:00"), txt("2026-01-01T10:00"), txt("2026-01-01 10:00:00+02"),
			txt("2026-01-01 10:00:00.000000"), bin(OIDTimestamp, be64(tenUTC)), bin(0, be64(tenUTC)),
			bin(OIDText, []byte("2026-01-01 10:00:00 Z")),
		}},
		{"timestamp midnight from a date", Timestamp, be64(usSince2000(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))), []input{
			txt("2026-01-01"), txt("2025-12-31 24:00:00"), txt("2025-12-31 23:59:60"),
		}},
		{"timestamp fraction rounds to microseconds", Timestamp, be64(usSince2000(time.Date(2026, 1, 1, 0, 0, 0, 123457000, time.UTC))), []input{
			txt("2026-01-01 00:00:00.1234567"), txt("2026-01-01 00:00:00.123457"),
		}},
		{"timestamptz offsets normalised to UTC", Timestamptz, be64(tenUTC), []input{
			txt("2026-01-01 10:00:00+00"), txt("2026-01-01T10:00:00Z"), txt("2026-01-01 12:00:00+02"),
			txt("2026-01-01 05:00:00-05:00"), txt("2026-01-01 15:30+0530"), txt("2026-01-01 15:30:00+05:30:00"),
			txt("2026-01-01 10:00:00 UTC"), txt("2026-01-01 10:00:00 gmt"), txt("2026-01-01 10:00"),
			txt("2026-01-01 02:00:00-08"), lit(t, "'2026-01-01 11:00:00+01'"),
			bin(OIDTimestamptz, be64(tenUTC)), bin(0, be64(tenUTC)), bin(OIDText, []byte("2026-01-01 10:00:00+00")),
		}},
		{"timestamptz across a day boundary", Timestamptz, be64(usSince2000(time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC))), []input{
			txt("2026-01-01 01:00:00+02"), txt("2025-12-31 23:00:00Z"),
		}},
		{"timestamptz BC", Timestamptz, be64(usSince2000(time.Date(-43, 3, 15, 12, 0, 0, 0, time.UTC))), []input{
			txt("0044-03-15 12:00:00+00 BC"), txt("0044-03-15 12:00:00 BC"),
		}},
		{"timestamp infinity", Timestamp, be64(0x7fffffffffffffff), []input{txt("infinity")}},
		{"text is unchanged", Text, []byte(" Eu "), []input{
			txt(" Eu "), lit(t, "' Eu '"), bin(OIDText, []byte(" Eu ")), bin(0, []byte(" Eu ")), bin(OIDVarchar, []byte(" Eu ")),
			bin(OIDBpchar, []byte(" Eu ")), bin(OIDName, []byte(" Eu ")),
		}},
		{"text with a quote", Text, []byte("o'brien"), []input{txt("o'brien"), lit(t, "'o''brien'")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, in := range c.inputs {
				got, err := in.normalize(c.typ)
				if err != nil {
					t.Errorf("%+v: %v", in, err)
					continue
				}
				if !bytes.Equal(got, c.want) {
					t.Errorf("%+v: got %x, want %x", in, got, c.want)
				}
			}
		})
	}
}

func TestTimestamptzSessionZone(t *testing.T) {
	t.Parallel()
	berlinWinter := time.FixedZone("CET", 3600)
	cases := []struct {
		in   string
		loc  *time.Location
		want time.Time
	}{
		{"2026-01-01 11:00:00", berlinWinter, time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)},
		{"2026-01-01 11:00:00", nil, time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC)},
		{"2026-01-01 11:00:00+00", berlinWinter, time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC)},
		{"2026-01-01 11:00:00", time.FixedZone("X", -5*3600), time.Date(2026, 1, 1, 16, 0, 0, 0, time.UTC)},
	}
	for _, c := range cases {
		got, err := AppendText(nil, Timestamptz, c.in, c.loc)
		if err != nil {
			t.Fatalf("%q in %v: %v", c.in, c.loc, err)
		}
		if want := be64(usSince2000(c.want)); !bytes.Equal(got, want) {
			t.Errorf("%q in %v: got %x, want %x", c.in, c.loc, got, want)
		}
	}
}

func TestNormalizeErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		typ  KeyType
		in   input
		code string
	}{
		{Bigint, txt(""), CodeInvalidText},
		{Bigint, txt("   "), CodeInvalidText},
		{Bigint, txt("abc"), CodeInvalidText},
		{Bigint, txt("4 2"), CodeInvalidText},
		{Bigint, txt("42.0"), CodeInvalidText},
		{Bigint, txt("'42'"), CodeInvalidText},
		{Bigint, txt("-"), CodeInvalidText},
		{Bigint, txt("0x2a"), CodeInvalidText},
		{Bigint, txt("9223372036854775808"), CodeOutOfRange},
		{Bigint, txt("-9223372036854775809"), CodeOutOfRange},
		{Bigint, txt("99999999999999999999999"), CodeOutOfRange},
		{Bigint, txt("99999999999999999999999x"), CodeInvalidText},
		{Integer, txt("2147483648"), CodeOutOfRange},
		{Integer, txt("-2147483649"), CodeOutOfRange},
		{UUID, txt("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"), CodeInvalidText},
		{UUID, txt("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111"), CodeInvalidText},
		{UUID, txt("{a0eebc999c0b4ef8bb6d6bb9bd380a11"), CodeInvalidText},
		{UUID, txt("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 "), CodeInvalidText},
		{UUID, txt("a0e-ebc999c0b4ef8bb6d6bb9bd380a11"), CodeInvalidText},
		{UUID, txt("g0eebc999c0b4ef8bb6d6bb9bd380a11"), CodeInvalidText},
		{UUID, txt(""), CodeInvalidText},
		{Date, txt("2026-02-30"), CodeDatetimeRange},
		{Date, txt("2025-02-29"), CodeDatetimeRange},
		{Date, txt("2026-13-01"), CodeDatetimeRange},
		{Date, txt("0000-01-01"), CodeDatetimeRange},
		{Date, txt("26-01-01"), CodeDatetimeFormat},
		{Date, txt("2026/01/01"), CodeDatetimeFormat},
		{Date, txt("2026-01-01x"), CodeDatetimeFormat},
		{Date, txt("now"), CodeDatetimeFormat},
		{Date, txt("today"), CodeDatetimeFormat},
		{Date, txt("2026-01-01 25:00"), CodeDatetimeRange},
		{Date, txt("5874898-01-01"), CodeDatetimeRange},
		{Date, txt("4714-11-23 BC"), CodeDatetimeRange},
		{Timestamp, txt("2026-01-01 24:00:01"), CodeDatetimeRange},
		{Timestamp, txt("2026-01-01 10:60"), CodeDatetimeRange},
		{Timestamp, txt("2026-01-01 10:00:61"), CodeDatetimeRange},
		{Timestamp, txt("2026-01-01 10:00:00."), CodeDatetimeFormat},
		{Timestamp, txt("2026-01-01T"), CodeDatetimeFormat},
		{Timestamp, txt("294277-01-01"), CodeDatetimeRange},
		{Timestamp, txt("2026-01-01 10:00 BC BC"), CodeDatetimeFormat},
		{Timestamptz, txt("2026-01-01 10:00+16"), CodeDatetimeRange},
		{Timestamptz, txt("2026-01-01 10:00+02+03"), CodeDatetimeFormat},
		{Timestamptz, txt("2026-01-01 10:00 Europe/Berlin"), CodeDatetimeFormat},
		{Timestamptz, txt("2026-01-01 10:00+2x"), CodeDatetimeFormat},
		{Text, txt("a\x00b"), CodeBadByteSequence},
		{Text, bin(OIDText, []byte("a\x00")), CodeBadByteSequence},
		{Bigint, bin(OIDInt8, be32(1)), CodeBinaryFormat},
		{Bigint, bin(OIDInt4, be64(1)), CodeBinaryFormat},
		{Bigint, bin(0, []byte{1, 2, 3}), CodeBinaryFormat},
		{Bigint, bin(0, nil), CodeBinaryFormat},
		{Bigint, bin(OIDUUID, make([]byte, 16)), CodeTypeMismatch},
		{Bigint, bin(OIDText, []byte("x")), CodeInvalidText},
		{Integer, bin(OIDInt8, be64(1<<31)), CodeOutOfRange},
		{UUID, bin(OIDUUID, make([]byte, 15)), CodeBinaryFormat},
		{UUID, bin(OIDInt8, be64(1)), CodeTypeMismatch},
		{Date, bin(OIDDate, be64(1)), CodeBinaryFormat},
		{Date, bin(OIDDate, be32(dateEnd)), CodeDatetimeRange},
		{Date, bin(OIDTimestamp, be64(0)), CodeTypeMismatch},
		{Timestamp, bin(OIDTimestamptz, be64(0)), CodeTypeMismatch},
		{Timestamptz, bin(OIDTimestamp, be64(0)), CodeTypeMismatch},
		{Timestamp, bin(OIDTimestamp, be64(tsEnd)), CodeDatetimeRange},
		{Timestamp, bin(OIDTimestamp, be32(0)), CodeBinaryFormat},
		{Text, bin(OIDInt4, be32(1)), CodeTypeMismatch},
		{KeyType("float"), txt("1"), CodeTypeMismatch},
		{KeyType("float"), bin(0, be64(1)), CodeTypeMismatch},
	}
	for _, c := range cases {
		_, err := c.in.normalize(c.typ)
		var ve *ValueError
		if !errors.As(err, &ve) {
			t.Errorf("%s %+v: got %v, want a ValueError %s", c.typ, c.in, err, c.code)
			continue
		}
		if ve.SQLState() != c.code {
			t.Errorf("%s %+v: got %s (%v), want %s", c.typ, c.in, ve.SQLState(), err, c.code)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	t.Parallel()
	cases := []struct {
		typ  KeyType
		in   string
		want string
	}{
		{Bigint, "abc", `invalid input syntax for type bigint: "abc"`},
		{Bigint, "9223372036854775808", `value "9223372036854775808" is out of range for type bigint`},
		{UUID, "x", `invalid input syntax for type uuid: "x"`},
		{Date, "2026-02-30", `date/time field value out of range: "2026-02-30"`},
	}
	for _, c := range cases {
		_, err := NormalizeText(c.typ, c.in)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s %q: got %v, want %s", c.typ, c.in, err, c.want)
		}
	}
	long := bytes.Repeat([]byte("x"), 10000)
	_, err := NormalizeText(Bigint, string(long))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("a 10000-byte bad value gives a message of %d bytes; want it bounded", len(err.Error()))
	}
}

func TestUnquoteLiteral(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"42", "42", true},
		{"'42'", "42", true},
		{"''", "", true},
		{"'it''s'", "it's", true},
		{"''''", "'", true},
		{"'", "", false},
		{"'abc", "", false},
		{"'a'b'", "", false},
		{"E'a\\n'", "", false},
	}
	for _, c := range cases {
		got, err := UnquoteLiteral(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("UnquoteLiteral(%q) = %q, %v; want %q, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestFormatValueRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		typ       KeyType
		in, shown string
	}{
		{Bigint, " -42", "-42"},
		{Integer, "+7", "7"},
		{Text, "eu", "eu"},
		{UUID, "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{Date, "2026-1-1", "2026-01-01"},
		{Date, "0044-03-15 BC", "0044-03-15 BC"},
		{Date, "-infinity", "-infinity"},
		{Date, "4714-11-24 BC", "4714-11-24 BC"},
		{Date, "5874897-12-31", "5874897-12-31"},
		{Timestamp, "2026-01-01T10:00:00.5", "2026-01-01 10:00:00.5"},
		{Timestamp, "1999-12-31 23:59:59.999999", "1999-12-31 23:59:59.999999"},
		{Timestamptz, "2026-01-01 12:00+02", "2026-01-01 10:00:00+00"},
		{Timestamptz, "infinity", "infinity"},
		{Timestamptz, "4714-11-24 00:00:00+00 BC", "4714-11-24 00:00:00+00 BC"},
		{Timestamp, "294276-12-31 23:59:59.999999", "294276-12-31 23:59:59.999999"},
	}
	for _, c := range cases {
		norm, err := NormalizeText(c.typ, c.in)
		if err != nil {
			t.Fatalf("%s %q: %v", c.typ, c.in, err)
		}
		shown, err := FormatValue(c.typ, norm)
		if err != nil || shown != c.shown {
			t.Errorf("%s %q shows as %q (%v), want %q", c.typ, c.in, shown, err, c.shown)
		}
		again, err := NormalizeText(c.typ, shown)
		if err != nil || !bytes.Equal(again, norm) {
			t.Errorf("%s %q: %q reads back as %x (%v), want %x", c.typ, c.in, shown, again, err, norm)
		}
	}
	if _, err := FormatValue(Bigint, []byte{1}); err == nil {
		t.Error("FormatValue accepted 1 byte as a bigint")
	}
}

func TestParseKeyType(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]KeyType{"bigint": Bigint, "INT8": Bigint, "int4": Integer, "integer": Integer,
		"varchar": Text, "uuid": UUID, "date": Date, "timestamp with time zone": Timestamptz, " timestamp ": Timestamp} {
		if got, ok := ParseKeyType(in); !ok || got != want {
			t.Errorf("ParseKeyType(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := ParseKeyType("float8"); ok {
		t.Error("ParseKeyType accepted float8")
	}
}
