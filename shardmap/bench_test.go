package shardmap

import (
	"encoding/binary"
	"strconv"
	"testing"
)

func benchTable(b testing.TB, name string) *Table {
	b.Helper()
	tb, ok := specMap(b).Table(name)
	if !ok {
		b.Fatalf("no table %s", name)
	}
	return tb
}

func BenchmarkLocateTextBigintHash(b *testing.B) {
	tb := benchTable(b, "orders")
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = strconv.Itoa(i * 7919)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := tb.LocateText(keys[i&1023]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkLocateBinaryBigintHash(b *testing.B) {
	tb := benchTable(b, "orders")
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = binary.BigEndian.AppendUint64(nil, uint64(i*7919))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := tb.LocateBinary(OIDInt8, keys[i&1023]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkLocateTextList(b *testing.B) {
	tb := benchTable(b, "stores")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tb.LocateText("us"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLocateTextDateRange(b *testing.B) {
	tb := benchTable(b, "events")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tb.LocateText("2026-03-14"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLocateAllocs keeps the hot paths allocation-free: a binary or text
// bigint key of a hashed table, and list and range lookups.
// (Not parallel: AllocsPerRun refuses to run in a parallel test.)
func TestLocateAllocs(t *testing.T) {
	m := specMap(t)
	orders, _ := m.Table("orders")
	stores, _ := m.Table("stores")
	events, _ := m.Table("events")
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], 42)
	cases := []struct {
		name string
		f    func()
	}{
		{"binary int8", func() { _, _ = orders.LocateBinary(OIDInt8, buf[:]) }},
		{"binary int4", func() { _, _ = orders.LocateBinary(OIDInt4, buf[:4]) }},
		{"text bigint", func() { _, _ = orders.LocateText("123456789") }},
		{"text list", func() { _, _ = stores.LocateText("ca") }},
		{"binary text list", func() { _, _ = stores.LocateBinary(OIDText, []byte("ca")) }},
		{"text date range", func() { _, _ = events.LocateText("2026-03-14") }},
	}
	for _, c := range cases {
		if n := testing.AllocsPerRun(200, c.f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", c.name, n)
		}
	}
}
