package router

import (
	"fmt"
	"strings"
	"testing"
)

// tokens lexes src and renders each token as Kind:text (flags in braces).
func tokens(src string) []string {
	var lx Lexer
	lx.Reset(src)
	var out []string
	for t := lx.Next(); t.Kind != TokEOF; t = lx.Next() {
		s := t.Kind.String() + ":" + t.Text(src)
		if t.Flags != 0 {
			s += fmt.Sprintf("{%#x}", t.Flags)
		}
		out = append(out, s)
	}
	return out
}

func TestLexer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		src  string
		want string // tokens joined by " | "
	}{
		{"SELECT 1", "Ident:SELECT | Number:1"},
		{"select a.b, \"C\"\"d\" from t;", `Ident:select | Ident:a | Punct:. | Ident:b | Punct:, | QuotedIdent:"C""d" | Ident:from | Ident:t | Punct:;`},
		{"'it''s'", "String:'it''s'"},
		{`'a\'`, `String:'a\'`}, // standard strings: backslash is literal
		{`E'a\'b' x`, `String:E'a\'b'{0x2} | Ident:x`},
		{`e'\\' x`, `String:e'\\'{0x2} | Ident:x`},
		{`N'nat'`, `String:N'nat'{0x4}`},
		{`U&'d\0061t' UESCAPE '!' x`, `String:U&'d\0061t' UESCAPE '!'{0x18} | Ident:x`},
		{`U&"ident" y`, `QuotedIdent:U&"ident"{0x8} | Ident:y`},
		{`u & 'x'`, `Ident:u | Op:& | String:'x'`},
		{`B'0101' X'1f'`, `BitString:B'0101' | BitString:X'1f'{0x40}`},
		{"$$a'b$$ $tag$x$$y$tag$ $1 $23", "String:$$a'b$${0x20} | String:$tag$x$$y$tag${0x20} | Param:$1 | Param:$23"},
		{"a$b$c", "Ident:a$b$c"},
		{"$?", "Placeholder:$?"},
		{"$ x", "Other:$ | Ident:x"},
		{"1 1.5 .5 1. 1e10 1.5E-3 0x1F 0o17 0b101 1_000 0x_ff", "Number:1 | Number:1.5 | Number:.5 | Number:1. | Number:1e10 | Number:1.5E-3 | Number:0x1F | Number:0o17 | Number:0b101 | Number:1_000 | Number:0x_ff"},
		{"1..5", "Number:1 | Punct:.. | Number:5"},
		{"1e", "Number:1 | Ident:e"},
		{"123abc", "Number:123 | Ident:abc"},
		{"0x", "Number:0 | Ident:x"},
		{"1_", "Number:1 | Ident:_"},
		{"a::int[]", "Ident:a | Punct::: | Ident:int | Punct:[ | Punct:]"},
		{"x := 1", "Ident:x | Punct::= | Number:1"},
		{"a<>b a!=b a>=b", "Ident:a | Op:<> | Ident:b | Ident:a | Op:!= | Ident:b | Ident:a | Op:>= | Ident:b"},
		{"a=-1", "Ident:a | Op:= | Op:- | Number:1"},
		{"a@-1", "Ident:a | Op:@- | Number:1"}, // @ keeps the trailing -
		{"a+-b", "Ident:a | Op:+ | Op:- | Ident:b"},
		{"a--comment\nb", "Ident:a | Comment:--comment | Ident:b"},
		{"a=--c\n1", "Ident:a | Op:= | Comment:--c | Number:1"},
		{"a*/*c*/b", "Ident:a | Op:* | Comment:/*c*/ | Ident:b"},
		{"/* a /* nested */ still */ x", "Comment:/* a /* nested */ still */ | Ident:x"},
		{"'a'\n'b' 'c' 'd'", "String:'a'\n'b'{0x80} | String:'c' | String:'d'"},
		{"'a' -- note\n  'b'", "String:'a' -- note\n  'b'{0x80}"},
		{"E'a'\n'\\n'", "String:E'a'\n'\\n'{0x82}"},
		{"jsonb ? 'k' ?| ?&", "Ident:jsonb | Op:? | String:'k' | Op:?| | Op:?&"},
		{"{}\\", "Other:{ | Other:} | Other:\\"},
		{"héllo wörld", "Ident:héllo | Ident:wörld"},
		// Unterminated input runs to the end.
		{"'abc", "String:'abc{0x1}"},
		{`E'abc\`, `String:E'abc\{0x3}`},
		{`"abc`, `QuotedIdent:"abc{0x1}`},
		{"/* abc", "Comment:/* abc{0x1}"},
		{"$q$ abc", "String:$q$ abc{0x21}"},
		{"B'01", "BitString:B'01{0x1}"},
		{"U&'x", "String:U&'x{0x9}"},
		{"", ""},
		{"  \t\n ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			t.Parallel()
			got := strings.Join(tokens(tt.src), " | ")
			if got != tt.want {
				t.Errorf("tokens(%q)\n got: %s\nwant: %s", tt.src, got, tt.want)
			}
		})
	}
}

// checkLexerInvariants verifies that tokens are in order, non-empty, within
// src, separated only by whitespace, and that the lexer stops.
func checkLexerInvariants(t *testing.T, src string) {
	t.Helper()
	var lx Lexer
	lx.Reset(src)
	pos := 0
	for i := 0; ; i++ {
		if i > len(src)+1 {
			t.Fatalf("lexer did not stop on %q", src)
		}
		tok := lx.Next()
		if tok.Start < pos || tok.End < tok.Start || tok.End > len(src) {
			t.Fatalf("token %+v out of order or bounds (pos %d, len %d) in %q", tok, pos, len(src), src)
		}
		for _, c := range []byte(src[pos:tok.Start]) {
			if !isSpace(c) {
				t.Fatalf("byte %q between tokens skipped in %q", c, src)
			}
		}
		if tok.Kind == TokEOF {
			if tok.Start != len(src) {
				t.Fatalf("EOF at %d, not at end %d of %q", tok.Start, len(src), src)
			}
			return
		}
		if tok.End == tok.Start {
			t.Fatalf("empty token %+v in %q", tok, src)
		}
		pos = tok.End
	}
}

func TestLexerInvariants(t *testing.T) {
	t.Parallel()
	for _, src := range lexerSeeds {
		checkLexerInvariants(t, src)
		// Every prefix: truncated input must not confuse the lexer.
		for i := range src {
			checkLexerInvariants(t, src[:i])
		}
	}
}

// lexerSeeds is shared with the fuzz targets.
var lexerSeeds = []string{
	"SELECT abalance FROM pgbench_accounts WHERE aid = 123",
	"UPDATE pgbench_accounts SET abalance = abalance + -42 WHERE aid = 7;",
	`SELECT E'\'', 'a''b', $x$ $ $x$, U&'\0041' UESCAPE '!', B'01', X'ff', "q""i"`,
	"/* shardwire: role=replica */ SELECT 1 -- trailing",
	"SELECT 1e10, .5, 0x1F, 1_000, $1::int[] FROM t WHERE a <> b AND c !~~* 'x'",
	"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3",
	"/* /* nested */ */ 'a'\n'b' E'\\",
	"SET search_path TO \"$user\", public; RESET ALL; DISCARD ALL",
	"$1$2$$$a$$$",
}
