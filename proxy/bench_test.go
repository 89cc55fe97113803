package proxy

import (
	"bufio"
	"encoding/binary"
	"io"
	"testing"
)

// BenchmarkForwardSimpleQuery measures one simple Query through a
// transaction-pooled session: borrow, forward, relay four reply frames,
// release. The backend is in memory, so this is the proxy's own cost.
func BenchmarkForwardSimpleQuery(b *testing.B) {
	srv, _ := newTestServer(b, "transaction")
	client, r := startTestClient(b, srv)
	defer client.Close()
	q := appendQuery(nil, "SELECT abalance FROM pgbench_accounts WHERE aid = 12345")
	benchRoundTrips(b, client, r, q)
}

// BenchmarkForwardPreparedStatement measures Bind/Execute/Sync of a named
// prepared statement (pgx's and pgbench -M prepared's shape): rename to the
// global name, lazy prepare on the borrowed connection, relay, release.
func BenchmarkForwardPreparedStatement(b *testing.B) {
	srv, _ := newTestServer(b, "transaction")
	client, r := startTestClient(b, srv)
	defer client.Close()
	var parse []byte
	parse, start := beginFrame(parse, 'P')
	parse = append(parse, "stmt1\x00SELECT abalance FROM pgbench_accounts WHERE aid = $1\x00"...)
	parse = binary.BigEndian.AppendUint16(parse, 1)
	parse = binary.BigEndian.AppendUint32(parse, 23)
	parse = finishFrame(parse, start)
	parse = append(parse, 'S', 0, 0, 0, 4)
	if _, err := client.Write(parse); err != nil {
		b.Fatal(err)
	}
	readUntilReady(b, r)

	var msg []byte
	msg, start = beginFrame(msg, 'B')
	msg = append(msg, "\x00stmt1\x00"...)
	msg = append(msg, 0, 0, 0, 1, 0, 0, 0, 5, '1', '2', '3', '4', '5', 0, 0)
	msg = finishFrame(msg, start)
	msg = append(msg, 'E', 0, 0, 0, 9, 0, 0, 0, 0, 0)
	msg = append(msg, 'S', 0, 0, 0, 4)
	benchRoundTrips(b, client, r, msg)
}

// BenchmarkForwardExtendedQuery measures libpq's PQexecParams shape (pgbench
// -M extended): an unnamed Parse, Bind, Describe portal, Execute and Sync
// per query, the statement text the same every time.
func BenchmarkForwardExtendedQuery(b *testing.B) {
	srv, _ := newTestServer(b, "transaction")
	client, r := startTestClient(b, srv)
	defer client.Close()
	var msg []byte
	msg, start := beginFrame(msg, 'P')
	msg = append(msg, "\x00SELECT abalance FROM pgbench_accounts WHERE aid = $1;\x00"...)
	msg = binary.BigEndian.AppendUint16(msg, 0)
	msg = finishFrame(msg, start)
	msg, start = beginFrame(msg, 'B')
	msg = append(msg, "\x00\x00"...)
	msg = append(msg, 0, 0, 0, 1, 0, 0, 0, 5, '1', '2', '3', '4', '5', 0, 1, 0, 0)
	msg = finishFrame(msg, start)
	msg = append(msg, 'D', 0, 0, 0, 6, 'P', 0)
	msg = append(msg, 'E', 0, 0, 0, 9, 0, 0, 0, 0, 0)
	msg = append(msg, 'S', 0, 0, 0, 4)
	benchRoundTrips(b, client, r, msg)
}

// benchRoundTrips times b.N writes of msg, each followed by reading up to
// ReadyForQuery.
func benchRoundTrips(b *testing.B, client io.Writer, r *bufio.Reader, msg []byte) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		readUntilReady(b, r)
	}
}
