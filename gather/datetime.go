package gather

import "math"

// Dates and timestamps in text format are read as DateStyle ISO writes them
// (the server default, and what drivers set): 2024-01-02, 2024-01-02
// 03:04:05.123456, a numeric UTC offset for timestamptz (+05:30, or
// +00:53:28 for local mean time), " BC" at the end, infinity and -infinity.
// They become the values the binary format carries, so that both formats
// compare alike: days, or microseconds, since 2000-01-01 (UTC), with the
// infinities at the ends of the range.

const (
	daysTo2000       = 10957 // 1970-01-01 to 2000-01-01
	microsPerSecond  = 1_000_000
	secondsPerDay    = 86400
	maxYearDigits    = 7 // Postgres stops at year 5874897
	dateNoBegin      = math.MinInt32
	dateNoEnd        = math.MaxInt32
	timestampNoBegin = math.MinInt64
	timestampNoEnd   = math.MaxInt64
)

// parseDate returns the days since 2000-01-01 of a date in ISO form.
func parseDate(b []byte) (int64, bool) {
	switch string(b) {
	case "infinity":
		return dateNoEnd, true
	case "-infinity":
		return dateNoBegin, true
	}
	y, mo, d, rest, ok := parseYMD(b)
	if !ok {
		return 0, false
	}
	return civilDays(y, mo, d, rest)
}

// parseTimestamp returns the microseconds since 2000-01-01 00:00 UTC of a
// timestamp (tz false) or timestamptz (tz true) in ISO form.
func parseTimestamp(b []byte, tz bool) (int64, bool) {
	switch string(b) {
	case "infinity":
		return timestampNoEnd, true
	case "-infinity":
		return timestampNoBegin, true
	}
	y, mo, d, rest, ok := parseYMD(b)
	if !ok || len(rest) < 9 || rest[0] != ' ' || rest[3] != ':' || rest[6] != ':' {
		return 0, false
	}
	h, ok1 := twoDigits(rest[1:])
	m, ok2 := twoDigits(rest[4:])
	s, ok3 := twoDigits(rest[7:])
	if !ok1 || !ok2 || !ok3 || h > 24 || m > 59 || s > 60 {
		return 0, false
	}
	rest = rest[9:]
	var frac int64
	if len(rest) > 0 && rest[0] == '.' {
		n := 0
		for n < len(rest)-1 && rest[n+1] >= '0' && rest[n+1] <= '9' {
			n++
		}
		if n == 0 || n > 6 {
			return 0, false
		}
		for i := 0; i < 6; i++ {
			frac *= 10
			if i < n {
				frac += int64(rest[i+1] - '0')
			}
		}
		rest = rest[n+1:]
	}
	var offset int64 // seconds east of UTC
	if tz {
		if len(rest) < 3 || (rest[0] != '+' && rest[0] != '-') {
			return 0, false
		}
		neg := rest[0] == '-'
		oh, ok := twoDigits(rest[1:])
		if !ok {
			return 0, false
		}
		offset = int64(oh) * 3600
		rest = rest[3:]
		for unit := int64(60); unit >= 1 && len(rest) >= 3 && rest[0] == ':'; unit /= 60 {
			v, ok := twoDigits(rest[1:])
			if !ok || v > 59 {
				return 0, false
			}
			offset += int64(v) * unit
			rest = rest[3:]
		}
		if neg {
			offset = -offset
		}
	}
	days, ok := civilDays(y, mo, d, rest) // the BC marker follows the offset
	if !ok {
		return 0, false
	}
	secs := days*secondsPerDay + int64(h)*3600 + int64(m)*60 + int64(s) - offset
	return secs*microsPerSecond + frac, true
}

// parseYMD reads YYYY-MM-DD (four to seven year digits) and returns its
// parts and what follows it.
func parseYMD(b []byte) (y, mo, d int64, rest []byte, ok bool) {
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		y = y*10 + int64(b[n]-'0')
		n++
		if n > maxYearDigits {
			return 0, 0, 0, nil, false
		}
	}
	if n < 4 || len(b) < n+6 || b[n] != '-' || b[n+3] != '-' {
		return 0, 0, 0, nil, false
	}
	m, ok1 := twoDigits(b[n+1:])
	dd, ok2 := twoDigits(b[n+4:])
	if !ok1 || !ok2 || m < 1 || m > 12 || dd < 1 || dd > 31 || y == 0 {
		return 0, 0, 0, nil, false
	}
	return y, int64(m), int64(dd), b[n+6:], true
}

// civilDays returns the days since 2000-01-01 of a date; tail is what
// follows it in the text: nothing, or " BC", which makes year y the
// astronomical year 1-y.
func civilDays(y, mo, d int64, tail []byte) (int64, bool) {
	switch string(tail) {
	case "":
	case " BC":
		y = 1 - y
	default:
		return 0, false
	}
	return daysFromCivil(y, mo, d) - daysTo2000, true
}

func twoDigits(b []byte) (int, bool) {
	if len(b) < 2 || b[0] < '0' || b[0] > '9' || b[1] < '0' || b[1] > '9' {
		return 0, false
	}
	return int(b[0]-'0')*10 + int(b[1]-'0'), true
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date with astronomical year y (1 BC is 0), by Howard Hinnant's algorithm.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}
