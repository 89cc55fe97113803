package gather

import (
	"encoding/binary"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestMessages decodes what AppendRowDescription and AppendDataRow write
// with pgproto3.
func TestMessages(t *testing.T) {
	t.Parallel()
	cols := []Column{
		{Name: "id", TypeOID: oidInt8, TypeSize: 8, TypeModifier: -1, Format: 1, TableOID: 16384, TableAttributeNumber: 1},
		{Name: "avg", TypeOID: oidNumeric, TypeSize: -1, TypeModifier: -1},
		{Name: "", TypeOID: oidText, TypeSize: -1, TypeModifier: 68},
	}
	msg := AppendRowDescription([]byte("prefix"), cols)
	if string(msg[:6]) != "prefix" || msg[6] != 'T' || int(binary.BigEndian.Uint32(msg[7:])) != len(msg)-7 {
		t.Fatalf("framing of %x", msg)
	}
	var rd pgproto3.RowDescription
	if err := rd.Decode(msg[11:]); err != nil {
		t.Fatal(err)
	}
	if len(rd.Fields) != len(cols) {
		t.Fatalf("%d fields", len(rd.Fields))
	}
	for i, f := range rd.Fields {
		c := cols[i]
		if string(f.Name) != c.Name || f.TableOID != c.TableOID || f.TableAttributeNumber != c.TableAttributeNumber ||
			f.DataTypeOID != c.TypeOID || f.DataTypeSize != c.TypeSize || f.TypeModifier != c.TypeModifier || f.Format != c.Format {
			t.Errorf("field %d: %+v, want %+v", i, f, c)
		}
	}

	body := row(tx("1"), nil, []byte{})
	msg = AppendDataRow(nil, body)
	if msg[0] != 'D' || int(binary.BigEndian.Uint32(msg[1:])) != len(msg)-1 {
		t.Fatalf("framing of %x", msg)
	}
	var dr pgproto3.DataRow
	if err := dr.Decode(msg[5:]); err != nil {
		t.Fatal(err)
	}
	if len(dr.Values) != 3 || string(dr.Values[0]) != "1" || dr.Values[1] != nil || dr.Values[2] == nil || len(dr.Values[2]) != 0 {
		t.Fatalf("values %q", dr.Values)
	}
}
