package gather

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Column is one result column as a shard's RowDescription gave it.
type Column struct {
	Name                 string
	TypeOID              uint32
	TypeSize             int16
	TypeModifier         int32
	Format               int16 // 0 text, 1 binary
	TableOID             uint32
	TableAttributeNumber uint16
}

// Type OIDs of the types the merge decodes (pg_type.dat).
const (
	oidBool        = 16
	oidBytea       = 17
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidUnknown     = 705
	oidMoney       = 790
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidInterval    = 1186
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
)

var typeNames = map[uint32]string{
	oidBool: "boolean", oidBytea: "bytea", oidChar: `"char"`, oidName: "name",
	oidInt8: "bigint", oidInt2: "smallint", oidInt4: "integer", oidText: "text",
	oidOID: "oid", oidJSON: "json", oidFloat4: "real", oidFloat8: "double precision",
	oidUnknown: "unknown", oidMoney: "money", oidBpchar: "character",
	oidVarchar: "character varying", oidDate: "date", oidTime: "time without time zone",
	oidTimestamp: "timestamp without time zone", oidTimestamptz: "timestamp with time zone",
	oidInterval: "interval", oidNumeric: "numeric", oidUUID: "uuid", oidJSONB: "jsonb",
}

func typeName(oid uint32) string {
	if n, ok := typeNames[oid]; ok {
		return n
	}
	return fmt.Sprintf("type with OID %d", oid)
}

// kind is how the merge treats the values of a type.
type kind uint8

const (
	kUnknown   kind = iota // opaque: passed through only
	kRaw                   // equal exactly when the bytes are equal; no order
	kBool                  // v.i 0 or 1
	kInt                   // int2, int4, int8, oid: v.i
	kFloat                 // float4, float8: v.f
	kNumeric               // v.d
	kText                  // text, varchar, name: v.b, byte order (C collation)
	kBpchar                // character(n): v.b without trailing spaces
	kDate                  // v.i days since 2000-01-01
	kTimestamp             // timestamp and timestamptz: v.i microseconds since 2000-01-01 (UTC)
	kUUID                  // v.b the bytes as sent: canonical text orders like the binary form
)

// colType is what the merge needs to know of a column to decode its values.
type colType struct {
	oid    uint32
	kind   kind
	binary bool
	width  int  // bytes of a binary int or float
	tz     bool // timestamptz: text carries an offset
}

func newColType(c Column) (colType, error) {
	t := colType{oid: c.TypeOID}
	switch c.Format {
	case 0:
	case 1:
		t.binary = true
	default:
		return t, fmt.Errorf("gather: column %q: format code %d", c.Name, c.Format)
	}
	switch c.TypeOID {
	case oidBool:
		t.kind = kBool
	case oidInt2:
		t.kind, t.width = kInt, 2
	case oidInt4, oidOID:
		t.kind, t.width = kInt, 4
	case oidInt8:
		t.kind, t.width = kInt, 8
	case oidFloat4:
		t.kind, t.width = kFloat, 4
	case oidFloat8:
		t.kind, t.width = kFloat, 8
	case oidNumeric:
		t.kind = kNumeric
	case oidText, oidVarchar, oidName, oidUnknown:
		t.kind = kText
	case oidBpchar:
		t.kind = kBpchar
	case oidDate:
		t.kind = kDate
	case oidTimestamp:
		t.kind = kTimestamp
	case oidTimestamptz:
		t.kind, t.tz = kTimestamp, true
	case oidUUID:
		t.kind = kUUID
	case oidBytea, oidChar:
		// Equality is bytewise and the output of a value is always the
		// same, but text output does not order like the values.
		t.kind = kRaw
	}
	return t, nil
}

// ordered reports whether values of t can be compared for ORDER BY, min,
// max and HAVING.
func (t colType) ordered() bool { return t.kind > kRaw }

// keyed reports whether equal values of t can be recognised (GROUP BY,
// DISTINCT).
func (t colType) keyed() bool { return t.kind != kUnknown }

// value is a decoded non-NULL value; which field holds it depends on the
// kind.
type value struct {
	i int64
	f float64
	b []byte
	d *decimal
}

// decode decodes the non-NULL value raw of a column of type t. v.b may
// point into raw.
func decode(t colType, raw []byte) (value, error) {
	var v value
	err := decodeInto(&v, t, raw)
	return v, err
}

// decodeInto is decode into *v, which it overwrites.
func decodeInto(v *value, t colType, raw []byte) error {
	*v = value{}
	var ok bool
	switch t.kind {
	case kBool:
		if t.binary {
			ok = len(raw) == 1 && raw[0] <= 1
			if ok {
				v.i = int64(raw[0])
			}
		} else {
			ok = len(raw) == 1 && (raw[0] == 't' || raw[0] == 'f')
			if ok && raw[0] == 't' {
				v.i = 1
			}
		}
	case kInt:
		v.i, ok = decodeInt(t, raw)
	case kFloat:
		v.f, ok = decodeFloat(t, raw)
	case kNumeric:
		var err error
		if t.binary {
			v.d, err = decodeNumericBinary(raw)
		} else {
			v.d, err = parseDecimal(raw, false)
		}
		if err != nil {
			return fmt.Errorf("numeric %s: %w", quote(raw), err)
		}
		return nil
	case kText, kRaw:
		v.b, ok = raw, true
	case kBpchar:
		v.b, ok = bytes.TrimRight(raw, " "), true
	case kDate:
		if t.binary {
			ok = len(raw) == 4
			if ok {
				v.i = int64(int32(binary.BigEndian.Uint32(raw)))
			}
		} else {
			v.i, ok = parseDate(raw)
		}
	case kTimestamp:
		if t.binary {
			ok = len(raw) == 8
			if ok {
				v.i = int64(binary.BigEndian.Uint64(raw))
			}
		} else {
			v.i, ok = parseTimestamp(raw, t.tz)
		}
	case kUUID:
		if t.binary {
			ok = len(raw) == 16
		} else {
			ok = validUUIDText(raw)
		}
		v.b = raw
	default:
		return errors.New("gather: decode of an opaque type")
	}
	if !ok {
		return fmt.Errorf("invalid %s value %s", typeName(t.oid), quote(raw))
	}
	return nil
}

// quote shows a bad value in an error, shortened.
func quote(raw []byte) string {
	if len(raw) > 40 {
		return strconv.Quote(string(raw[:40])) + "..."
	}
	return strconv.Quote(string(raw))
}

func decodeInt(t colType, raw []byte) (int64, bool) {
	if t.binary {
		if len(raw) != t.width {
			return 0, false
		}
		switch t.width {
		case 2:
			return int64(int16(binary.BigEndian.Uint16(raw))), true
		case 4:
			if t.oid == oidOID {
				return int64(binary.BigEndian.Uint32(raw)), true
			}
			return int64(int32(binary.BigEndian.Uint32(raw))), true
		default:
			return int64(binary.BigEndian.Uint64(raw)), true
		}
	}
	lo, hi := intRange(t)
	return parseInt(raw, lo, hi)
}

func intRange(t colType) (lo, hi int64) {
	switch {
	case t.oid == oidOID:
		return 0, math.MaxUint32
	case t.width == 2:
		return math.MinInt16, math.MaxInt16
	case t.width == 4:
		return math.MinInt32, math.MaxInt32
	}
	return math.MinInt64, math.MaxInt64
}

// parseInt parses the decimal text of an integer in [lo, hi], as int2out,
// int4out and int8out write it.
func parseInt(b []byte, lo, hi int64) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	if len(digits) == 0 || len(digits) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range digits {
		c -= '0'
		if c > 9 {
			return 0, false
		}
		u = u*10 + uint64(c) // 19 digits cannot overflow a uint64
	}
	var v int64
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		v = int64(-u) // -(1<<63) wraps to MinInt64, as wanted
	} else {
		if u > math.MaxInt64 {
			return 0, false
		}
		v = int64(u)
	}
	return v, v >= lo && v <= hi
}

func decodeFloat(t colType, raw []byte) (float64, bool) {
	if t.binary {
		switch {
		case t.width == 4 && len(raw) == 4:
			return float64(math.Float32frombits(binary.BigEndian.Uint32(raw))), true
		case t.width == 8 && len(raw) == 8:
			return math.Float64frombits(binary.BigEndian.Uint64(raw)), true
		}
		return 0, false
	}
	return parseFloat(raw, t.width*8)
}

// parseFloat parses a float as float4out/float8out write it: digits with
// an optional exponent, NaN, Infinity or -Infinity.
func parseFloat(b []byte, bits int) (float64, bool) {
	switch string(b) {
	case "NaN":
		return math.NaN(), true
	case "Infinity":
		return math.Inf(1), true
	case "-Infinity":
		return math.Inf(-1), true
	}
	if len(b) == 0 || len(b) > 64 {
		return 0, false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && c != '.' && c != '-' && c != '+' && c != 'e' && c != 'E' {
			return 0, false // keep strconv's hex floats, underscores and "inf" out
		}
	}
	f, err := strconv.ParseFloat(string(b), bits)
	return f, err == nil
}

func validUUIDText(b []byte) bool {
	if len(b) != 36 {
		return false
	}
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// compare orders two non-NULL values of an ordered kind as Postgres's
// default btree operator class does: C collation for text, NaN above every
// other float or numeric, -0 equal to 0, character(n) ignoring trailing
// spaces.
func compare(k kind, a, b *value) int {
	switch k {
	case kBool, kInt, kDate, kTimestamp:
		return cmpInt(a.i, b.i)
	case kFloat:
		return cmpFloat(a.f, b.f)
	case kNumeric:
		return a.d.cmp(b.d)
	default:
		return bytes.Compare(a.b, b.b)
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpFloat(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an || bn:
		return cmpBool(an, bn)
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// appendKey appends to dst bytes that are equal for two values exactly when
// Postgres's equality says they are equal (1.0 = 1.00, -0 = 0, NaN = NaN,
// 'a' = 'a ' in character(n)), and that keep a sequence of keys unambiguous.
// raw is nil for NULL. Keys compare NULLs as equal, as GROUP BY and DISTINCT
// do.
func appendKey(dst []byte, t colType, raw []byte, null bool) ([]byte, error) {
	if null {
		return append(dst, 0), nil
	}
	if t.kind == kRaw || t.kind == kText {
		dst = append(dst, 1)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(raw)))
		return append(dst, raw...), nil
	}
	v, err := decode(t, raw)
	if err != nil {
		return dst, err
	}
	return appendValueKey(dst, t.kind, &v), nil
}

func appendValueKey(dst []byte, k kind, v *value) []byte {
	dst = append(dst, 1)
	switch k {
	case kFloat:
		f := v.f
		switch {
		case math.IsNaN(f):
			return append(dst, 'N')
		case f == 0:
			f = 0 // -0 = 0
		}
		return binary.BigEndian.AppendUint64(append(dst, 'F'), math.Float64bits(f))
	case kNumeric:
		return v.d.appendKey(dst)
	case kBpchar, kText, kUUID, kRaw:
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v.b)))
		return append(dst, v.b...)
	default:
		return binary.BigEndian.AppendUint64(dst, uint64(v.i))
	}
}

// appendLen appends a field's length prefix for a value of n bytes.
func appendLen(dst []byte, n int) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(int32(n)))
}

// appendNull appends a NULL field.
func appendNull(dst []byte) []byte {
	return binary.BigEndian.AppendUint32(dst, math.MaxUint32) // -1
}

// beginField reserves a field's length prefix; endField fills it in.
func beginField(dst []byte) ([]byte, int) {
	return append(dst, 0, 0, 0, 0), len(dst)
}

func endField(dst []byte, at int) []byte {
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst
}

// appendIntField appends v as a field of the integer column t.
func appendIntField(dst []byte, t colType, v int64) []byte {
	if !t.binary {
		dst, at := beginField(dst)
		return endField(strconv.AppendInt(dst, v, 10), at)
	}
	dst = appendLen(dst, t.width)
	switch t.width {
	case 2:
		return binary.BigEndian.AppendUint16(dst, uint16(v))
	case 4:
		return binary.BigEndian.AppendUint32(dst, uint32(v))
	}
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

// appendFloatField appends f as a field of the float column t.
func appendFloatField(dst []byte, t colType, f float64) []byte {
	if t.binary {
		dst = appendLen(dst, t.width)
		if t.width == 4 {
			return binary.BigEndian.AppendUint32(dst, math.Float32bits(float32(f)))
		}
		return binary.BigEndian.AppendUint64(dst, math.Float64bits(f))
	}
	dst, at := beginField(dst)
	return endField(appendFloatText(dst, f, t.width*8), at)
}

// appendFloatText writes f as float4out/float8out do with the default
// extra_float_digits (1, or any positive value): the shortest text that
// reads back as the same value, in exponent form when the decimal exponent
// is below -4 or at least 15 (float8) or 6 (float4), like printf's %g.
func appendFloatText(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, bits)
	i := bytes.LastIndexByte(e, 'e')
	exp, _ := strconv.Atoi(string(e[i+1:]))
	limit := 15
	if bits == 32 {
		limit = 6
	}
	if exp < -4 || exp >= limit {
		return append(dst, e...)
	}
	return strconv.AppendFloat(dst, f, 'f', -1, bits)
}

// appendBoolField appends b as a field of a boolean column.
func appendBoolField(dst []byte, t colType, b bool) []byte {
	dst = appendLen(dst, 1)
	switch {
	case t.binary && b:
		return append(dst, 1)
	case t.binary:
		return append(dst, 0)
	case b:
		return append(dst, 't')
	}
	return append(dst, 'f')
}

// appendNumericField appends d as a field of the numeric column t.
func appendNumericField(dst []byte, t colType, d *decimal) ([]byte, error) {
	dst, at := beginField(dst)
	if t.binary {
		var err error
		if dst, err = d.appendBinary(dst); err != nil {
			return dst, err
		}
	} else {
		dst = d.appendText(dst)
	}
	return endField(dst, at), nil
}
