package router

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/shardwire/shardwire/shardmap"
)

// copyResult is what a splitter produced: the bytes emitted per shard,
// the rows in order with their shard, and the error.
type copyResult struct {
	out   map[string][]byte
	rows  []copyRow
	emits int
	err   error
	sp    *CopySplitter
}

type copyRow struct {
	shard string
	row   string
}

// runCopy feeds chunks to a new splitter of p and closes it.
func runCopy(p *CopyPlan, opt RouteOptions, chunks ...[]byte) copyResult {
	res := copyResult{out: map[string][]byte{}}
	s := p.NewSplitter(opt)
	res.sp = s
	s.rowHook = func(r int, row []byte) {
		res.rows = append(res.rows, copyRow{s.rc.mi.names[r], string(row)})
	}
	emit := func(shard string, rows []byte) error {
		if len(rows) == 0 {
			return errors.New("empty emit")
		}
		res.out[shard] = append(res.out[shard], rows...)
		res.emits++
		return nil
	}
	for _, c := range chunks {
		if res.err = s.Write(c, emit); res.err != nil {
			return res
		}
	}
	res.err = s.Close(emit)
	return res
}

func errCode(err error) string {
	var re *RouteError
	if errors.As(err, &re) {
		return re.Code
	}
	if err != nil {
		return "?"
	}
	return ""
}

func mustPlan(t testing.TB, a *Analyzer, m *shardmap.Map, sql string) *CopyPlan {
	t.Helper()
	p, err := a.PlanCopyIn(sql, m)
	if err != nil {
		t.Fatalf("PlanCopyIn(%q): %v", sql, err)
	}
	return p
}

func TestPlanCopyIn(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	cases := []struct {
		sql    string
		format CopyFormat
		delim  byte
		null   string
		quote  byte
		escape byte
		header bool
		key    int
		cols   []string
		needs  bool
		code   string
		msg    string
	}{
		{sql: "COPY stores (region, name) FROM STDIN", delim: '\t', null: `\N`, cols: []string{"region", "name"}},
		{sql: "copy public.stores (name, \"region\") from stdin", delim: '\t', null: `\N`, key: 1, cols: []string{"name", "region"}},
		{sql: "COPY stores (name, region) FROM STDIN WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'NA', QUOTE '''', ESCAPE '\\')",
			format: CopyCSV, delim: ';', null: "NA", quote: '\'', escape: '\\', header: true, key: 1, cols: []string{"name", "region"}},
		{sql: "COPY stores (region) FROM STDIN WITH CSV HEADER DELIMITER AS '|' QUOTE AS '\"' FORCE NOT NULL region",
			format: CopyCSV, delim: '|', quote: '"', escape: '"', header: true, cols: []string{"region"}},
		{sql: "COPY stores (region) FROM STDIN (FORMAT csv, HEADER match)", format: CopyCSV, delim: ',', quote: '"', escape: '"', header: true, cols: []string{"region"}},
		{sql: "COPY stores (region) FROM STDIN (FORMAT text, HEADER false, ENCODING 'UTF-8', FREEZE)", delim: '\t', null: `\N`, cols: []string{"region"}},
		{sql: "COPY orders (customer_id) FROM STDIN (FORMAT binary)", format: CopyBinary, cols: []string{"customer_id"}},
		{sql: "COPY orders (customer_id) FROM STDIN BINARY", format: CopyBinary, cols: []string{"customer_id"}},
		{sql: "COPY stores FROM STDIN", delim: '\t', null: `\N`, key: -1, needs: true},
		{sql: "COPY logs FROM STDIN", delim: '\t', null: `\N`, key: -1},
		{sql: "COPY countries (code) FROM STDIN", delim: '\t', null: `\N`, key: -1, cols: []string{"code"}},

		{sql: "COPY stores TO STDOUT", code: "0A000", msg: "COPY … TO"},
		{sql: "COPY (SELECT 1) TO STDOUT", code: "0A000", msg: "COPY … TO"},
		{sql: "COPY stores (region) FROM '/tmp/x'", code: "0A000", msg: "file or program"},
		{sql: "COPY stores (region) FROM PROGRAM 'cat'", code: "0A000", msg: "file or program"},
		{sql: "COPY stores (name) FROM STDIN", code: "0A000", msg: "does not name its key column region"},
		{sql: "COPY stores (region) FROM STDIN (FORMAT binary, DELIMITER ',')", code: "42601", msg: "BINARY"},
		{sql: "COPY stores (region) FROM STDIN (DELIMITER '||')", code: "0A000", msg: "single one-byte"},
		{sql: "COPY stores (region) FROM STDIN (DELIMITER 'a')", code: "22023", msg: "cannot be"},
		{sql: "COPY stores (region) FROM STDIN (QUOTE '\"')", code: "0A000", msg: "only in CSV"},
		{sql: "COPY stores (region) FROM STDIN (FORMAT csv, DELIMITER '\"')", code: "22023", msg: "must be different"},
		{sql: "COPY stores (region) FROM STDIN (ENCODING 'LATIN1')", code: "0A000", msg: "UTF8"},
		{sql: "COPY stores (region) FROM STDIN (FORMAT xml)", code: "22023", msg: "not recognized"},
		{sql: "COPY stores (region) FROM STDIN (FROBNICATE 1)", code: "0A000", msg: "frobnicate"},
		{sql: "COPY stores (region) FROM STDIN (FORMAT csv, FORMAT text)", code: "42601", msg: "redundant"},
		{sql: "COPY stores (region) FROM STDIN; SELECT 1", code: "0A000", msg: "only statement"},
		{sql: "SELECT 1", code: "0A000", msg: "not a COPY"},
		{sql: "COPY stores (region FROM STDIN", code: "42601"},
	}
	for _, c := range cases {
		p, err := a.PlanCopyIn(c.sql, m)
		if c.code != "" {
			var re *RouteError
			if !errors.As(err, &re) || re.Code != c.code || !strings.Contains(re.Msg, c.msg) {
				t.Errorf("PlanCopyIn(%q) error %v; want %s containing %q", c.sql, err, c.code, c.msg)
			}
			continue
		}
		if err != nil {
			t.Errorf("PlanCopyIn(%q): %v", c.sql, err)
			continue
		}
		got := fmt.Sprintf("%v %q %q %q %q %v %d %q %v", p.Format, p.Delimiter, p.Null, p.Quote, p.Escape, p.Header, p.KeyIndex(), p.Columns(), p.NeedsColumns())
		want := fmt.Sprintf("%v %q %q %q %q %v %d %q %v", c.format, c.delim, c.null, c.quote, c.escape, c.header, c.key, c.cols, c.needs)
		if got != want {
			t.Errorf("PlanCopyIn(%q) = %s, want %s", c.sql, got, want)
		}
		if p.ShardSQL() != c.sql {
			t.Errorf("ShardSQL = %q", p.ShardSQL())
		}
	}
}

func TestCopySetColumns(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	p := mustPlan(t, a, m, "COPY stores FROM STDIN")
	// Without columns the data is refused with a clear message.
	res := runCopy(p, RouteOptions{}, []byte("eu\tx\n"))
	if errCode(res.err) != "0A000" || !strings.Contains(res.err.Error(), "without a column list") {
		t.Fatalf("before SetColumns: %v", res.err)
	}
	if err := p.SetColumns([]string{"id", "name"}); errCode(err) != "0A000" {
		t.Fatalf("SetColumns without the key: %v", err)
	}
	if err := p.SetColumns([]string{"id", "name", "region"}); err != nil || p.KeyIndex() != 2 || p.NeedsColumns() {
		t.Fatalf("SetColumns: %v, key %d", err, p.KeyIndex())
	}
	res = runCopy(p, RouteOptions{}, []byte("1\tx\teu\n2\ty\tjp\n"))
	if res.err != nil || string(res.out["s0"]) != "1\tx\teu\n" || string(res.out["s2"]) != "2\ty\tjp\n" {
		t.Fatalf("after SetColumns: %v %q", res.err, res.out)
	}
	listed := mustPlan(t, a, m, "COPY stores (region) FROM STDIN")
	if err := listed.SetColumns([]string{"region"}); errCode(err) != CodeInternal {
		t.Fatalf("SetColumns on a listed COPY: %v", err)
	}
}

// copyCases are COPY data and how they split; out is per shard, code the
// expected error.
var copyCases = []struct {
	name string
	sql  string
	data string
	out  map[string]string
	code string
	msg  string
}{
	{name: "text", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\nus\tb\nuk\tc\njp\td\n",
		out: map[string]string{"s0": "eu\ta\nuk\tc\n", "s1": "us\tb\n", "s2": "jp\td\n"}},
	{name: "text key second", sql: "COPY stores (name, region) FROM STDIN", data: "a\teu\nb\tus\n",
		out: map[string]string{"s0": "a\teu\n", "s1": "b\tus\n"}},
	{name: "text escapes in the key", sql: "COPY stores (region, name) FROM STDIN",
		data: "e\\u\t1\n\\x65u\t2\n\\145u\t3\n\\x6a\\160\t4\nu\\163\t5\n",
		out:  map[string]string{"s0": "e\\u\t1\n\\x65u\t2\n\\145u\t3\n", "s2": "\\x6a\\160\t4\n", "s1": "u\\163\t5\n"}},
	{name: "text escaped newline and delimiter", sql: "COPY stores (name, region) FROM STDIN",
		data: "a\\\nb\\\tc\tus\nx\\\\\teu\n",
		out:  map[string]string{"s1": "a\\\nb\\\tc\tus\n", "s0": "x\\\\\teu\n"}},
	{name: "text CRLF", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\r\nus\tb\r\neu\tc\r\n",
		out: map[string]string{"s0": "eu\ta\r\neu\tc\r\n", "s1": "us\tb\r\n"}},
	{name: "text CR", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\rus\tb\r",
		out: map[string]string{"s0": "eu\ta\r", "s1": "us\tb\r"}},
	{name: "text last line without newline", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\nus\tb",
		out: map[string]string{"s0": "eu\ta\n", "s1": "us\tb"}},
	{name: "text trailing backslash at the end", sql: "COPY stores (name, region) FROM STDIN", data: "a\tus\\",
		out: map[string]string{"s1": "a\tus\\"}},
	{name: "text end marker", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\n\\.\nus\tb\n",
		out: map[string]string{"s0": "eu\ta\n"}},
	{name: "text end marker after data", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\nus\tb\\.\nuk\tc\n",
		out: map[string]string{"s0": "eu\ta\n", "s1": "us\tb\n"}},
	{name: "text end marker CRLF", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\r\n\\.\r\nus\tb\r\n",
		out: map[string]string{"s0": "eu\ta\r\n"}},
	{name: "text header", sql: "COPY stores (region, name) FROM STDIN (HEADER)", data: "region\tname\neu\ta\nus\tb\nuk\tc\n",
		out: map[string]string{"s0": "region\tname\neu\ta\nuk\tc\n", "s1": "region\tname\nus\tb\n"}},
	{name: "text options", sql: "COPY stores (name, region) FROM STDIN (DELIMITER '|', NULL 'NULL')", data: "NULL|eu\n\\N|us\n",
		out: map[string]string{"s0": "NULL|eu\n", "s1": "\\N|us\n"}},
	{name: "text empty", sql: "COPY stores (region, name) FROM STDIN", data: "", out: map[string]string{}},
	{name: "text only a header", sql: "COPY stores (region, name) FROM STDIN (HEADER)", data: "region\tname\n", out: map[string]string{}},

	{name: "text null key", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\n\\N\tb\n", code: "0A000", msg: "line 2: null key"},
	{name: "text missing key", sql: "COPY stores (name, region) FROM STDIN", data: "a\n", code: "22P04", msg: `line 1: missing data for column "region"`},
	{name: "text no shard", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\nxx\tb\n", code: "23514", msg: "line 2"},
	{name: "text escaped tab in key", sql: "COPY stores (region, name) FROM STDIN", data: "j\\tp\tb\n", code: "23514"},
	{name: "text bad bigint", sql: "COPY orders (customer_id) FROM STDIN", data: "1\nx\n", code: "22P02", msg: "line 2"},
	{name: "text mixed newlines", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\nus\tb\r\n", code: "22P04", msg: "literal carriage return"},
	{name: "text CR then LF", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\rus\tb\n", code: "22P04", msg: "literal newline"},
	{name: "text CRLF then CR", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\r\nus\tb\rx", code: "22P04", msg: "literal carriage return"},
	{name: "text marker corrupt", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\n\\.x\n", code: "22P04", msg: "end-of-copy marker corrupt"},
	{name: "text marker at EOF", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\n\\.", code: "22P04", msg: "end-of-copy marker corrupt"},
	{name: "text marker newline style", sql: "COPY stores (region, name) FROM STDIN", data: "eu\ta\r\n\\.\n", code: "22P04", msg: "does not match"},
	{name: "text invalid UTF8 by escape", sql: "COPY stores (region, name) FROM STDIN", data: "\\xff\ta\n", code: "22021"},
	{name: "text DEFAULT key", sql: "COPY stores (region, name) FROM STDIN (DEFAULT 'D')", data: "D\ta\n", code: "0A000", msg: "DEFAULT"},

	{name: "csv", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv)", data: "eu,a\nus,b\n\"jp\",c\n",
		out: map[string]string{"s0": "eu,a\n", "s1": "us,b\n", "s2": "\"jp\",c\n"}},
	{name: "csv quoted newlines and quotes", sql: "COPY stores (name, region) FROM STDIN (FORMAT csv)",
		data: "\"line1\nline2\",us\n\"a \"\"q\"\" ,b\",eu\n\"x\r\ny\",\"j\"\"\"p\n",
		out:  map[string]string{"s1": "\"line1\nline2\",us\n", "s0": "\"a \"\"q\"\" ,b\",eu\n"}, code: "23514", msg: "line 3"},
	{name: "csv quote in the middle", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv)", data: "e\"u\",x\nj\"p\n\",y\n",
		out: map[string]string{"s0": "e\"u\",x\n"}, code: "23514", msg: "line 2"},
	{name: "csv escape", sql: "COPY stores (name, region) FROM STDIN (FORMAT csv, ESCAPE '\\')", data: "\"a\\\"\n,b\",us\n\"\\\\\",eu\n",
		out: map[string]string{"s1": "\"a\\\"\n,b\",us\n", "s0": "\"\\\\\",eu\n"}},
	{name: "csv escape before a non-quote", sql: "COPY stores (name, region) FROM STDIN (FORMAT csv, ESCAPE '\\')", data: "\"a\\x\",us\n\"\\\r\",eu\n",
		out: map[string]string{"s1": "\"a\\x\",us\n", "s0": "\"\\\r\",eu\n"}},
	{name: "csv header CRLF", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv, HEADER)", data: "region,name\r\neu,a\r\nca,b\r\n",
		out: map[string]string{"s0": "region,name\r\neu,a\r\n", "s1": "region,name\r\nca,b\r\n"}},
	{name: "csv end marker", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv)", data: "eu,a\n\\.\nus,b\n",
		out: map[string]string{"s0": "eu,a\n"}},
	{name: "csv backslash-dot is data", sql: "COPY stores (name, region) FROM STDIN (FORMAT csv)", data: "\\.x,eu\n\\.,us\nq,eu\n\\.",
		out: map[string]string{"s0": "\\.x,eu\nq,eu\n", "s1": "\\.,us\n"}, code: "22P04", msg: "line 4: missing"},
	{name: "csv backslash-dot at the end is data", sql: "COPY stores (name, region) FROM STDIN (FORMAT csv)", data: "a\\.,eu\n\\.",
		code: "22P04", msg: "line 2: missing"},
	{name: "csv end marker with QUOTE '.'", sql: "COPY stores (name, region) FROM STDIN (FORMAT csv, QUOTE '.')", data: "\\.\n.,eu\n",
		out: map[string]string{}},
	{name: "csv backslash-dot opens a quote", sql: "COPY stores (name, region) FROM STDIN (FORMAT csv, QUOTE '.')", data: "\\.x\n.,eu\n",
		out: map[string]string{"s0": "\\.x\n.,eu\n"}},
	{name: "csv last line without newline", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv)", data: "eu,a\nus,\"b\nc\"",
		out: map[string]string{"s0": "eu,a\n", "s1": "us,\"b\nc\""}},
	{name: "csv null key", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv)", data: ",a\n", code: "0A000", msg: "null key"},
	{name: "csv empty quoted key", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv)", data: "\"\",a\n", code: "23514"},
	{name: "csv force null", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv, FORCE_NULL (region))", data: "\"\",a\n", code: "0A000", msg: "null key"},
	{name: "csv force not null", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv, NULL 'us', FORCE_NOT_NULL (region))", data: "us,a\n",
		out: map[string]string{"s1": "us,a\n"}},
	{name: "csv force not null star", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv, NULL 'us', FORCE_NOT_NULL *)", data: "us,a\n",
		out: map[string]string{"s1": "us,a\n"}},
	{name: "csv unterminated quote", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv)", data: "eu,a\nus,\"b\n", code: "22P04", msg: "unterminated CSV quoted field"},
	{name: "csv unquoted CR", sql: "COPY stores (region, name) FROM STDIN (FORMAT csv)", data: "eu,a\nus,b\rc\n", code: "22P04", msg: "unquoted carriage return"},

	{name: "unsharded", sql: "COPY logs FROM STDIN", data: "1\tx\n2\ty\n", out: map[string]string{"s0": "1\tx\n2\ty\n"}},
	{name: "replicated", sql: "COPY countries (code) FROM STDIN (FORMAT csv, HEADER)", data: "code\nfr\nde\n",
		out: map[string]string{"s0": "code\nfr\nde\n", "s1": "code\nfr\nde\n", "s2": "code\nfr\nde\n"}},
}

func TestCopySplit(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	for _, c := range copyCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := mustPlan(t, a, m, c.sql)
			res := runCopy(p, RouteOptions{}, []byte(c.data))
			if got := errCode(res.err); got != c.code || (c.code != "" && !strings.Contains(res.err.Error(), c.msg)) {
				t.Fatalf("error %v; want %q containing %q", res.err, c.code, c.msg)
			}
			if c.code != "" && c.out == nil {
				return
			}
			got := map[string]string{}
			for k, v := range res.out {
				got[k] = string(v)
			}
			if c.code != "" {
				// Rows before the error are emitted by a later Flush or
				// Close, which the caller does not make after an error:
				// compare the rows the splitter had placed.
				got = map[string]string{}
				for _, r := range res.rows {
					got[r.shard] += r.row
				}
			}
			if !maps.Equal(got, c.out) {
				t.Fatalf("split %q:\n got %q\nwant %q", c.data, got, c.out)
			}
		})
	}
}

// TestCopySplitChunks feeds every case split at every byte boundary, and
// one byte at a time: the result does not depend on how the data is cut.
func TestCopySplitChunks(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	type bcase struct{ name, sql, data string }
	var cases []bcase
	for _, c := range copyCases {
		cases = append(cases, bcase{c.name, c.sql, c.data})
	}
	for _, c := range binaryCases(t) {
		cases = append(cases, bcase{c.name, c.sql, c.data})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := mustPlan(t, a, m, c.sql)
			data := []byte(c.data)
			whole := runCopy(p, RouteOptions{}, data)
			same := func(how string, got copyResult) {
				t.Helper()
				if errCode(got.err) != errCode(whole.err) || fmt.Sprint(got.rows) != fmt.Sprint(whole.rows) ||
					(whole.err == nil && fmt.Sprint(got.out) != fmt.Sprint(whole.out)) {
					t.Fatalf("%s: %v %q %q; whole: %v %q %q", how, got.err, got.rows, got.out, whole.err, whole.rows, whole.out)
				}
				if got.err != nil && got.err.Error() != whole.err.Error() {
					t.Fatalf("%s: error %q, whole: %q", how, got.err, whole.err)
				}
			}
			for i := 0; i <= len(data); i++ {
				same(fmt.Sprintf("split at %d", i), runCopy(p, RouteOptions{}, data[:i], data[i:]))
			}
			var bytewise [][]byte
			for i := range data {
				bytewise = append(bytewise, data[i:i+1])
			}
			same("byte by byte", runCopy(p, RouteOptions{}, bytewise...))
		})
	}
}

// binTuple encodes a binary COPY tuple; nil is NULL.
func binTuple(fields ...[]byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(fields)))
	for _, f := range fields {
		if f == nil {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

func binFileHeader(ext string) string {
	h := []byte(binarySignature)
	h = binary.BigEndian.AppendUint32(h, 0)
	h = binary.BigEndian.AppendUint32(h, uint32(len(ext)))
	return string(h) + ext
}

const binTrailer = "\xff\xff"

type binaryCase struct {
	name, sql, data string
	out             map[string]string
	code, msg       string
}

func binaryCases(t testing.TB) []binaryCase {
	m := splitMap(t)
	orders, _ := m.Table("orders")
	// Find bigint keys on two different shards.
	var k0, k1 int64
	var s0, s1 string
	for k := int64(1); s1 == ""; k++ {
		s, err := orders.LocateBinary(shardmap.OIDInt8, be64(k))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case s0 == "":
			k0, s0 = k, s
		case s != s0:
			k1, s1 = k, s
		}
	}
	h := binFileHeader("")
	hx := binFileHeader("ext!")
	r0 := string(binTuple(be64(k0), []byte("a")))
	r1 := string(binTuple(be64(k1), nil))
	r2 := string(binTuple(be64(k0), []byte("")))
	const sql = "COPY orders (customer_id, note) FROM STDIN (FORMAT binary)"
	return []binaryCase{
		{name: "binary", sql: sql, data: h + r0 + r1 + r2 + binTrailer,
			out: map[string]string{s0: h + r0 + r2, s1: h + r1}},
		{name: "binary header extension, no trailer", sql: sql, data: hx + r1 + r0,
			out: map[string]string{s0: hx + r0, s1: hx + r1}},
		{name: "binary int4 key", sql: "COPY orders (note, customer_id) FROM STDIN BINARY", data: h + string(binTuple([]byte("x"), be32(int32(k1)))),
			out: map[string]string{s1: h + string(binTuple([]byte("x"), be32(int32(k1))))}},
		{name: "binary empty", sql: sql, data: h + binTrailer, out: map[string]string{}},
		{name: "binary nothing", sql: sql, data: "", code: "22P04", msg: "signature"},
		{name: "binary bad signature", sql: sql, data: "PGCOPY\n\xff\r\n\x01" + h[11:], code: "22P04", msg: "signature"},
		{name: "binary OIDs flag", sql: sql, data: h[:11] + "\x00\x01\x00\x00" + h[15:], code: "22P04", msg: "WITH OIDS"},
		{name: "binary null key", sql: sql, data: h + string(binTuple(nil, []byte("a"))), code: "0A000", msg: "null key"},
		{name: "binary field count", sql: sql, data: h + string(binTuple(be64(k0))), code: "22P04", msg: "row field count is 1, expected 2"},
		{name: "binary bad key length", sql: sql, data: h + string(binTuple([]byte("abc"), nil)), code: "22P03"},
		{name: "binary cut in a tuple", sql: sql, data: h + r0[:len(r0)-1], code: "22P04", msg: "unexpected EOF"},
		{name: "binary cut in a count", sql: sql, data: h + r0 + "\x00", code: "22P04", msg: "unexpected EOF"},
		{name: "binary data after trailer", sql: sql, data: h + r0 + binTrailer + "x", code: "22P04", msg: "after EOF marker"},
		{name: "binary bad field size", sql: sql, data: h + "\x00\x02\xff\xff\xff\xfe", code: "22P04", msg: "invalid field size"},
	}
}

func TestCopySplitBinary(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	for _, c := range binaryCases(t) {
		p := mustPlan(t, a, m, c.sql)
		res := runCopy(p, RouteOptions{}, []byte(c.data))
		if got := errCode(res.err); got != c.code || (c.code != "" && !strings.Contains(res.err.Error(), c.msg)) {
			t.Errorf("%s: error %v; want %q containing %q", c.name, res.err, c.code, c.msg)
			continue
		}
		if c.code != "" {
			continue
		}
		got := map[string]string{}
		for k, v := range res.out {
			got[k] = string(v)
		}
		if !maps.Equal(got, c.out) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.out)
		}
	}
}

// TestCopySplitHints: hints and session settings decide for every row, in
// Route's order.
func TestCopySplitHints(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	p := mustPlan(t, a, m, "COPY stores (region, name) FROM STDIN")
	data := []byte("eu\ta\nus\tb\n")
	cases := []struct {
		opt   RouteOptions
		shard string
		code  string
	}{
		{RouteOptions{Hints: Hints{Shard: "s2"}}, "s2", ""},
		{RouteOptions{Shard: "s1"}, "s1", ""},
		{RouteOptions{Hints: Hints{Key: "jp", HasKey: true}, Shard: "s0"}, "s2", ""},
		{RouteOptions{Key: "ca", HasKey: true}, "s1", ""},
		{RouteOptions{Shard: "nope"}, "", "22023"},
		{RouteOptions{Key: "zz", HasKey: true}, "", "23514"},
		{RouteOptions{Hints: Hints{Err: errors.New("bad hint")}}, "", "22023"},
	}
	for _, c := range cases {
		res := runCopy(p, c.opt, data)
		if errCode(res.err) != c.code {
			t.Errorf("%+v: error %v, want %q", c.opt, res.err, c.code)
			continue
		}
		if c.code == "" && (len(res.out) != 1 || string(res.out[c.shard]) != string(data)) {
			t.Errorf("%+v: %q, want all on %s", c.opt, res.out, c.shard)
		}
	}
	// A key setting leaves an unsharded table on the default shard.
	pl := mustPlan(t, a, m, "COPY logs FROM STDIN")
	if res := runCopy(pl, RouteOptions{Key: "jp", HasKey: true}, data); res.err != nil || string(res.out["s0"]) != string(data) {
		t.Errorf("unsharded with a key setting: %v %q", res.err, res.out)
	}
}

// copyText escapes v as a text-format COPY field; alt picks other
// spellings of the same bytes (octal and hex escapes).
func copyText(v string, alt bool) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case alt && c < 0x80 && i%2 == 0:
			fmt.Fprintf(&b, `\%03o`, c)
		case alt && c < 0x80:
			fmt.Fprintf(&b, `\x%x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func copyCSV(v string, quote bool) string {
	if quote || v == "" || strings.ContainsAny(v, ",\"\r\n") {
		return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
	}
	return v
}

// copyKeyValues are key values in text form, per table.
var copyKeyValues = []struct {
	table, key string
	vals       []string
}{
	{"orders", "customer_id", []string{"1", "-5", "  43  ", "+48", "9223372036854775807", "-9223372036854775808", "007", "12", "13", "14"}},
	{"items", "code", []string{"a", "it's", "tab\tx", "new\nline", `back\slash`, "", " a ", "Ünï", `\N`, `comma,quote"`, "cr\rlf\n"}},
	{"events", "created_at", []string{"2025-12-31", "2026-01-01", "infinity", "-infinity", "2027-06-01", " 2026-07-08 "}},
	{"sessions", "sid", []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{A0EEBC999C0B4EF8BB6D6BB9BD380A12}", "a0eebc999c0b4ef8bb6d6bb9bd380a13",
		"a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a14", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A15"}},
	{"accounts", "id", []string{"7", "-2147483648", "2147483647", "8", "9", "10", "11"}},
	{"ticks", "at", []string{"2026-01-01 00:00:00+00", "2026-01-01 10:00:00+05", "2026-01-01 10:00:00", "2026-01-01T10:00:00.123456Z", "2026-03-04 05:06:07-08:30", "2026-03-05"}},
	{"stamps", "at", []string{"2026-01-01 10:00:00", "2026-01-01T10:00:00.5", "2026-01-01 10:00:00+07", "2026-05-05 05:05:05", "2027-01-01"}},
	{`"Mixed"`, "Key", []string{"1", "2", "3", "4", "5", "6"}},
}

// TestCopySplitMatchesRoute: a COPY row lands where Route sends an INSERT
// of the same key written as a string literal, in text (plain and with
// octal and hex escapes) and CSV (plain and quoted).
func TestCopySplitMatchesRoute(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	opt := RouteOptions{Loc: time.FixedZone("x", -4*3600)}
	for _, kv := range copyKeyValues {
		col := kv.key
		if kv.key == "Key" {
			col = `"Key"`
		}
		for _, form := range []string{"text", "text-alt", "csv", "csv-quoted"} {
			var data strings.Builder
			for i, v := range kv.vals {
				switch form {
				case "text", "text-alt":
					fmt.Fprintf(&data, "%d\t%s\n", i, copyText(v, form == "text-alt"))
				default:
					fmt.Fprintf(&data, "%d,%s\r\n", i, copyCSV(v, form == "csv-quoted"))
				}
			}
			sql := fmt.Sprintf("COPY %s (n, %s) FROM STDIN", kv.table, col)
			if strings.HasPrefix(form, "csv") {
				sql += " (FORMAT csv)"
			}
			p := mustPlan(t, a, m, sql)
			res := runCopy(p, opt, []byte(data.String()))
			if res.err != nil {
				t.Fatalf("%s %s: %v", kv.table, form, res.err)
			}
			if len(res.rows) != len(kv.vals) {
				t.Fatalf("%s %s: %d rows, want %d", kv.table, form, len(res.rows), len(kv.vals))
			}
			shards := map[string]bool{}
			for i, v := range kv.vals {
				ins := fmt.Sprintf("INSERT INTO %s (%s, n) VALUES ('%s', %d)", kv.table, col, strings.ReplaceAll(v, "'", "''"), i)
				var s Scratch
				r, err := a.Route(a.ClassifyWith(&s, ins), ins, s.Literals(), nil, m, opt)
				if err != nil {
					t.Fatalf("Route(%q): %v", ins, err)
				}
				if sh, _ := r.Single(); sh != res.rows[i].shard {
					t.Errorf("%s %s: key %q: COPY row %q to %s, Route says %v", kv.table, form, v, res.rows[i].row, res.rows[i].shard, r)
				}
				shards[res.rows[i].shard] = true
			}
			if len(shards) < 2 {
				t.Errorf("%s: every value on one shard; the test wants several", kv.table)
			}
		}
	}
}

func TestCopySplitterLifecycle(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	p := mustPlan(t, a, m, "COPY stores (region, name) FROM STDIN")
	s := p.NewSplitter(RouteOptions{})
	var got []string
	emit := func(shard string, rows []byte) error {
		got = append(got, shard+":"+string(rows))
		return nil
	}
	if err := s.Write([]byte("eu\ta\nus\tb\n"), emit); err != nil || len(got) != 0 {
		t.Fatalf("small rows emitted before Flush: %v %q", err, got)
	}
	if err := s.Flush(emit); err != nil || strings.Join(got, "|") != "s0:eu\ta\n|s1:us\tb\n" {
		t.Fatalf("Flush: %v %q", err, got)
	}
	got = nil
	if err := s.Write([]byte("uk\tc"), emit); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(emit); err != nil || strings.Join(got, "|") != "s0:uk\tc" {
		t.Fatalf("Close: %v %q", err, got)
	}
	if err := s.Write([]byte("x"), emit); errCode(err) != CodeInternal {
		t.Fatalf("Write after Close: %v", err)
	}
	// An emit error stops the splitter.
	s = p.NewSplitter(RouteOptions{})
	boom := errors.New("boom")
	big := bytes.Repeat([]byte("eu\tx\n"), copyFlushBytes/5+1)
	if err := s.Write(big, func(string, []byte) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("emit error: %v", err)
	}
	if err := s.Close(emit); !errors.Is(err, boom) {
		t.Fatalf("Close after an emit error: %v", err)
	}
	// Large inputs are emitted in batches of about copyFlushBytes.
	s = p.NewSplitter(RouteOptions{})
	n := 0
	total := 0
	err := s.Write(big, func(shard string, rows []byte) error {
		n++
		total += len(rows)
		if shard != "s0" || len(rows) < copyFlushBytes || len(rows) > copyFlushBytes+5 {
			t.Errorf("batch of %d bytes for %s", len(rows), shard)
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Fatalf("big write: %v, %d emits", err, n)
	}
	if err := s.Close(func(_ string, rows []byte) error { total += len(rows); return nil }); err != nil || total != len(big) {
		t.Fatalf("Close: %v, %d bytes of %d", err, total, len(big))
	}
}

func TestCopySplitRowLimit(t *testing.T) {
	t.Parallel()
	m := splitMap(t)
	a := NewAnalyzer(Config{})
	p := mustPlan(t, a, m, "COPY stores (region, name) FROM STDIN (FORMAT csv)")
	p.maxRow = 1 << 20
	s := p.NewSplitter(RouteOptions{})
	chunk := bytes.Repeat([]byte("x"), 1<<16)
	var err error
	if err = s.Write([]byte("eu,\""), nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= 16 && err == nil; i++ {
		err = s.Write(chunk, nil)
	}
	if errCode(err) != CodeProgramLimit {
		t.Fatalf("a row past MaxCopyRow: %v", err)
	}
}

// copyBenchData is n text rows of orders.
func copyBenchData(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%d\t%d\tnote number %d with some text\t2026-01-%02d 10:00:00+00\n", i, i*7919%100000, i, i%28+1)
	}
	return b.Bytes()
}

func BenchmarkCopySplit(b *testing.B) {
	m := splitMap(b)
	a := NewAnalyzer(Config{})
	for _, bc := range []struct{ name, sql string }{
		{"text", "COPY orders (id, customer_id, note, created_at) FROM STDIN"},
		{"csv", "COPY orders (id, customer_id, note, created_at) FROM STDIN (FORMAT csv, DELIMITER E'\\t')"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := mustPlan(b, a, m, bc.sql)
			data := copyBenchData(100_000)
			emit := func(string, []byte) error { return nil }
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s := p.NewSplitter(RouteOptions{})
				for off := 0; off < len(data); off += 65536 {
					if err := s.Write(data[off:min(off+65536, len(data))], emit); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.Close(emit); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzCopySplit: no input makes the splitter panic or depend on how the
// data is cut; the rows it reports are the input, in order; each shard
// gets the header and exactly its rows; and a row alone goes where it
// went among the others.
func FuzzCopySplit(f *testing.F) {
	m := splitMap(f)
	a := NewAnalyzer(Config{})
	sqls := []string{
		"COPY items (code, n) FROM STDIN",
		"COPY items (n, code) FROM STDIN (HEADER)",
		"COPY items (code, n) FROM STDIN (FORMAT csv)",
		"COPY items (n, code) FROM STDIN (FORMAT csv, HEADER, ESCAPE '\\')",
		"COPY items (code, n) FROM STDIN (FORMAT binary)",
		"COPY stores (n, region) FROM STDIN (FORMAT csv, QUOTE '.', DELIMITER '|')",
		"COPY countries (code) FROM STDIN",
	}
	plans := make([]*CopyPlan, len(sqls))
	for i, q := range sqls {
		plans[i] = mustPlan(f, a, m, q)
	}
	for _, c := range copyCases {
		f.Add([]byte(c.data), uint8(0), uint8(3))
		f.Add([]byte(c.data), uint8(2), uint8(1))
	}
	for _, c := range binaryCases(f) {
		f.Add([]byte(c.data), uint8(4), uint8(5))
	}
	f.Add([]byte("a\\.\n"), uint8(0), uint8(2))
	f.Add([]byte("x|.eu\n.\r\n\\.\r\n"), uint8(5), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, mode, chunk uint8) {
		p := plans[int(mode)%len(plans)]
		whole := runCopy(p, RouteOptions{}, data)
		var chunks [][]byte
		for i, n := 0, int(chunk%64)+1; i < len(data); i += n {
			chunks = append(chunks, data[i:min(i+n, len(data))])
		}
		cut := runCopy(p, RouteOptions{}, chunks...)
		if errCode(cut.err) != errCode(whole.err) || fmt.Sprint(cut.rows) != fmt.Sprint(whole.rows) ||
			(whole.err == nil && fmt.Sprint(cut.out) != fmt.Sprint(whole.out)) {
			t.Fatalf("cut in %d-byte chunks: %v %q; whole: %v %q", int(chunk%64)+1, cut.err, cut.rows, whole.err, whole.rows)
		}
		if whole.err != nil {
			var re *RouteError
			if !errors.As(whole.err, &re) {
				t.Fatalf("error %T %v is not a *RouteError", whole.err, whole.err)
			}
			return
		}
		sp := whole.sp
		// The header and rows are the input (up to the end marker).
		var got []byte
		got = append(got, sp.header...)
		for _, r := range whole.rows {
			got = append(got, r.row...)
		}
		if sp.done && p.Format != CopyBinary {
			// "abc\." ends the data after the line abc, which the
			// splitter ends with a line ending of its own.
			got = bytes.TrimRight(got, "\r\n")
		}
		if !bytes.HasPrefix(data, got) || (!sp.done && len(got) != len(data)) {
			t.Fatalf("rows %q with header %q are not the input %q", whole.rows, sp.header, data)
		}
		// Each shard got the header and its rows, in order.
		want := map[string][]byte{}
		for _, r := range whole.rows {
			if sp.bcast != nil {
				for _, rk := range sp.bcast {
					sh := sp.rc.mi.names[rk]
					if want[sh] == nil {
						want[sh] = append([]byte{}, sp.header...)
					}
					want[sh] = append(want[sh], r.row...)
				}
				continue
			}
			if want[r.shard] == nil {
				want[r.shard] = append([]byte{}, sp.header...)
			}
			want[r.shard] = append(want[r.shard], r.row...)
		}
		if fmt.Sprint(want) != fmt.Sprint(whole.out) {
			t.Fatalf("emitted %q, want %q", whole.out, want)
		}
		// A row alone lands where it landed among the others.
		if sp.fixed < 0 && sp.bcast == nil {
			for _, r := range whole.rows {
				alone := runCopy(p, RouteOptions{}, append(append([]byte{}, sp.header...), r.row...))
				if alone.err != nil || len(alone.rows) != 1 || alone.rows[0].shard != r.shard {
					t.Fatalf("row %q alone: %v %q; among others it went to %s", r.row, alone.err, alone.rows, r.shard)
				}
			}
		}
	})
}
