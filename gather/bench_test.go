package gather

import (
	"context"
	"io"
	"strconv"
	"testing"
)

// benchSource replays prepared rows without copying, like a Source over a
// read buffer.
type benchSource struct {
	rows [][]byte
	i    int
}

func (s *benchSource) Next() ([]byte, error) {
	if s.i >= len(s.rows) {
		return nil, io.EOF
	}
	s.i++
	return s.rows[s.i-1], nil
}

// benchRun merges the prepared sources b.N times and reports ns per input
// row.
func benchRun(b *testing.B, m *Merger, data [][][]byte) {
	b.Helper()
	total := 0
	for _, d := range data {
		total += len(d)
	}
	srcs := make([]*benchSource, len(data))
	ss := make([]Source, len(data))
	for i := range srcs {
		srcs[i] = &benchSource{rows: data[i]}
		ss[i] = srcs[i]
	}
	emit := func([]byte) error { return nil }
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, s := range srcs {
			s.i = 0
		}
		if _, err := m.Run(context.Background(), ss, -1, 0, emit); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(total), "ns/row")
}

// BenchmarkMergeSorted merges 4 sources of 10,000 rows ordered by an int8
// key, with a text payload: SELECT id, name FROM t ORDER BY id.
func BenchmarkMergeSorted(b *testing.B) {
	for _, format := range []int16{1, 0} {
		b.Run([]string{"text", "binary"}[format], func(b *testing.B) {
			data := make([][][]byte, 4)
			for s := range data {
				for i := 0; i < 10000; i++ {
					k := int64(i*4 + s)
					key := i8b(k)
					if format == 0 {
						key = tx(strconv.FormatInt(k, 10))
					}
					data[s] = append(data[s], row(key, tx("customer name "+strconv.Itoa(i))))
				}
			}
			m := mustMerge(b, Plan{Sort: []SortKey{{Col: 0}}}, []Column{col("id", oidInt8, format), nameText})
			benchRun(b, m, data)
		})
	}
}

// BenchmarkMergeSortedText orders by a text key.
func BenchmarkMergeSortedText(b *testing.B) {
	data := make([][][]byte, 4)
	for s := range data {
		for i := 0; i < 10000; i++ {
			data[s] = append(data[s], row(tx("name "+strconv.Itoa(100000+i*4+s)), tx("x")))
		}
	}
	m := mustMerge(b, Plan{Sort: []SortKey{{Col: 0}}}, []Column{nameText, nameText})
	benchRun(b, m, data)
}

// BenchmarkConcat concatenates 4 sources of 10,000 rows with a hidden
// column stripped.
func BenchmarkConcat(b *testing.B) {
	data := make([][][]byte, 4)
	for s := range data {
		for i := 0; i < 10000; i++ {
			data[s] = append(data[s], row(i8b(int64(i)), tx("customer name"), i8b(7)))
		}
	}
	m := mustMerge(b, Plan{Visible: 2}, []Column{intBin, nameText, intBin})
	benchRun(b, m, data)
}

// BenchmarkAggregate combines 4 shards' partial aggregates of 10,000 groups
// each (the same groups everywhere):
//
//	SELECT g, count(*), sum(x), min(x), avg(x) FROM t GROUP BY g ORDER BY g
//
// with avg as sum(x), count(x) (x int4, so the sums are int8).
func BenchmarkAggregate(b *testing.B) {
	for _, format := range []int16{1, 0} {
		b.Run([]string{"text", "binary"}[format], func(b *testing.B) {
			enc := func(v int64) []byte {
				if format == 1 {
					return i8b(v)
				}
				return tx(strconv.FormatInt(v, 10))
			}
			enc4 := func(v int64) []byte {
				if format == 1 {
					return i4b(int32(v))
				}
				return tx(strconv.FormatInt(v, 10))
			}
			data := make([][][]byte, 4)
			for s := range data {
				for g := 0; g < 10000; g++ {
					data[s] = append(data[s], row(enc(int64(g)), enc(int64(s+3)), enc(int64(g*s+1)), enc4(int64(s-g)), enc(int64(g*s+1)), enc(int64(s+3))))
				}
			}
			c8, c4 := col("", oidInt8, format), col("", oidInt4, format)
			m := mustMerge(b, Plan{
				Visible: 5,
				Group:   []int{0},
				Aggs:    []Agg{{Col: 1, Kind: AggCount}, {Col: 2, Kind: AggSum}, {Col: 3, Kind: AggMin}, {Col: 4, Kind: AggAvg, CountCol: 5}},
				Sort:    []SortKey{{Col: 0}},
			}, []Column{c8, c8, c8, c4, c8, c8})
			benchRun(b, m, data)
		})
	}
}
