package gather

import (
	"encoding/binary"
	"errors"
	"math/big"
	"slices"
	"strconv"
)

// decimal is a numeric value: coef / 10^scale when finite. dscale is
// Postgres's display scale (digits after the point in the text form); the
// merge keeps scale >= dscale, and scale == dscale for every value a server
// sends.
type decimal struct {
	special int8 // 0 finite, or decNaN, decPInf, decNInf
	coef    big.Int
	scale   int32
	dscale  int32
}

const (
	decNaN int8 = iota + 1
	decPInf
	decNInf
)

// Binary NUMERIC header signs (numeric.c).
const (
	numericPos  = 0x0000
	numericNeg  = 0x4000
	numericNaN  = 0xC000
	numericPInf = 0xD000
	numericNInf = 0xF000
	// numericMaxDscale is NUMERIC_DSCALE_MASK: the largest display scale.
	numericMaxDscale = 0x3FFF
	// maxDecimalDigits bounds the length of a value read from text: the
	// 131072 digits before the point and 16383 after it that Postgres
	// allows, a sign and a point, so that garbage cannot make the merge
	// build larger numbers.
	maxDecimalDigits = 131072 + 16383 + 2
)

var bigTen = big.NewInt(10)

// pow10 returns 10^n (n >= 0); the result must not be modified.
func pow10(n int32) *big.Int {
	if int(n) < len(pow10Cache) {
		return pow10Cache[n]
	}
	return new(big.Int).Exp(bigTen, big.NewInt(int64(n)), nil)
}

var pow10Cache = func() []*big.Int {
	c := make([]*big.Int, 64)
	c[0] = big.NewInt(1)
	for i := 1; i < len(c); i++ {
		c[i] = new(big.Int).Mul(c[i-1], bigTen)
	}
	return c
}()

func newDecimalInt(v int64) *decimal {
	d := &decimal{}
	d.coef.SetInt64(v)
	return d
}

// parseDecimal parses numeric text: what numeric_out writes (an optional
// minus, digits, an optional fraction; NaN, Infinity, -Infinity) and, when
// lenient (HAVING constants), also a plus sign, surrounding spaces, an
// exponent and the spellings numeric_in accepts for the special values.
func parseDecimal(b []byte, lenient bool) (*decimal, error) {
	s := string(b)
	if lenient {
		s = trimSpace(s)
		switch lower(s) {
		case "nan":
			return &decimal{special: decNaN}, nil
		case "infinity", "+infinity", "inf", "+inf":
			return &decimal{special: decPInf}, nil
		case "-infinity", "-inf":
			return &decimal{special: decNInf}, nil
		}
	} else {
		switch s {
		case "NaN":
			return &decimal{special: decNaN}, nil
		case "Infinity":
			return &decimal{special: decPInf}, nil
		case "-Infinity":
			return &decimal{special: decNInf}, nil
		}
	}
	if len(s) > maxDecimalDigits {
		return nil, errors.New("too many digits")
	}
	i := 0
	neg := false
	if i < len(s) && (s[i] == '-' || (lenient && s[i] == '+')) {
		neg = s[i] == '-'
		i++
	}
	digits := make([]byte, 0, len(s))
	var scale int64
	seenDigit, seenPoint := false, false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
			seenDigit = true
			if seenPoint {
				scale++
			}
		case c == '.' && !seenPoint:
			seenPoint = true
		default:
			goto rest
		}
	}
rest:
	if !seenDigit {
		return nil, errors.New("no digits")
	}
	if i < len(s) {
		if !lenient || (s[i] != 'e' && s[i] != 'E') {
			return nil, errors.New("unexpected character")
		}
		exp, err := strconv.ParseInt(s[i+1:], 10, 32)
		if err != nil || exp > 1000 || exp < -1000 {
			return nil, errors.New("bad exponent")
		}
		scale -= exp
	}
	d := &decimal{}
	if _, ok := d.coef.SetString(string(digits), 10); !ok {
		return nil, errors.New("bad digits")
	}
	if scale < 0 {
		d.coef.Mul(&d.coef, pow10(int32(-scale)))
		scale = 0
	}
	if neg {
		d.coef.Neg(&d.coef)
	}
	d.scale, d.dscale = int32(scale), int32(scale)
	return d, nil
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == '\n' || s[0] == '\r') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t' || s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// decodeNumericBinary decodes numeric_send's form: int16 ndigits, int16
// weight, uint16 sign, int16 dscale, then ndigits base-10000 digits, the
// first of which is worth 10000^weight.
func decodeNumericBinary(b []byte) (*decimal, error) {
	if len(b) < 8 {
		return nil, errors.New("short binary numeric")
	}
	ndigits := int(int16(binary.BigEndian.Uint16(b)))
	weight := int32(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	dscale := int32(int16(binary.BigEndian.Uint16(b[6:])))
	if ndigits < 0 || len(b) != 8+2*ndigits {
		return nil, errors.New("binary numeric length does not match its digit count")
	}
	if dscale < 0 || dscale > numericMaxDscale {
		return nil, errors.New("binary numeric display scale out of range")
	}
	d := &decimal{}
	switch sign {
	case numericPos, numericNeg:
	case numericNaN:
		d.special = decNaN
		return d, nil
	case numericPInf:
		d.special = decPInf
		return d, nil
	case numericNInf:
		d.special = decNInf
		return d, nil
	default:
		return nil, errors.New("binary numeric sign invalid")
	}
	// Gather the digits in a word-sized accumulator before going to
	// big.Int: most values have few digits.
	var acc uint64
	var n int
	for i := 0; i < ndigits; i++ {
		dig := binary.BigEndian.Uint16(b[8+2*i:])
		if dig > 9999 {
			return nil, errors.New("binary numeric digit out of range")
		}
		acc = acc*10000 + uint64(dig)
		n++
		if n == 4 { // 10^16 < 2^64
			d.coef.Mul(&d.coef, pow10(16))
			d.coef.Add(&d.coef, new(big.Int).SetUint64(acc))
			acc, n = 0, 0
		}
	}
	if n > 0 {
		d.coef.Mul(&d.coef, pow10(int32(4*n)))
		d.coef.Add(&d.coef, new(big.Int).SetUint64(acc))
	}
	// The value is coef * 10000^(weight-ndigits+1).
	exp := 4 * (weight - int32(ndigits) + 1)
	if exp >= 0 {
		d.coef.Mul(&d.coef, pow10(exp))
		d.scale = 0
	} else {
		d.scale = -exp
	}
	d.dscale = dscale
	d.setScale(dscale)
	if sign == numericNeg {
		d.coef.Neg(&d.coef)
	}
	return d, nil
}

// setScale makes the scale s where that keeps the value exact, and at
// least s otherwise.
func (d *decimal) setScale(s int32) {
	switch {
	case d.scale < s:
		d.coef.Mul(&d.coef, pow10(s-d.scale))
		d.scale = s
	case d.scale > s:
		q, r := new(big.Int).QuoRem(&d.coef, pow10(d.scale-s), new(big.Int))
		if r.Sign() == 0 {
			d.coef.Set(q)
			d.scale = s
		}
	}
}

// rank orders the kinds of numeric: -Infinity, finite, Infinity, NaN.
func (d *decimal) rank() int {
	switch d.special {
	case decNInf:
		return -1
	case decPInf:
		return 1
	case decNaN:
		return 2
	}
	return 0
}

// cmp compares like numeric_cmp: NaN equals NaN and is above everything.
func (d *decimal) cmp(e *decimal) int {
	if r, s := d.rank(), e.rank(); r != 0 || s != 0 {
		return cmpInt(int64(r), int64(s))
	}
	if d.scale == e.scale {
		return d.coef.Cmp(&e.coef)
	}
	if a, b := d.coef.Sign(), e.coef.Sign(); a != b {
		return cmpInt(int64(a), int64(b))
	}
	if d.scale < e.scale {
		x := new(big.Int).Mul(&d.coef, pow10(e.scale-d.scale))
		return x.Cmp(&e.coef)
	}
	x := new(big.Int).Mul(&e.coef, pow10(d.scale-e.scale))
	return d.coef.Cmp(x)
}

// add returns d + e as numeric_add does: the display scale is the larger
// one; NaN absorbs everything and Infinity plus -Infinity is NaN.
func (d *decimal) add(e *decimal) *decimal {
	r := &decimal{}
	switch {
	case d.special == decNaN || e.special == decNaN:
		r.special = decNaN
	case d.special != 0 && e.special != 0 && d.special != e.special:
		r.special = decNaN
	case d.special != 0:
		r.special = d.special
	case e.special != 0:
		r.special = e.special
	default:
		s := max(d.scale, e.scale)
		r.coef.Mul(&d.coef, pow10(s-d.scale))
		if e.scale == s {
			r.coef.Add(&r.coef, &e.coef)
		} else {
			r.coef.Add(&r.coef, new(big.Int).Mul(&e.coef, pow10(s-e.scale)))
		}
		r.scale = s
		r.dscale = max(d.dscale, e.dscale)
	}
	return r
}

// weightFirst returns what select_div_scale uses of a value: the weight of
// its first non-zero base-10000 digit and that digit (0, 0 for zero).
func (d *decimal) weightFirst() (weight int32, first int) {
	if d.coef.Sign() == 0 {
		return 0, 0
	}
	s := new(big.Int).Abs(&d.coef).Text(10)
	e := int32(len(s)) - 1 - d.scale // decimal exponent of the first digit
	weight = floorDiv4(e)
	k := int(e-4*weight) + 1 // decimal digits of that base-10000 digit
	for i := 0; i < k; i++ {
		first *= 10
		if i < len(s) {
			first += int(s[i] - '0')
		}
	}
	return weight, first
}

func floorDiv4(e int32) int32 {
	if e >= 0 {
		return e / 4
	}
	return -((-e + 3) / 4)
}

// Bounds of numeric division's result scale (numeric.h).
const (
	numericMinSigDigits    = 16
	numericMaxDisplayScale = 1000
)

// avg returns d / n (n > 0) as numeric_div does when numeric_avg, int8_avg
// and numeric_poly_avg finish: the result scale is select_div_scale's (at
// least 16 significant digits, at least the sum's display scale) and the
// quotient is rounded half away from zero at that scale.
func (d *decimal) avg(n int64) *decimal {
	if d.special != 0 {
		return &decimal{special: d.special}
	}
	w1, f1 := d.weightFirst()
	w2, f2 := newDecimalInt(n).weightFirst()
	qweight := w1 - w2
	if f1 <= f2 {
		qweight--
	}
	rscale := numericMinSigDigits - qweight*4
	rscale = max(rscale, d.dscale, 0)
	rscale = min(rscale, numericMaxDisplayScale)

	num := new(big.Int).Set(&d.coef)
	den := big.NewInt(n)
	if rscale >= d.scale {
		num.Mul(num, pow10(rscale-d.scale))
	} else {
		den.Mul(den, pow10(d.scale-rscale))
	}
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	// Round half away from zero: |r| >= den/2.
	r.Abs(r)
	r.Lsh(r, 1)
	if r.Cmp(den) >= 0 {
		if num.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	res := &decimal{scale: rscale, dscale: rscale}
	res.coef.Set(q)
	return res
}

// appendKey appends a form equal for equal values whatever their scale.
func (d *decimal) appendKey(dst []byte) []byte {
	if d.special != 0 {
		return append(dst, 'S', byte(d.special))
	}
	if d.coef.Sign() == 0 {
		return append(dst, 'Z')
	}
	s := d.coef.Text(10)
	scale := int64(d.scale)
	for len(s) > 1 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
		scale--
	}
	dst = append(dst, 'D')
	dst = binary.BigEndian.AppendUint64(dst, uint64(scale))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// appendText writes d as numeric_out does: all scale digits after the
// point, no exponent.
func (d *decimal) appendText(dst []byte) []byte {
	switch d.special {
	case decNaN:
		return append(dst, "NaN"...)
	case decPInf:
		return append(dst, "Infinity"...)
	case decNInf:
		return append(dst, "-Infinity"...)
	}
	neg, digits := d.digits()
	return appendDigitsText(dst, neg, digits, int(d.scale))
}

// digits returns the sign and decimal digits of the coefficient.
func (d *decimal) digits() (neg bool, digits []byte) {
	digits = new(big.Int).Abs(&d.coef).Append(nil, 10)
	return d.coef.Sign() < 0, digits
}

// appendDigitsText writes the numeric whose absolute value is the decimal
// digits s with the last scale of them after the point.
func appendDigitsText(dst []byte, neg bool, s []byte, scale int) []byte {
	if neg {
		dst = append(dst, '-')
	}
	if len(s) <= scale {
		dst = append(dst, '0')
	} else {
		dst = append(dst, s[:len(s)-scale]...)
	}
	if scale > 0 {
		dst = append(dst, '.')
		for i := len(s); i < scale; i++ {
			dst = append(dst, '0')
		}
		dst = append(dst, s[max(len(s)-scale, 0):]...)
	}
	return dst
}

func appendNumericHeader(dst []byte, ndigits int, weight int, sign uint16, dscale int32) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(ndigits))
	dst = binary.BigEndian.AppendUint16(dst, uint16(int16(weight)))
	dst = binary.BigEndian.AppendUint16(dst, sign)
	return binary.BigEndian.AppendUint16(dst, uint16(dscale))
}

// appendBinary writes d as numeric_send does.
func (d *decimal) appendBinary(dst []byte) ([]byte, error) {
	switch d.special {
	case decNaN:
		return appendNumericHeader(dst, 0, 0, numericNaN, 0), nil
	case decPInf:
		return appendNumericHeader(dst, 0, 0, numericPInf, 0), nil
	case decNInf:
		return appendNumericHeader(dst, 0, 0, numericNInf, 0), nil
	}
	neg, digits := d.digits()
	return appendDigitsBinary(dst, neg, digits, int(d.scale), d.dscale)
}

// appendDigitsBinary is appendDigitsText's binary form, with display
// scale dscale: base-10000 digits, stripped of leading and trailing zeros
// as make_result leaves them.
func appendDigitsBinary(dst []byte, neg bool, s []byte, scale int, dscale int32) ([]byte, error) {
	for len(s) > 0 && s[0] == '0' {
		s = s[1:]
	}
	for len(s) > 0 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
		scale--
	}
	if dscale > numericMaxDscale {
		return dst, errNumericRange
	}
	if len(s) == 0 {
		return appendNumericHeader(dst, 0, 0, numericPos, dscale), nil
	}
	sign := uint16(numericPos)
	if neg {
		sign = numericNeg
	}
	top := len(s) - scale - 1 // decimal exponent of the first digit
	wTop, wLow := floorDiv(top, 4), floorDiv(-scale, 4)
	if wTop > 0x7FFF || wLow < -0x8000 || wTop-wLow+1 > 0x7FFF {
		return dst, errNumericRange
	}
	dst = appendNumericHeader(dst, wTop-wLow+1, wTop, sign, dscale)
	for w := wTop; w >= wLow; w-- {
		v := 0
		for e := 4*w + 3; e >= 4*w; e-- {
			v *= 10
			if j := top - e; j >= 0 && j < len(s) {
				v += int(s[j] - '0')
			}
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(v))
	}
	return dst, nil
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// avgInt64 is newDecimalInt(sum).avg(n) without big numbers, for counts
// below maxFastCount: it returns the sign and the digits of the result,
// whose last scale digits follow the point.
func avgInt64(sum, n int64, buf []byte) (neg bool, digits []byte, scale int) {
	u := uint64(sum)
	if sum < 0 {
		neg, u = true, -u // -MinInt64 is right as a uint64
	}
	w1, f1 := weightFirstUint(u)
	w2, f2 := weightFirstUint(uint64(n))
	qweight := w1 - w2
	if f1 <= f2 {
		qweight--
	}
	scale = min(max(numericMinSigDigits-4*qweight, 0), numericMaxDisplayScale)
	un := uint64(n)
	digits = strconv.AppendUint(buf[:0], u/un, 10)
	rem := u % un
	for i := 0; i < scale; i++ {
		rem *= 10 // rem < n < maxFastCount: no overflow
		digits = append(digits, byte('0'+rem/un))
		rem %= un
	}
	if rem*10/un >= 5 { // round half away from zero
		i := len(digits) - 1
		for ; i >= 0 && digits[i] == '9'; i-- {
			digits[i] = '0'
		}
		if i >= 0 {
			digits[i]++
		} else {
			digits = append([]byte{'1'}, digits...)
		}
	}
	if !slices.ContainsFunc(digits, func(c byte) bool { return c != '0' }) {
		neg = false // numeric has no negative zero
	}
	return neg, digits, scale
}

// maxFastCount bounds the counts avgInt64 handles: ten times one fits in a
// uint64.
const maxFastCount = 1 << 59

// weightFirstUint is weightFirst for an integer.
func weightFirstUint(u uint64) (weight, first int) {
	for u >= 10000 {
		u /= 10000
		weight++
	}
	return weight, int(u)
}
