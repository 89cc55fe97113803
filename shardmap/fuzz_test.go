package shardmap

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/shardwire/shardwire/config"
)

// normLen is the length of every normalised value of a type (0: any).
var normLen = map[KeyType]int{Bigint: 8, Integer: 8, UUID: 16, Date: 4, Timestamp: 8, Timestamptz: 8}

// checkNormalised asserts what every successful normalisation must satisfy:
// the right length, and a text form (FormatValue) that reads back to the
// same bytes, so text and binary inputs of one value always agree.
func checkNormalised(t *testing.T, typ KeyType, norm []byte, from string) {
	t.Helper()
	if n := normLen[typ]; n != 0 && len(norm) != n {
		t.Fatalf("%s %s: %d normalised bytes, want %d", typ, from, len(norm), n)
	}
	shown, err := FormatValue(typ, norm)
	if err != nil {
		t.Fatalf("%s %s: FormatValue(%x): %v", typ, from, norm, err)
	}
	again, err := NormalizeText(typ, shown)
	if err != nil || !bytes.Equal(again, norm) {
		t.Fatalf("%s %s: normalised %x shows as %q, which reads back as %x (%v)", typ, from, norm, shown, again, err)
	}
}

func checkValueError(t *testing.T, typ KeyType, err error) {
	t.Helper()
	var ve *ValueError
	if !errors.As(err, &ve) || ve.SQLState() == "" || ve.Error() == "" {
		t.Fatalf("%s: error %v is not a ValueError with a code", typ, err)
	}
}

func FuzzNormalizeText(f *testing.F) {
	for _, s := range []string{
		"42", " -9223372036854775808 ", "+0", "9223372036854775808", "", "abc",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}", "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
		"2026-01-01", "2024-02-29", "0001-01-01 BC", "infinity", "-infinity", "epoch", "now",
		"2026-01-01 10:00:00+02", "2026-01-01T10:00:00.1234567Z", "2025-12-31 24:00:00", "2025-12-31 23:59:60.5",
		"4714-11-24 00:00:00+00 BC", "294276-12-31 23:59:59.999999", "5874897-12-31", "2026-01-01 10:00+15:59:59",
		"2026-01-01 10:00 bc ad", "2026-1-1 1:00:00 -5",
	} {
		for i := range KeyTypes {
			f.Add(uint8(i), s)
		}
	}
	f.Fuzz(func(t *testing.T, ti uint8, s string) {
		typ := KeyTypes[int(ti)%len(KeyTypes)]
		norm, err := NormalizeText(typ, s)
		if err != nil {
			checkValueError(t, typ, err)
			return
		}
		checkNormalised(t, typ, norm, "text "+quoteValue(s))
		// A text-typed bind parameter in binary format carries the same text.
		viaBinary, err := NormalizeBinary(typ, OIDText, []byte(s))
		if err != nil || !bytes.Equal(viaBinary, norm) {
			t.Fatalf("%s %q: as a binary text parameter gives %x (%v), as text %x", typ, s, viaBinary, err, norm)
		}
	})
}

func FuzzNormalizeBinary(f *testing.F) {
	seeds := [][]byte{nil, {0x2a}, be16(42), be32(42), be64(42), be64(-1), be32(0x7fffffff), be32(-0x80000000),
		be64(0x7fffffffffffffff), be64(tsEnd), be32(dateEnd - 1), bytes.Repeat([]byte{0xab}, 16), []byte("42"), []byte("a\x00")}
	oids := []uint32{0, OIDInt2, OIDInt4, OIDInt8, OIDText, OIDUUID, OIDDate, OIDTimestamp, OIDTimestamptz, OIDVarchar, 9999}
	for i := range KeyTypes {
		for _, oid := range oids {
			for _, s := range seeds {
				f.Add(uint8(i), oid, s)
			}
		}
	}
	f.Fuzz(func(t *testing.T, ti uint8, oid uint32, v []byte) {
		typ := KeyTypes[int(ti)%len(KeyTypes)]
		norm, err := NormalizeBinary(typ, oid, v)
		if err != nil {
			checkValueError(t, typ, err)
			return
		}
		checkNormalised(t, typ, norm, "binary "+oidName(oid))
		// A binary integer of any width equals its decimal text.
		if (typ == Bigint || typ == Integer) && !textOID(oid) {
			text, _ := FormatValue(typ, norm)
			if want := int64FromBE(v); text != formatInt(want) {
				t.Fatalf("%s: binary %x normalises to %s, want %d", typ, v, text, want)
			}
		}
	})
}

func formatInt(n int64) string {
	b, _ := FormatValue(Bigint, be64(n))
	return b
}

// FuzzNew feeds arbitrary YAML through config.Parse and New: neither may
// panic, every error must carry the file name, and every table of a map
// that loads must answer Locate for any key without panicking.
func FuzzNew(f *testing.F) {
	spec, err := os.ReadFile("../configs/shardwire.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(spec)
	f.Add([]byte(header))
	f.Add([]byte(nShards(3, 8)))
	f.Add([]byte(header + "  t: { key: id, type: bigint, strategy: list, lists: { s0: [1, 2], s1: [2] } }\n"))
	f.Add([]byte(header + "  t: { key: d, type: date, strategy: range, ranges: [ { shard: s0, to: 2026-01-01 }, { shard: s1, from: 2025-01-01 } ] }\n"))
	f.Add([]byte(header + "  t: { key: d, type: timestamptz, strategy: range, default: s1, ranges: [ { shard: s0, from: '2026-01-01 00:00+02' } ] }\n"))
	f.Add([]byte(header + "  '\"T\"': { key: '\"K\"', type: uuid, strategy: hash }\n  x: { strategy: replicated }\n"))
	f.Add([]byte(header + "  t: { key: a.b, type: text, strategy: list, lists: { s9: [a] }, default: s8 }\nring: { vnodes: 0 }\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse("fuzz.yaml", data, lookup)
		if err != nil {
			return
		}
		m, err := New(cfg)
		if err != nil {
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("New error %v is not config.Errors", err)
			}
			for _, e := range errs {
				if e.File != "fuzz.yaml" || e.Reason == "" {
					t.Fatalf("error %q lacks its file or reason", e.Error())
				}
			}
			return
		}
		if m.Version() == "" || len(m.Shards()) == 0 || !m.HasShard(m.DefaultShard()) {
			t.Fatalf("a loaded map lacks a version, shards or default shard")
		}
		for _, tb := range m.Tables() {
			for _, key := range []string{"1", "eu", "2026-01-01", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", ""} {
				shard, err := tb.LocateText(key)
				if err == nil && !m.HasShard(shard) {
					t.Fatalf("table %s key %q: shard %q is not in the map", tb.Name(), key, shard)
				}
			}
			_, _ = tb.LocateBinary(0, be64(1))
		}
		_ = Compare(m, m).String()
	})
}
