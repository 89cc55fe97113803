package shardmap

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// KeyType is the declared type of a table's shard key.
type KeyType string

// The key types a table may declare.
const (
	Bigint      KeyType = "bigint"
	Integer     KeyType = "integer"
	Text        KeyType = "text"
	UUID        KeyType = "uuid"
	Date        KeyType = "date"
	Timestamp   KeyType = "timestamp"
	Timestamptz KeyType = "timestamptz"
)

// KeyTypes lists every key type, in documentation order.
var KeyTypes = []KeyType{Bigint, Integer, Text, UUID, Date, Timestamp, Timestamptz}

// keyTypeNames maps what a config may spell (Postgres names and aliases,
// lower-cased) to a KeyType.
var keyTypeNames = map[string]KeyType{
	"bigint": Bigint, "int8": Bigint,
	"integer": Integer, "int": Integer, "int4": Integer,
	"text": Text, "varchar": Text, "character varying": Text,
	"uuid":      UUID,
	"date":      Date,
	"timestamp": Timestamp, "timestamp without time zone": Timestamp,
	"timestamptz": Timestamptz, "timestamp with time zone": Timestamptz,
}

// ParseKeyType accepts a key type name as a config spells it (case-insensitive;
// Postgres aliases such as int8, int4, varchar are accepted).
func ParseKeyType(s string) (KeyType, bool) {
	t, ok := keyTypeNames[strings.ToLower(strings.TrimSpace(s))]
	return t, ok
}

// signed reports whether the normalised form of t is a big-endian two's
// complement integer (whose order needs the sign bit flipped to compare as bytes).
func (t KeyType) signed() bool {
	switch t {
	case Bigint, Integer, Date, Timestamp, Timestamptz:
		return true
	}
	return false
}

// Type OIDs of bind parameters that LocateBinary and AppendBinary understand.
const (
	OIDUnspecified uint32 = 0
	OIDName        uint32 = 19
	OIDInt8        uint32 = 20
	OIDInt2        uint32 = 21
	OIDInt4        uint32 = 23
	OIDText        uint32 = 25
	OIDUnknown     uint32 = 705
	OIDBpchar      uint32 = 1042
	OIDVarchar     uint32 = 1043
	OIDDate        uint32 = 1082
	OIDTimestamp   uint32 = 1114
	OIDTimestamptz uint32 = 1184
	OIDUUID        uint32 = 2950
)

func oidName(oid uint32) string {
	switch oid {
	case OIDName:
		return "name"
	case OIDInt8:
		return "int8"
	case OIDInt2:
		return "int2"
	case OIDInt4:
		return "int4"
	case OIDText:
		return "text"
	case OIDUnknown:
		return "unknown"
	case OIDBpchar:
		return "bpchar"
	case OIDVarchar:
		return "varchar"
	case OIDDate:
		return "date"
	case OIDTimestamp:
		return "timestamp"
	case OIDTimestamptz:
		return "timestamptz"
	case OIDUUID:
		return "uuid"
	}
	return "OID " + strconv.FormatUint(uint64(oid), 10)
}

// textOID reports whether a parameter of this type carries text bytes even in
// binary format (the binary form of text-like types is the text itself).
func textOID(oid uint32) bool {
	switch oid {
	case OIDText, OIDVarchar, OIDBpchar, OIDName, OIDUnknown:
		return true
	}
	return false
}

// SQLSTATE codes a ValueError carries.
const (
	CodeInvalidText     = "22P02" // invalid_text_representation
	CodeOutOfRange      = "22003" // numeric_value_out_of_range
	CodeDatetimeFormat  = "22007" // invalid_datetime_format
	CodeDatetimeRange   = "22008" // datetime_field_overflow
	CodeBinaryFormat    = "22P03" // invalid_binary_representation
	CodeBadByteSequence = "22021" // character_not_in_repertoire
	CodeTypeMismatch    = "42804" // datatype_mismatch
)

// ValueError is a key value that cannot be normalised for its key type. Its
// message follows Postgres' wording so a client sees a familiar error.
type ValueError struct {
	Type KeyType
	// Code is the SQLSTATE a client should receive.
	Code string
	// Msg is the full message, without the error code.
	Msg string
}

func (e *ValueError) Error() string { return e.Msg }

// SQLState returns the SQLSTATE code for this error.
func (e *ValueError) SQLState() string { return e.Code }

// quoteValue quotes v for a message, bounded so a hostile value cannot make
// an error message huge.
func quoteValue(v string) string {
	const max = 64
	if len(v) > max {
		return strconv.Quote(v[:max]) + "…"
	}
	return strconv.Quote(v)
}

func syntaxError(t KeyType, v string) *ValueError {
	code := CodeInvalidText
	if t == Date || t == Timestamp || t == Timestamptz {
		code = CodeDatetimeFormat
	}
	return &ValueError{t, code, fmt.Sprintf("invalid input syntax for type %s: %s", t, quoteValue(v))}
}

func rangeError(t KeyType, v string) *ValueError {
	switch t {
	case Date, Timestamp, Timestamptz:
		return &ValueError{t, CodeDatetimeRange, fmt.Sprintf("%s out of range: %s", t, quoteValue(v))}
	}
	return &ValueError{t, CodeOutOfRange, fmt.Sprintf("value %s is out of range for type %s", quoteValue(v), t)}
}

func binaryLenError(t KeyType, oid uint32, n int) *ValueError {
	return &ValueError{t, CodeBinaryFormat, fmt.Sprintf("incorrect binary data format for type %s: a %s parameter of %d bytes", t, oidName(oid), n)}
}

func mismatchError(t KeyType, oid uint32) *ValueError {
	return &ValueError{t, CodeTypeMismatch, fmt.Sprintf("a parameter of type %s cannot be a shard key of type %s", oidName(oid), t)}
}

func nulError(t KeyType) *ValueError {
	return &ValueError{t, CodeBadByteSequence, fmt.Sprintf("invalid byte sequence for type %s: 0x00", t)}
}

func unknownTypeError(t KeyType) *ValueError {
	return &ValueError{t, CodeTypeMismatch, fmt.Sprintf("unknown key type %q", string(t))}
}

// Limits of Postgres' date and timestamp types, in the normalised units.
const (
	// dateMin and dateEnd bound valid dates in days since 2000-01-01:
	// Julian day 0 (4714-11-24 BC) to Julian day 2147483494 (exclusive).
	dateMin = -2451545
	dateEnd = 2147483494 - 2451545
	// tsMin and tsEnd bound valid timestamps in microseconds since
	// 2000-01-01 00:00:00 (Postgres' MIN_TIMESTAMP and END_TIMESTAMP).
	tsMin = -211813488000000000
	tsEnd = 9223371331200000000

	dateInfinity    = math.MaxInt32
	dateNegInfinity = math.MinInt32
	tsInfinity      = math.MaxInt64
	tsNegInfinity   = math.MinInt64

	usecPerSec = 1000000
	usecPerDay = 86400 * usecPerSec
	// unixToPG is the number of days from 1970-01-01 to 2000-01-01.
	unixToPG = 10957
)

// NormalizeText returns the normalised bytes of a value given in its text
// form (as a text bind parameter or the content of a SQL literal carries it).
// Timestamptz values without an offset are taken as UTC.
func NormalizeText(t KeyType, v string) ([]byte, error) {
	return AppendText(nil, t, v, nil)
}

// NormalizeBinary returns the normalised bytes of a binary-format bind
// parameter of type oid (0 when the client left it unspecified).
func NormalizeBinary(t KeyType, oid uint32, v []byte) ([]byte, error) {
	return AppendBinary(nil, t, oid, v)
}

// AppendText appends the normalised bytes of the text form v of a value of
// type t to dst. loc is the session time zone for timestamptz values that
// carry no offset; nil means UTC. The encoding, byte for byte:
//
//   - bigint, integer: 8 bytes, big-endian two's complement int64. Text is
//     Postgres 15's integer input: optional surrounding whitespace, an
//     optional sign, decimal digits. integer values must fit in 32 bits.
//   - text: the bytes of v unchanged (no trimming, no case folding); a NUL
//     byte is an error, as in Postgres.
//   - uuid: the 16 bytes. Text is Postgres' uuid input: 32 hex digits of
//     either case, optionally in braces, optionally with a hyphen after any
//     group of four digits.
//   - date: 4 bytes, big-endian int32 days since 2000-01-01 (Postgres'
//     binary date); infinity and -infinity are the int32 maximum and minimum.
//   - timestamp, timestamptz: 8 bytes, big-endian int64 microseconds since
//     2000-01-01 00:00:00 (UTC for timestamptz); infinity and -infinity are
//     the int64 maximum and minimum. Text is ISO 8601 (see docs/sharding.md);
//     a timestamptz offset is applied, a timestamp ignores any offset.
func AppendText(dst []byte, t KeyType, v string, loc *time.Location) ([]byte, error) {
	switch t {
	case Bigint, Integer:
		n, err := parseInt(t, v)
		if err != nil {
			return dst, err
		}
		return binary.BigEndian.AppendUint64(dst, uint64(n)), nil
	case Text:
		if strings.IndexByte(v, 0) >= 0 {
			return dst, nulError(t)
		}
		return append(dst, v...), nil
	case UUID:
		return appendUUIDText(dst, v)
	case Date, Timestamp, Timestamptz:
		return appendDateTimeText(dst, t, v, loc)
	}
	return dst, unknownTypeError(t)
}

// AppendBinary appends the normalised bytes of a binary-format bind parameter
// of type oid to dst (see AppendText for the encoding). oid 0 means the
// client did not specify the type, so Postgres takes the key column's type:
// integers are then told apart by length (2, 4 or 8 bytes). Text-like types
// (text, varchar, bpchar, name, unknown) carry the text form, which is parsed
// as AppendText would (timestamptz without offset as UTC).
func AppendBinary(dst []byte, t KeyType, oid uint32, v []byte) ([]byte, error) {
	if textOID(oid) {
		if t == Text {
			return appendTextBytes(dst, v)
		}
		return AppendText(dst, t, string(v), nil)
	}
	switch t {
	case Bigint, Integer:
		var n int64
		switch {
		case len(v) == 8 && (oid == OIDInt8 || oid == OIDUnspecified):
			n = int64(binary.BigEndian.Uint64(v))
		case len(v) == 4 && (oid == OIDInt4 || oid == OIDUnspecified):
			n = int64(int32(binary.BigEndian.Uint32(v)))
		case len(v) == 2 && (oid == OIDInt2 || oid == OIDUnspecified):
			n = int64(int16(binary.BigEndian.Uint16(v)))
		case oid == OIDInt8 || oid == OIDInt4 || oid == OIDInt2 || oid == OIDUnspecified:
			return dst, binaryLenError(t, oid, len(v))
		default:
			return dst, mismatchError(t, oid)
		}
		if t == Integer && (n < math.MinInt32 || n > math.MaxInt32) {
			return dst, rangeError(t, strconv.FormatInt(n, 10))
		}
		return binary.BigEndian.AppendUint64(dst, uint64(n)), nil
	case Text:
		if oid != OIDUnspecified {
			return dst, mismatchError(t, oid)
		}
		return appendTextBytes(dst, v)
	case UUID:
		if oid != OIDUUID && oid != OIDUnspecified {
			return dst, mismatchError(t, oid)
		}
		if len(v) != 16 {
			return dst, binaryLenError(t, oid, len(v))
		}
		return append(dst, v...), nil
	case Date:
		if oid != OIDDate && oid != OIDUnspecified {
			return dst, mismatchError(t, oid)
		}
		if len(v) != 4 {
			return dst, binaryLenError(t, oid, len(v))
		}
		d := int64(int32(binary.BigEndian.Uint32(v)))
		if d != dateInfinity && d != dateNegInfinity && (d < dateMin || d >= dateEnd) {
			return dst, rangeError(t, strconv.FormatInt(d, 10)+" days after 2000-01-01")
		}
		return append(dst, v...), nil
	case Timestamp, Timestamptz:
		want := OIDTimestamp
		if t == Timestamptz {
			want = OIDTimestamptz
		}
		if oid != want && oid != OIDUnspecified {
			return dst, mismatchError(t, oid)
		}
		if len(v) != 8 {
			return dst, binaryLenError(t, oid, len(v))
		}
		us := int64(binary.BigEndian.Uint64(v))
		if us != tsInfinity && us != tsNegInfinity && (us < tsMin || us >= tsEnd) {
			return dst, rangeError(t, strconv.FormatInt(us, 10)+" microseconds after 2000-01-01")
		}
		return append(dst, v...), nil
	}
	return dst, unknownTypeError(t)
}

func appendTextBytes(dst, v []byte) ([]byte, error) {
	for _, c := range v {
		if c == 0 {
			return dst, nulError(Text)
		}
	}
	return append(dst, v...), nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// parseInt is Postgres 15's pg_strtoint64/pg_strtoint32 without allocation.
func parseInt(t KeyType, v string) (int64, error) {
	i, j := 0, len(v)
	for i < j && isSpace(v[i]) {
		i++
	}
	for j > i && isSpace(v[j-1]) {
		j--
	}
	neg := false
	if i < j && (v[i] == '-' || v[i] == '+') {
		neg = v[i] == '-'
		i++
	}
	if i == j {
		return 0, syntaxError(t, v)
	}
	// Accumulate as a negative number so the minimum value fits.
	limit := int64(math.MinInt64)
	if t == Integer {
		limit = math.MinInt32
	}
	var n int64
	for ; i < j; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, syntaxError(t, v)
		}
		d := int64(c - '0')
		if n < limit/10 || n*10 < limit+d {
			// Keep scanning for a syntax error, which Postgres reports first.
			for i++; i < j; i++ {
				if v[i] < '0' || v[i] > '9' {
					return 0, syntaxError(t, v)
				}
			}
			return 0, rangeError(t, v)
		}
		n = n*10 - d
	}
	if !neg {
		if n == limit {
			return 0, rangeError(t, v)
		}
		n = -n
	}
	return n, nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendUUIDText is Postgres' string_to_uuid.
func appendUUIDText(dst []byte, v string) ([]byte, error) {
	s := v
	braces := len(s) > 0 && s[0] == '{'
	if braces {
		s = s[1:]
	}
	var u [16]byte
	for i := 0; i < 16; i++ {
		if len(s) < 2 {
			return dst, syntaxError(UUID, v)
		}
		hi, ok1 := hexVal(s[0])
		lo, ok2 := hexVal(s[1])
		if !ok1 || !ok2 {
			return dst, syntaxError(UUID, v)
		}
		u[i] = hi<<4 | lo
		s = s[2:]
		if len(s) > 0 && s[0] == '-' && i%2 == 1 && i < 15 {
			s = s[1:]
		}
	}
	if braces {
		if len(s) == 0 || s[0] != '}' {
			return dst, syntaxError(UUID, v)
		}
		s = s[1:]
	}
	if len(s) != 0 {
		return dst, syntaxError(UUID, v)
	}
	return append(dst, u[:]...), nil
}

// UnquoteLiteral returns the value of a SQL constant as the text form that
// AppendText takes: a standard string constant '…' (a quote inside doubled) is
// unquoted; anything else (a numeric constant) is returned unchanged, so
// 42 and '42' give the same text. Escape (E'…') and dollar-quoted
// constants are not supported.
func UnquoteLiteral(lit string) (string, error) {
	if lit == "" || lit[0] != '\'' {
		if len(lit) > 1 && (lit[0] == 'E' || lit[0] == 'e') && lit[1] == '\'' {
			return "", fmt.Errorf("escape string constant %s: not supported as a shard key literal", quoteValue(lit))
		}
		return lit, nil
	}
	if len(lit) < 2 || lit[len(lit)-1] != '\'' {
		return "", fmt.Errorf("unterminated string constant %s", quoteValue(lit))
	}
	body := lit[1 : len(lit)-1]
	if !strings.Contains(body, "'") {
		return body, nil
	}
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		if body[i] == '\'' {
			if i+1 >= len(body) || body[i+1] != '\'' {
				return "", fmt.Errorf("malformed string constant %s: a lone quote inside", quoteValue(lit))
			}
			i++
		}
		b.WriteByte(body[i])
	}
	return b.String(), nil
}

// FormatValue returns a text form of normalised bytes that AppendText reads
// back to the same bytes: decimal integers, the text itself, hyphenated
// lower-case uuids, ISO dates and timestamps (timestamptz in UTC, "+00").
func FormatValue(t KeyType, norm []byte) (string, error) {
	bad := func() (string, error) {
		return "", &ValueError{t, CodeBinaryFormat, fmt.Sprintf("normalised %s value of %d bytes is malformed", t, len(norm))}
	}
	switch t {
	case Bigint, Integer:
		if len(norm) != 8 {
			return bad()
		}
		return strconv.FormatInt(int64(binary.BigEndian.Uint64(norm)), 10), nil
	case Text:
		return string(norm), nil
	case UUID:
		if len(norm) != 16 {
			return bad()
		}
		const hexd = "0123456789abcdef"
		var b [36]byte
		j := 0
		for i, c := range norm {
			if i == 4 || i == 6 || i == 8 || i == 10 {
				b[j] = '-'
				j++
			}
			b[j], b[j+1] = hexd[c>>4], hexd[c&15]
			j += 2
		}
		return string(b[:]), nil
	case Date:
		if len(norm) != 4 {
			return bad()
		}
		return formatDate(int64(int32(binary.BigEndian.Uint32(norm)))), nil
	case Timestamp, Timestamptz:
		if len(norm) != 8 {
			return bad()
		}
		return formatTimestamp(int64(binary.BigEndian.Uint64(norm)), t == Timestamptz), nil
	}
	return "", unknownTypeError(t)
}
