package gather

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"
	"testing"
)

// The encoders here build values as a server sends them, independently of
// the package's own encoders.

// tx is a non-NULL value given as text (nil stands for NULL in rows).
func tx(s string) []byte { return append([]byte{}, s...) }

func i2b(v int16) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
func i4b(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
func i8b(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
func f4b(v float32) []byte {
	return binary.BigEndian.AppendUint32(nil, math.Float32bits(v))
}
func f8b(v float64) []byte {
	return binary.BigEndian.AppendUint64(nil, math.Float64bits(v))
}
func boolb(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

// numb encodes numeric text ("-12.340", "NaN", "Infinity") in numeric_send's
// binary form, by repeated division of the scaled integer by 10000.
func numb(s string) []byte {
	head := func(ndigits, weight int, sign uint16, dscale int) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(ndigits))
		b = binary.BigEndian.AppendUint16(b, uint16(int16(weight)))
		b = binary.BigEndian.AppendUint16(b, sign)
		return binary.BigEndian.AppendUint16(b, uint16(dscale))
	}
	switch s {
	case "NaN":
		return head(0, 0, 0xC000, 0)
	case "Infinity":
		return head(0, 0, 0xD000, 0)
	case "-Infinity":
		return head(0, 0, 0xF000, 0)
	}
	sign := uint16(0)
	if strings.HasPrefix(s, "-") {
		sign, s = 0x4000, s[1:]
	}
	ip, fp, _ := strings.Cut(s, ".")
	dscale := len(fp)
	// Scale so the point falls on a base-10000 boundary.
	pad := (4 - len(fp)%4) % 4
	n, ok := new(big.Int).SetString(ip+fp+strings.Repeat("0", pad), 10)
	if !ok {
		panic("numb: " + s)
	}
	fracGroups := (len(fp) + pad) / 4
	var digits []uint16 // least significant first
	ten4 := big.NewInt(10000)
	for n.Sign() > 0 {
		var r big.Int
		n.DivMod(n, ten4, &r)
		digits = append(digits, uint16(r.Int64()))
	}
	low := 0 // trailing zero digits dropped
	for low < len(digits) && digits[low] == 0 {
		low++
	}
	digits = digits[low:]
	if len(digits) == 0 {
		return head(0, 0, 0, dscale)
	}
	weight := len(digits) - 1 + low - fracGroups
	b := head(len(digits), weight, sign, dscale)
	for i := len(digits) - 1; i >= 0; i-- {
		b = binary.BigEndian.AppendUint16(b, digits[i])
	}
	return b
}

// row builds a DataRow body; a nil value is NULL.
func row(vals ...[]byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		if v == nil {
			b = binary.BigEndian.AppendUint32(b, math.MaxUint32)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

// rowValues splits a DataRow body back into values; nil for NULL.
func rowValues(t testing.TB, body []byte) [][]byte {
	t.Helper()
	if len(body) < 2 {
		t.Fatalf("short row %x", body)
	}
	n := int(binary.BigEndian.Uint16(body))
	p := 2
	out := make([][]byte, n)
	for i := range out {
		l := int(int32(binary.BigEndian.Uint32(body[p:])))
		p += 4
		if l >= 0 {
			out[i] = append([]byte{}, body[p:p+l]...)
			p += l
		}
	}
	if p != len(body) {
		t.Fatalf("row %x: %d trailing bytes", body, len(body)-p)
	}
	return out
}

// textRow renders a row of text values for messages: NULL as <null>.
func textRow(t testing.TB, body []byte) string {
	var parts []string
	for _, v := range rowValues(t, body) {
		if v == nil {
			parts = append(parts, "<null>")
		} else {
			parts = append(parts, string(v))
		}
	}
	return strings.Join(parts, "|")
}

func col(name string, oid uint32, format int16) Column {
	return Column{Name: name, TypeOID: oid, Format: format, TypeSize: -1, TypeModifier: -1}
}

// rowsSource hands out its rows in a buffer it scribbles over on the next
// call, so a merge that keeps a row too long sees garbage. It can fail
// with err after failAfter rows.
type rowsSource struct {
	rows      [][]byte
	i         int
	buf       []byte
	err       error
	failAfter int
	calls     int
}

func src(rows ...[]byte) *rowsSource { return &rowsSource{rows: rows, failAfter: -1} }

func (s *rowsSource) Next() ([]byte, error) {
	s.calls++
	for i := range s.buf {
		s.buf[i] = 0xA5
	}
	if s.err != nil && s.i == s.failAfter {
		return nil, s.err
	}
	if s.i >= len(s.rows) {
		return nil, io.EOF
	}
	s.buf = append(s.buf[:0], s.rows[s.i]...)
	s.i++
	return s.buf, nil
}

func sources(groups ...[][]byte) []Source {
	out := make([]Source, len(groups))
	for i, g := range groups {
		out[i] = src(g...)
	}
	return out
}

// runAll merges and returns copies of the emitted rows.
func runAll(t testing.TB, m *Merger, srcs []Source, limit, offset int64) ([][]byte, error) {
	t.Helper()
	var out [][]byte
	n, err := m.Run(context.Background(), srcs, limit, offset, func(r []byte) error {
		out = append(out, append([]byte{}, r...))
		return nil
	})
	if err == nil && n != int64(len(out)) {
		t.Fatalf("Run returned %d, emitted %d", n, len(out))
	}
	return out, err
}

// mustMerge builds a merger or fails.
func mustMerge(t testing.TB, p Plan, cols []Column) *Merger {
	t.Helper()
	m, err := NewMerger(p, cols)
	if err != nil {
		t.Fatalf("NewMerger: %v", err)
	}
	return m
}

// textRows renders rows for comparison in test messages.
func textRows(t testing.TB, rows [][]byte) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = textRow(t, r)
	}
	return out
}

func equalRows(t testing.TB, got [][]byte, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rows %q, want %d rows %q", len(got), textRows(t, got), len(want), textRows(t, want))
	}
	for i := range got {
		if string(got[i]) != string(want[i]) {
			t.Fatalf("row %d: got %q (%x), want %q (%x)\nall got %q", i, textRow(t, got[i]), got[i], textRow(t, want[i]), want[i], textRows(t, got))
		}
	}
}

func sqlState(err error) string {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return fmt.Sprintf("no SQLSTATE in %v", err)
}
