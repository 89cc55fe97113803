package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestParseLSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want LSN
		ok   bool
	}{
		{"0/0", 0, true},
		{"0/A20968", 0xA20968, true},
		{"16/B374D848", 0x16_B374D848, true},
		{"FFFFFFFF/FFFFFFFF", 1<<64 - 1, true},
		{"", 0, false},
		{"0", 0, false},
		{"/1", 0, false},
		{"1/", 0, false},
		{"1/2/3", 0, false},
		{"G/0", 0, false},
		{"100000000/0", 0, false},
		{"-1/0", 0, false},
		{" 1/0", 0, false},
	} {
		got, err := ParseLSN(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseLSN(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != strings.ToUpper(tc.in) {
			t.Errorf("LSN(%q).String() = %q", tc.in, got.String())
		}
	}
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "1/", "x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		back, err := ParseLSN(l.String())
		if err != nil || back != l {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, l, l.String(), back, err)
		}
	})
}

func row(cols ...any) [][]byte {
	out := make([][]byte, len(cols))
	for i, c := range cols {
		if c != nil {
			out[i] = []byte(c.(string))
		}
	}
	return out
}

func TestParseCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		row  [][]byte
		want observation
		err  string
	}{
		{
			name: "primary, freshly promoted: WAL file timeline wins over the checkpoint's",
			row:  row("f", "0/A20998", "00000002", "1", nil, nil, nil, nil, "0/A209A0"),
			want: observation{Timeline: 2, CurrentLSN: 0xA20998, InsertLSN: 0xA209A0},
		},
		{
			name: "replica streaming, receiver visible",
			row:  row("t", nil, nil, "1", "0/A20998", "0/A20990", "0.25", "2", nil),
			want: observation{InRecovery: true, Timeline: 2, ReceiveLSN: 0xA20998, ReplayLSN: 0xA20990, ReplayAge: 250 * time.Millisecond},
		},
		{
			name: "replica, receiver hidden: checkpoint timeline",
			row:  row("t", nil, nil, "3", "0/10", "0/10", nil, nil, nil),
			want: observation{InRecovery: true, Timeline: 3, ReceiveLSN: 0x10, ReplayLSN: 0x10},
		},
		{
			name: "replica without WAL receiver: receive = replay",
			row:  row("t", nil, nil, "1", nil, "0/20", nil, nil, nil),
			want: observation{InRecovery: true, Timeline: 1, ReceiveLSN: 0x20, ReplayLSN: 0x20},
		},
		{
			name: "negative replay age (clock skew) is 0",
			row:  row("t", nil, nil, "1", "0/30", "0/20", "-3.5", nil, nil),
			want: observation{InRecovery: true, Timeline: 1, ReceiveLSN: 0x30, ReplayLSN: 0x20},
		},
		{name: "short row", row: row("f"), err: "columns"},
		{name: "bad bool", row: row("x", nil, nil, "1", nil, nil, nil, nil, nil), err: "pg_is_in_recovery"},
		{name: "primary without LSN", row: row("f", nil, "00000001", "1", nil, nil, nil, nil, "0/1"), err: "WAL position"},
		{name: "primary without insert LSN", row: row("f", "0/1", "00000001", "1", nil, nil, nil, nil, nil), err: "WAL position"},
		{name: "bad LSN", row: row("f", "zz", "00000001", "1", nil, nil, nil, nil, "0/1"), err: "LSN"},
		{name: "bad insert LSN", row: row("f", "0/1", "00000001", "1", nil, nil, nil, nil, "0/"), err: "LSN"},
		{name: "bad timeline", row: row("f", "0/1", "0000000G", "1", nil, nil, nil, nil, "0/1"), err: "timeline"},
		{name: "timeline 0", row: row("f", "0/1", "00000000", "1", nil, nil, nil, nil, "0/1"), err: "timeline 0"},
		{name: "NULL checkpoint timeline", row: row("t", nil, nil, nil, nil, "0/1", nil, nil, nil), err: "checkpoint"},
		{name: "bad age", row: row("t", nil, nil, "1", "0/1", "0/1", "NaN", nil, nil), err: "replay age"},
		{name: "bad received timeline", row: row("t", nil, nil, "1", "0/1", "0/1", nil, "x", nil), err: "received timeline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var o observation
			err := parseCheck(tc.row, &o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(o, tc.want) {
				t.Fatalf("got %+v\nwant %+v", o, tc.want)
			}
		})
	}
}

func FuzzParseCheck(f *testing.F) {
	f.Add("f", "0/A20998", "00000002", "1", "", "", "", "", "0/A209A0", uint16(0xF0))
	f.Add("t", "", "", "1", "0/A20998", "0/A20990", "0.25", "2", "", uint16(0x106))
	f.Fuzz(func(t *testing.T, c0, c1, c2, c3, c4, c5, c6, c7, c8 string, nulls uint16) {
		cols := []string{c0, c1, c2, c3, c4, c5, c6, c7, c8}
		r := make([][]byte, len(cols))
		for i, c := range cols {
			if nulls&(1<<i) == 0 {
				r[i] = []byte(c)
			}
		}
		var o observation
		if err := parseCheck(r, &o); err != nil {
			return
		}
		if o.InRecovery && o.ReceiveLSN == 0 && o.ReplayLSN != 0 && r[4] == nil {
			t.Fatal("receive not defaulted to replay")
		}
		if !o.InRecovery && o.Timeline == 0 {
			t.Fatal("primary on timeline 0 accepted")
		}
		if o.ReplayAge < 0 {
			t.Fatal("negative replay age")
		}
	})
}

func TestConninfo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []kv
		err  bool
	}{
		{"", nil, false},
		{"host=127.0.0.1 port=5432 user=postgres", []kv{{"host", "127.0.0.1"}, {"port", "5432"}, {"user", "postgres"}}, false},
		{"  host = h  password='it''s'", nil, true}, // '' is not an escape in conninfo: the value ends, then "s'" has no =
		{`password='it\'s a \\ secret' application_name=r1`, []kv{{"password", `it's a \ secret`}, {"application_name", "r1"}}, false},
		{`password=a\ b`, []kv{{"password", "a b"}}, false},
		{"user=''", []kv{{"user", ""}}, false},
		{"host", nil, true},
		{"host=h port", nil, true},
		{"password='open", nil, true},
		{"=x", nil, true},
		{"postgresql://rep:p%40ss@old:5432,other:5433/db?sslmode=require&application_name=r1",
			[]kv{{"user", "rep"}, {"password", "p@ss"}, {"host", "old,other"}, {"port", "5432,5433"}, {"dbname", "db"}, {"sslmode", "require"}, {"application_name", "r1"}}, false},
		{"postgres://[::1]:6000", []kv{{"host", "::1"}, {"port", "6000"}}, false},
		{"postgresql://h?x", nil, true},
	} {
		got, err := parseConninfo(tc.in)
		if (err != nil) != tc.err || (!tc.err && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("parseConninfo(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestRepointConninfo(t *testing.T) {
	t.Parallel()
	fallback := []kv{{"user", "ops"}, {"password", "o p"}, {"application_name", "s0-replica2"}}
	for _, tc := range []struct{ current, want string }{
		{
			"host=127.0.0.1 port=15432 user=postgres password=secret application_name=s0-replica2",
			"host=10.0.0.2 port=15433 user=postgres password=secret application_name=s0-replica2",
		},
		{
			"hostaddr=10.0.0.1 host=db1 port=5432 sslmode=verify-full user=rep",
			"host=10.0.0.2 port=15433 sslmode=verify-full user=rep",
		},
		{"postgresql://rep:pw@db1:5432/?sslmode=require", "host=10.0.0.2 port=15433 user=rep password=pw sslmode=require"},
		{"", "host=10.0.0.2 port=15433 user=ops password='o p' application_name=s0-replica2"},
		{"garbage 'x", "host=10.0.0.2 port=15433 user=ops password='o p' application_name=s0-replica2"},
	} {
		if got := repointConninfo(tc.current, "10.0.0.2", "15433", fallback); got != tc.want {
			t.Errorf("repointConninfo(%q) =\n %q\nwant\n %q", tc.current, got, tc.want)
		}
	}
}

func FuzzConninfo(f *testing.F) {
	for _, s := range []string{
		"host=h port=1 user=u", `password='a\'b c' x=\\y`, "postgresql://u:p@h:1,g:2/d?a=b", "a=", "postgres://[::1", "k='",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pairs, err := parseConninfo(s)
		if err != nil {
			return
		}
		out := formatConninfo(pairs)
		back, err := parseConninfo(out)
		if err != nil {
			t.Fatalf("%q -> %q does not parse: %v", s, out, err)
		}
		if len(back) != len(pairs) || (len(pairs) > 0 && !reflect.DeepEqual(back, pairs)) {
			t.Fatalf("%q -> %v -> %q -> %v", s, pairs, out, back)
		}
		r := repointConninfo(s, "h", "1", nil)
		if !strings.HasPrefix(r, "host=h port=1") {
			t.Fatalf("repoint %q = %q", s, r)
		}
	})
}

func TestQuoteLiteral(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"host=h":          "'host=h'",
		"password='x'":    "'password=''x'''",
		`password='a\'b'`: `E'password=''a\\''b'''`,
		"":                "''",
	} {
		if got := quoteLiteral(in); got != want {
			t.Errorf("quoteLiteral(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want errClass
	}{
		{"nil", nil, classIgnore},
		{"cancelled", fmt.Errorf("borrow: %w", context.Canceled), classIgnore},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, classGone},
		{"shutting down", &pgconn.PgError{Code: "57P03", Message: "the database system is shutting down"}, classGone},
		{"crash shutdown", fmt.Errorf("x: %w", &pgconn.PgError{Code: "57P02"}), classGone},
		{"admin shutdown or pg_terminate_backend", &pgconn.PgError{Code: "57P01"}, classFailure},
		{"too many connections", &pgconn.PgError{Code: "53300"}, classBusy},
		{"bad password", &pgconn.PgError{Code: "28P01"}, classIgnore},
		{"statement error", &pgconn.PgError{Code: "42P01"}, classIgnore},
		{"connection failure", &pgconn.PgError{Code: "08006"}, classFailure},
		{"odd code", &pgconn.PgError{Code: "X"}, classIgnore},
		{"reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, classFailure},
		{"EOF", fmt.Errorf("read: %w", io.EOF), classFailure},
		{"deadline", context.DeadlineExceeded, classFailure},
		{"other", errors.New("unexpected message"), classFailure},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("%s: classify = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestSamplesLag(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var s samples
	if _, _, ok := s.lag(at(0), 0); ok {
		t.Fatal("lag without samples")
	}
	s.add(at(0), 100)
	s.add(at(100), 100) // same position: keeps the first time
	s.add(at(200), 300)
	s.add(at(300), 500)
	s.add(at(250), 600) // out of order: ignored
	for _, tc := range []struct {
		at     int
		replay LSN
		lag    time.Duration
		bytes  uint64
		ok     bool
	}{
		{-1, 0, 0, 0, false},                          // before any sample
		{50, 100, 0, 0, true},                         // caught up
		{50, 90, 50 * time.Millisecond, 10, true},     // misses the t=0 position
		{350, 100, 150 * time.Millisecond, 400, true}, // misses what existed at 200
		{350, 300, 50 * time.Millisecond, 200, true},  // misses what existed at 300
		{350, 500, 0, 0, true},                        // has everything
		{250, 100, 50 * time.Millisecond, 200, true},  // the 300 sample (t=300) is not seen yet
		{1000, 0, 1000 * time.Millisecond, 500, true}, // far behind
		{1000, 900, 0, 0, true},                       // ahead of the samples (a newer check)
	} {
		lag, bytes, ok := s.lag(at(tc.at), tc.replay)
		if lag != tc.lag || bytes != tc.bytes || ok != tc.ok {
			t.Errorf("lag(t=%d, replay %d) = %v, %d, %v; want %v, %d, %v", tc.at, tc.replay, lag, bytes, ok, tc.lag, tc.bytes, tc.ok)
		}
	}
	// Going backwards resets the history.
	s.add(at(400), 50)
	if lag, _, _ := s.lag(at(500), 50); lag != 0 {
		t.Fatalf("after reset: lag %v", lag)
	}
	// Bounded: the oldest samples go.
	for i := 0; i < 2*maxSamples; i++ {
		s.add(at(1000+i), LSN(1000+i))
	}
	if len(s.buf) != maxSamples || s.buf[0].lsn != LSN(1000+maxSamples) {
		t.Fatalf("%d samples, oldest %v", len(s.buf), s.buf[0].lsn)
	}
}

func TestBreaker(t *testing.T) {
	t.Parallel()
	set := settings{failuresBeforeDown: 3, interval: 100 * time.Millisecond, timeout: 50 * time.Millisecond}
	b := newBreaker(set)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	refused := &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}

	for i := 0; i < 2; i++ {
		if !b.allow(at(0)) {
			t.Fatal("closed breaker refused")
		}
		if b.result(refused, at(0)) {
			t.Fatal("opened before the threshold")
		}
	}
	// Ignored errors do not count.
	b.result(&pgconn.PgError{Code: "28P01"}, at(0))
	b.result(context.Canceled, at(0))
	if !b.allow(at(0)) {
		t.Fatal("refused after 2 failures")
	}
	if !b.result(refused, at(0)) {
		t.Fatal("did not open at the threshold")
	}
	if b.allow(at(50)) {
		t.Fatal("open breaker allowed a dial")
	}
	// After the back-off (interval): one probe, not two.
	if !b.allow(at(100)) {
		t.Fatal("no probe after the back-off")
	}
	if b.allow(at(101)) {
		t.Fatal("second concurrent probe allowed")
	}
	// The probe fails: open for twice as long.
	b.result(refused, at(110))
	if b.allow(at(300)) || !b.allow(at(310)) {
		t.Fatal("second back-off is not 200ms")
	}
	b.result(refused, at(310)) // 400ms
	b.result(refused, at(310)) // 800ms: results without allow count too
	if b.allow(at(1100)) || !b.allow(at(1110)) {
		t.Fatal("back-off does not double")
	}
	// A probe that never reports back frees the slot after the probe window.
	if b.allow(at(1111)) || !b.allow(at(1111+int(b.probe/time.Millisecond))) {
		t.Fatal("lost probe blocks the breaker")
	}
	// Success closes it.
	b.result(nil, at(1400))
	for i := 0; i < 3; i++ { // closed: no probe limit
		if !b.allow(at(1400)) {
			t.Fatal("closed breaker refused")
		}
	}
	opens, refusedN, open := b.counts(at(1400))
	if opens != 1 || refusedN == 0 || open {
		t.Fatalf("counts: opens %d refused %d open %v", opens, refusedN, open)
	}
	// The ceiling holds.
	for i := 0; i < 40; i++ {
		b.result(refused, at(2000))
	}
	if b.allow(at(2000).Add(maxRetryBackoff-time.Millisecond)) || !b.allow(at(2000).Add(maxRetryBackoff)) {
		t.Fatal("back-off ceiling")
	}
	// reset (the checker dialled fine) closes it at once.
	b.result(refused, at(40000))
	b.reset()
	if !b.allow(at(40000)) {
		t.Fatal("reset breaker refused")
	}
}
