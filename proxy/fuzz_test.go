package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// byteConn is a net.Conn that reads from a fixed input and discards writes:
// enough for the startup parser, which is what the fuzzers here drive.
type byteConn struct {
	net.Conn
	r io.Reader
}

func (b byteConn) Read(p []byte) (int, error)       { return b.r.Read(p) }
func (b byteConn) Write(p []byte) (int, error)      { return len(p), nil }
func (b byteConn) Close() error                     { return nil }
func (b byteConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (b byteConn) SetDeadline(time.Time) error      { return nil }
func (b byteConn) SetReadDeadline(time.Time) error  { return nil }
func (b byteConn) SetWriteDeadline(time.Time) error { return nil }

func startupPacket(version uint32, kv ...string) []byte {
	p := binary.BigEndian.AppendUint32([]byte{0, 0, 0, 0}, version)
	for _, s := range kv {
		p = append(p, s...)
		p = append(p, 0)
	}
	p = append(p, 0)
	binary.BigEndian.PutUint32(p, uint32(len(p)))
	return p
}

func FuzzStartup(f *testing.F) {
	f.Add(startupPacket(3<<16, "user", "app", "database", "app"))
	f.Add(startupPacket(3<<16|2, "user", "app", "_pq_.x", "1"))
	f.Add(append([]byte{0, 0, 0, 8, 4, 210, 22, 47}, startupPacket(3<<16, "user", "a")...)) // SSLRequest first
	f.Add([]byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2})                      // CancelRequest
	f.Add([]byte{0, 0, 0, 8, 4, 210, 22, 48})                                               // GSSENCRequest
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := newClientConn(byteConn{r: bytes.NewReader(in)}, 1<<20)
		req, err := readStartup(c, nil)
		if err != nil {
			return
		}
		if req.cancel {
			if len(req.cancelKey) < 4 || len(req.cancelKey) > 256 {
				t.Fatalf("cancel key of %d bytes accepted", len(req.cancelKey))
			}
			return
		}
		if req.minor > newestMinor && req.negotiation() == nil {
			t.Fatal("newer minor version without NegotiateProtocolVersion")
		}
		_, _ = newSessionParams(req.params)
	})
}

func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{'Q', 0, 0, 0, 9, 's', 'e', 'l', 0, 'S', 0, 0, 0, 4})
	f.Add([]byte{'P', 0, 0, 0, 3})
	f.Add([]byte{'d', 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 4096
		fr := frameReader{r: bufio.NewReaderSize(bytes.NewReader(in), 64), max: max}
		consumed := 0
		for {
			typ, body, err := fr.next()
			if err != nil {
				return
			}
			declared := int(binary.BigEndian.Uint32(in[consumed+1:]))
			if typ != in[consumed] || len(body) != declared-4 || len(body) > max {
				t.Fatalf("frame at %d: type %q body %d bytes, declared %d", consumed, typ, len(body), declared)
			}
			if !bytes.Equal(body, in[consumed+5:consumed+1+declared]) {
				t.Fatalf("frame at %d: body differs from input", consumed)
			}
			consumed += 1 + declared
		}
	})
}

// FuzzClientMessages feeds arbitrary bytes after a successful login into a
// real session in front of the in-memory backend: whatever arrives, the
// session must answer or close, never panic or hang.
func FuzzClientMessages(f *testing.F) {
	f.Add(appendQuery(nil, "SELECT 1"))
	f.Add(append(buildParse(nil, "s1", []byte("SELECT $1"), []byte{0, 1, 0, 0, 0, 23}), 'B', 0, 0, 0, 12, 0, 's', '1', 0, 0, 0, 0, 0, 0, 0, 'S', 0, 0, 0, 4))
	f.Add([]byte{'C', 0, 0, 0, 7, 'S', 'x', 0, 'S', 0, 0, 0, 4})
	f.Add([]byte{'B', 0, 0, 0, 8, 0, 'n', 'o', 0, 'E', 0, 0, 0, 9, 0, 0, 0, 0, 0, 'S', 0, 0, 0, 4})
	f.Add([]byte{'d', 0, 0, 0, 5, 'x', 'c', 0, 0, 0, 4, 'H', 0, 0, 0, 4, 'X', 0, 0, 0, 4})
	f.Add(appendQuery(nil, "SET search_path = a; RESET ALL; DISCARD ALL; LISTEN x"))
	f.Add(appendQuery(nil, "BEGIN; SET a.b = 1; COMMIT; BEGIN; SAVEPOINT s; SET a.c = 2; ROLLBACK TO s; DEALLOCATE ALL; ROLLBACK"))
	srv, _ := newTestServer(f, "transaction")
	f.Fuzz(func(t *testing.T, in []byte) {
		client, r := startTestClient(t, srv)
		go func() {
			// Drain whatever the proxy answers.
			_, _ = io.Copy(io.Discard, r)
		}()
		_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = client.Write(in)
		_, _ = client.Write([]byte{'S', 0, 0, 0, 4})
		// The client leaves (possibly mid-frame): the session must end.
		client.Close()
		deadline := time.Now().Add(8 * time.Second)
		for srv.Clients() != 0 {
			if time.Now().After(deadline) {
				t.Fatal("session did not end after its client left")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

func TestDowngradeFatal(t *testing.T) {
	t.Parallel()
	fatal := appendError(nil, "FATAL", "57P01", "terminating connection due to administrator command")[5:]
	got := downgradeFatal(fatal)
	want := appendError(nil, "ERROR", "57P01", "terminating connection due to administrator command")[5:]
	if !bytes.Equal(got, want) {
		t.Fatalf("downgraded %q, want %q", got, want)
	}
	plain := appendError(nil, "ERROR", "42P01", "nope")[5:]
	if !bytes.Equal(downgradeFatal(plain), plain) {
		t.Fatal("an ERROR was rewritten")
	}
	if code, msg := errorFields(got); code != "57P01" || msg == "" {
		t.Fatalf("fields lost: %q %q", code, msg)
	}
}
