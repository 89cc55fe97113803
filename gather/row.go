package gather

import (
	"encoding/binary"
	"fmt"
)

// field locates one value in a DataRow body: off is where its bytes start
// (after the length), n its length, -1 for NULL.
type field struct {
	off, n int
}

func (f field) null() bool { return f.n < 0 }

// end is the offset just past the field's bytes.
func (f field) end() int { return f.off + max(f.n, 0) }

// bytesOf returns the field's bytes in row, nil for NULL.
func (f field) bytesOf(row []byte) []byte {
	if f.n < 0 {
		return nil
	}
	return row[f.off : f.off+f.n : f.off+f.n]
}

// splitRow checks a DataRow body (int16 column count, then per column an
// int32 length, -1 for NULL, and that many bytes) against the expected
// column count and records where each value lies in fs, which must have
// room for want fields.
func splitRow(body []byte, want int, fs []field) error {
	if len(body) < 2 {
		return fmt.Errorf("DataRow of %d bytes", len(body))
	}
	if n := int(int16(binary.BigEndian.Uint16(body))); n != want {
		return fmt.Errorf("DataRow has %d columns, RowDescription %d", n, want)
	}
	p := 2
	for i := 0; i < want; i++ {
		if len(body)-p < 4 {
			return fmt.Errorf("DataRow truncated in column %d", i+1)
		}
		n := int(int32(binary.BigEndian.Uint32(body[p:])))
		p += 4
		switch {
		case n == -1:
			fs[i] = field{off: p, n: -1}
		case n < 0 || n > len(body)-p:
			return fmt.Errorf("DataRow column %d has length %d with %d bytes left", i+1, n, len(body)-p)
		default:
			fs[i] = field{off: p, n: n}
			p += n
		}
	}
	if p != len(body) {
		return fmt.Errorf("DataRow has %d bytes after its last column", len(body)-p)
	}
	return nil
}

// AppendRowDescription appends a complete RowDescription message ('T',
// length, fields) describing cols.
func AppendRowDescription(dst []byte, cols []Column) []byte {
	dst = append(dst, 'T', 0, 0, 0, 0)
	at := len(dst) - 4
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(cols)))
	for _, c := range cols {
		dst = append(dst, c.Name...)
		dst = append(dst, 0)
		dst = binary.BigEndian.AppendUint32(dst, c.TableOID)
		dst = binary.BigEndian.AppendUint16(dst, c.TableAttributeNumber)
		dst = binary.BigEndian.AppendUint32(dst, c.TypeOID)
		dst = binary.BigEndian.AppendUint16(dst, uint16(c.TypeSize))
		dst = binary.BigEndian.AppendUint32(dst, uint32(c.TypeModifier))
		dst = binary.BigEndian.AppendUint16(dst, uint16(c.Format))
	}
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at))
	return dst
}

// AppendDataRow appends a complete DataRow message ('D', length, body) for
// a DataRow body such as Run emits.
func AppendDataRow(dst, body []byte) []byte {
	dst = append(dst, 'D')
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)+4))
	return append(dst, body...)
}
