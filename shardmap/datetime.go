package shardmap

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// dtFields is a parsed ISO 8601 date or timestamp.
type dtFields struct {
	special int // +1 infinity, -1 -infinity, 0 a finite value
	// year is astronomical: 1 BC is year 0.
	year, month, day int64
	// usec is the time of day in microseconds; 24:00:00 and a leap second
	// (:60) are accepted, as Postgres accepts them.
	usec    int64
	hasZone bool
	zone    int64 // seconds east of UTC
}

func fieldRangeError(t KeyType, v string) *ValueError {
	return &ValueError{t, CodeDatetimeRange, fmt.Sprintf("date/time field value out of range: %s", quoteValue(v))}
}

// digits reads between min and max decimal digits of s from i.
func digits(s string, i, min, max int) (int64, int, bool) {
	var n int64
	j := i
	for j < len(s) && j-i < max && s[j] >= '0' && s[j] <= '9' {
		n = n*10 + int64(s[j]-'0')
		j++
	}
	if j-i < min {
		return 0, i, false
	}
	return n, j, true
}

// word reports whether s[i:] starts with w (ASCII case-insensitive) followed
// by the end or a space.
func word(s string, i int, w string) bool {
	if len(s)-i < len(w) || !strings.EqualFold(s[i:i+len(w)], w) {
		return false
	}
	return i+len(w) == len(s) || isSpace(s[i+len(w)])
}

// parseDateTime reads the ISO 8601 forms Postgres accepts for date,
// timestamp and timestamptz input in any DateStyle:
//
//	YYYY-MM-DD[(T| )HH:MM[:SS[.F…]]][ ][zone][ BC|AD]
//
// with a year of 4 to 7 digits, zone Z, UTC, GMT or ±HH[[:]MM[[:]SS]], and
// the special words infinity, +infinity, -infinity and epoch. Words that
// depend on the clock (now, today, …) are refused: a key must not change
// its shard with time.
func parseDateTime(t KeyType, v string) (dtFields, error) {
	var f dtFields
	i, j := 0, len(v)
	for i < j && isSpace(v[i]) {
		i++
	}
	for j > i && isSpace(v[j-1]) {
		j--
	}
	s := v[i:j]
	switch {
	case strings.EqualFold(s, "infinity") || strings.EqualFold(s, "+infinity"):
		f.special = 1
		return f, nil
	case strings.EqualFold(s, "-infinity"):
		f.special = -1
		return f, nil
	case strings.EqualFold(s, "epoch"):
		f.year, f.month, f.day, f.hasZone = 1970, 1, 1, true
		return f, nil
	}
	for _, w := range []string{"now", "today", "tomorrow", "yesterday"} {
		if strings.EqualFold(s, w) {
			return f, &ValueError{t, CodeDatetimeFormat, fmt.Sprintf("%s cannot be a shard key: it depends on the current time", quoteValue(v))}
		}
	}
	var ok bool
	i = 0
	if f.year, i, ok = digits(s, i, 4, 7); !ok || i >= len(s) || s[i] != '-' {
		return f, syntaxError(t, v)
	}
	if f.month, i, ok = digits(s, i+1, 1, 2); !ok || i >= len(s) || s[i] != '-' {
		return f, syntaxError(t, v)
	}
	if f.day, i, ok = digits(s, i+1, 1, 2); !ok {
		return f, syntaxError(t, v)
	}
	var hour, min, sec, fsec int64
	if i < len(s) && (s[i] == 'T' || s[i] == 't' || isSpace(s[i])) {
		k := i + 1
		for s[i] != 'T' && s[i] != 't' && k < len(s) && isSpace(s[k]) {
			k++
		}
		if k < len(s) && s[k] >= '0' && s[k] <= '9' {
			i = k
			if hour, i, ok = digits(s, i, 1, 2); !ok || i >= len(s) || s[i] != ':' {
				return f, syntaxError(t, v)
			}
			if min, i, ok = digits(s, i+1, 2, 2); !ok {
				return f, syntaxError(t, v)
			}
			if i < len(s) && s[i] == ':' {
				if sec, i, ok = digits(s, i+1, 2, 2); !ok {
					return f, syntaxError(t, v)
				}
				if i < len(s) && s[i] == '.' {
					k := i + 1
					for k < len(s) && s[k] >= '0' && s[k] <= '9' {
						k++
					}
					if k == i+1 {
						return f, syntaxError(t, v)
					}
					// Postgres: fsec = rint(strtod(".ddd") * 1e6).
					frac, err := strconv.ParseFloat(s[i:k], 64)
					if err != nil {
						return f, syntaxError(t, v)
					}
					fsec = int64(math.RoundToEven(frac * usecPerSec))
					i = k
				}
			}
		} else if s[i] == 'T' || s[i] == 't' {
			return f, syntaxError(t, v)
		}
	}
	era := false
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			break
		}
		switch {
		case !era && (word(s, i, "BC") || word(s, i, "AD")):
			era = true
			if s[i] == 'B' || s[i] == 'b' {
				if f.year == 0 {
					return f, fieldRangeError(t, v)
				}
				f.year = 1 - f.year
			}
			i += 2
		case !f.hasZone && (word(s, i, "Z") || word(s, i, "UTC") || word(s, i, "GMT")):
			f.hasZone = true
			if s[i] == 'Z' || s[i] == 'z' {
				i++
			} else {
				i += 3
			}
		case !f.hasZone && (s[i] == '+' || s[i] == '-'):
			z, k, err := parseZone(t, v, s, i)
			if err != nil {
				return f, err
			}
			f.hasZone, f.zone, i = true, z, k
		default:
			return f, syntaxError(t, v)
		}
	}
	if f.year == 0 && !era {
		return f, fieldRangeError(t, v)
	}
	if f.month < 1 || f.month > 12 || f.day < 1 || f.day > daysIn(f.year, f.month) ||
		hour > 24 || min > 59 || sec > 60 || fsec > usecPerSec ||
		(hour == 24 && (min > 0 || sec > 0 || fsec > 0)) {
		return f, fieldRangeError(t, v)
	}
	f.usec = ((hour*60+min)*60+sec)*usecPerSec + fsec
	return f, nil
}

// parseZone reads ±HH[[:]MM[[:]SS]] at s[i].
func parseZone(t KeyType, v, s string, i int) (int64, int, error) {
	sign := int64(1)
	if s[i] == '-' {
		sign = -1
	}
	h, k, ok := digits(s, i+1, 1, 2)
	if !ok {
		return 0, i, syntaxError(t, v)
	}
	var m, sec int64
	colon := k < len(s) && s[k] == ':'
	if colon {
		k++
	}
	if colon || (k < len(s) && s[k] >= '0' && s[k] <= '9') {
		if m, k, ok = digits(s, k, 2, 2); !ok {
			return 0, i, syntaxError(t, v)
		}
		colon = k < len(s) && s[k] == ':'
		if colon {
			k++
		}
		if colon || (k < len(s) && s[k] >= '0' && s[k] <= '9') {
			if sec, k, ok = digits(s, k, 2, 2); !ok {
				return 0, i, syntaxError(t, v)
			}
		}
	}
	if k < len(s) && !isSpace(s[k]) {
		return 0, i, syntaxError(t, v)
	}
	if h > 15 || m > 59 || sec > 59 {
		return 0, i, &ValueError{t, CodeDatetimeRange, fmt.Sprintf("time zone displacement out of range: %s", quoteValue(v))}
	}
	return sign * (h*3600 + m*60 + sec), k, nil
}

func appendDateTimeText(dst []byte, t KeyType, v string, loc *time.Location) ([]byte, error) {
	f, err := parseDateTime(t, v)
	if err != nil {
		return dst, err
	}
	if t == Date {
		d := int64(dateInfinity)
		switch f.special {
		case -1:
			d = dateNegInfinity
		case 0:
			// A date ignores any time and zone, as Postgres' date_in does.
			d = daysFromCivil(f.year, f.month, f.day) - unixToPG
			if d < dateMin || d >= dateEnd {
				return dst, rangeError(t, v)
			}
		}
		return binary.BigEndian.AppendUint32(dst, uint32(int32(d))), nil
	}
	us := int64(tsInfinity)
	switch f.special {
	case -1:
		us = tsNegInfinity
	case 0:
		d := daysFromCivil(f.year, f.month, f.day) - unixToPG
		// Bound d before multiplying so the arithmetic cannot overflow.
		if d < dateMin-2 || d > tsEnd/usecPerDay+2 {
			return dst, rangeError(t, v)
		}
		us = d*usecPerDay + f.usec
		if t == Timestamptz {
			switch {
			case f.hasZone:
				us -= f.zone * usecPerSec
			case loc != nil && loc != time.UTC:
				h := f.usec / 3600 / usecPerSec
				m := f.usec / 60 / usecPerSec % 60
				sec := f.usec / usecPerSec % 60
				_, off := time.Date(int(f.year), time.Month(f.month), int(f.day), int(h), int(m), int(sec), 0, loc).Zone()
				us -= int64(off) * usecPerSec
			}
		}
		if us < tsMin || us >= tsEnd {
			return dst, rangeError(t, v)
		}
	}
	return binary.BigEndian.AppendUint64(dst, uint64(us)), nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date with an astronomical year (H. Hinnant's algorithm; Postgres' date2j
// uses the same calendar).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

func daysIn(y, m int64) int64 {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func formatYMD(b []byte, days int64) ([]byte, bool) {
	y, m, d := civilFromDays(days + unixToPG)
	bc := y <= 0
	if bc {
		y = 1 - y
	}
	b = fmt.Appendf(b, "%04d-%02d-%02d", y, m, d)
	return b, bc
}

func formatDate(d int64) string {
	switch d {
	case dateInfinity:
		return "infinity"
	case dateNegInfinity:
		return "-infinity"
	}
	b, bc := formatYMD(nil, d)
	if bc {
		b = append(b, " BC"...)
	}
	return string(b)
}

func formatTimestamp(us int64, tz bool) string {
	switch us {
	case tsInfinity:
		return "infinity"
	case tsNegInfinity:
		return "-infinity"
	}
	days := floorDiv(us, usecPerDay)
	tod := us - days*usecPerDay
	b, bc := formatYMD(nil, days)
	sec := tod / usecPerSec
	b = fmt.Appendf(b, " %02d:%02d:%02d", sec/3600, sec/60%60, sec%60)
	if frac := tod % usecPerSec; frac != 0 {
		b = append(b, strings.TrimRight(fmt.Sprintf(".%06d", frac), "0")...)
	}
	if tz {
		b = append(b, "+00"...)
	}
	if bc {
		b = append(b, " BC"...)
	}
	return string(b)
}
