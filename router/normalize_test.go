package router

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sql   string
		shape string
		lits  []string // literal texts
	}{
		{"SELECT * FROM t WHERE id = 42", "select * from t where id = $?", []string{"42"}},
		{"select *\n  from T where ID=43 ", "select * from t where id = $?", []string{"43"}},
		{"SELECT * FROM t WHERE id = $1", "select * from t where id = $1", nil},
		{"SELECT 'a', E'b\\'c', $$d$$, B'1', X'f', N'n', U&'u', 1.5e3", "select $?, $?, $?, $?, $?, $?, $?, $?",
			[]string{"'a'", `E'b\'c'`, "$$d$$", "B'1'", "X'f'", "N'n'", "U&'u'", "1.5e3"}},
		{"/* shardwire: role=primary */ SELECT 1 -- x", "select $?", []string{"1"}},
		{`SELECT "Mixed""Case", count(*) FROM "T"`, `select "Mixed""Case", count(*) from "T"`, nil},
		{"SELECT a.b::text, f ( x ) , y[1:2] FROM s . t", "select a.b::text, f(x), y[$?:$?] from s.t", []string{"1", "2"}},
		{"SELECT - 1, -1, a - -1, a-1", "select - $?, - $?, a - - $?, a - $?", []string{"1", "1", "1", "1"}},
		{"SELECT true, false, null", "select true, false, null", nil},
		{"SELECT x FROM t WHERE x IN (1, 2, 3)", "select x from t where x in($?, $?, $?)", []string{"1", "2", "3"}},
		{"SELECT 'a'\n'b'", "select $?", []string{"'a'\n'b'"}},
		{"SELECT $1, $2 $? , $ x", "select $1, $2 $?, $ x", nil},
		{"SELECT a::  int, b . c, x := 1, (a)[1][2]", "select a::int, b.c, x := $?, (a)[$?][$?]", []string{"1", "1", "2"}},
		{"select a : : b, c : := d", "select a: :b, c: := d", nil},
		{"SELECT 1;SELECT 2;", "select $?; select $?;", []string{"1", "2"}},
		{"SELECT x FROM t WHERE d = DATE '2024-01-01' AND i > interval '1 day'", "select x from t where d = date $? and i > interval $?", []string{"'2024-01-01'", "'1 day'"}},
		{"SELECT 'unterminated", "select $?", []string{"'unterminated"}},
		{"", "", nil},
		{"   -- only a comment", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			t.Parallel()
			shape, lits := Normalize(tt.sql)
			if shape != tt.shape {
				t.Errorf("shape = %q, want %q", shape, tt.shape)
			}
			var texts []string
			for _, l := range lits {
				texts = append(texts, l.Text(tt.sql))
			}
			if strings.Join(texts, "|") != strings.Join(tt.lits, "|") {
				t.Errorf("literals = %q, want %q", texts, tt.lits)
			}
			again, more := Normalize(shape)
			if again != shape || len(more) != 0 {
				t.Errorf("Normalize(shape) = %q, %d literals; want %q unchanged", again, len(more), shape)
			}
		})
	}
}

func TestNormalizeSameShape(t *testing.T) {
	t.Parallel()
	groups := [][]string{
		{"SELECT * FROM t WHERE id = 42", "select * from t where id = 43", "SELECT *\nFROM t /* c */ WHERE id = 'x'", "Select * From T Where Id = $$y$$"},
		{"UPDATE a SET b = b + 5 WHERE c = 1", "update a set b=b+ 7 where c=2"},
		{"/* shardwire: key=1 */ SELECT * FROM o WHERE k = 1", "/* shardwire: key=2 */ SELECT * FROM o WHERE k = 2"},
	}
	for _, g := range groups {
		want, _ := Normalize(g[0])
		for _, sql := range g[1:] {
			if got, _ := Normalize(sql); got != want {
				t.Errorf("Normalize(%q) = %q, want %q (same as %q)", sql, got, want, g[0])
			}
		}
	}
	// Statements that must not share a shape.
	distinct := []string{
		"SELECT * FROM t WHERE id = 42",
		"SELECT * FROM t WHERE id = $1",
		"SELECT * FROM t WHERE id = \"x\"",
		"SELECT * FROM t WHERE id = x",
		"SELECT * FROM T WHERE id = 42 FOR UPDATE",
		"COPY t TO STDOUT",
		"COPY t TO '/tmp/x'",
		"EXPLAIN (ANALYZE true) DELETE FROM t",
		"EXPLAIN (ANALYZE false) DELETE FROM t",
		"SELECT a - -1",
		"SELECT a --1",
	}
	seen := map[string]string{}
	for _, sql := range distinct {
		shape, _ := Normalize(sql)
		if other, ok := seen[shape]; ok {
			t.Errorf("%q and %q share shape %q", sql, other, shape)
		}
		seen[shape] = sql
	}
}

func TestAppendNormalizeNoAlloc(t *testing.T) {
	sql := "SELECT abalance FROM pgbench_accounts WHERE aid = 123"
	buf := make([]byte, 0, 256)
	lits := make([]Literal, 0, 8)
	allocs := testing.AllocsPerRun(100, func() {
		buf, lits = AppendNormalize(buf[:0], lits[:0], sql)
	})
	if allocs != 0 {
		t.Errorf("AppendNormalize allocates %v times per call, want 0", allocs)
	}
}

func TestLiteralValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sql  string // one literal
		want string
		err  bool
	}{
		{"42", "42", false},
		{"1_000_000", "1000000", false},
		{"0x1F", "31", false},
		{"0o17", "15", false},
		{"0b101", "5", false},
		{"0x_FFFF_FFFF_FFFF_FFFF_F", "0xFFFFFFFFFFFFFFFFF", false}, // too big for 64 bits: kept in hex
		{"1.5e3", "1.5e3", false},
		{"'it''s'", "it's", false},
		{`'back\slash'`, `back\slash`, false},
		{"'a'\n'b'", "ab", false},
		{"'a' -- it's a comment\n'b'", "ab", false},
		{`E'a\'b\\c\n\t\x41\101\u00e9\U0001F600'`, "a'b\\c\n\tAAé😀", false},
		{`E'\uD83D\uDE00'`, "😀", false},
		{`E'\uD83D'`, "", true},
		{`E'\q'`, "q", false},
		{"N'nat'", "nat", false},
		{`U&'d\0061t\+000061'`, "data", false},
		{`U&'d!0061t' UESCAPE '!'`, "dat", false},
		{`U&'a\\b'`, `a\b`, false},
		{`U&'\zzzz'`, "", true},
		{"$$a'b$$", "a'b", false},
		{"$tag$a$$b$tag$", "a$$b", false},
		{"B'0101'", "0101", false},
		{"X'1F'", "1F", false},
		{"'unterminated", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			t.Parallel()
			_, lits := Normalize(tt.sql)
			if len(lits) != 1 {
				t.Fatalf("Normalize(%q) found %d literals, want 1", tt.sql, len(lits))
			}
			got, err := lits[0].Value(tt.sql)
			if (err != nil) != tt.err {
				t.Fatalf("Value error = %v, want error %v", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Errorf("Value = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLiteralValueOutOfRange(t *testing.T) {
	t.Parallel()
	l := Literal{Kind: LitString, Start: 3, End: 10}
	if _, err := l.Value("short"); err == nil {
		t.Error("Value of a literal outside the statement did not fail")
	}
}
