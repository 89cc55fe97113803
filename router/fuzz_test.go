package router

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/shardwire/shardwire/shardmap"
)

func addSeeds(f *testing.F) {
	for _, s := range lexerSeeds {
		f.Add(s)
	}
	for _, c := range classifyCases {
		f.Add(c.sql)
	}
	for _, s := range []string{
		"SET search_path = a, -- c\n b", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY, DEFERRABLE",
		"/* shardwire: role=primary, key='a''b' */ SELECT 1", "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
		"SELECT set_config('a', 'b', (true))", "U&'\\+01F600' UESCAPE '\\'", "E'\\uD83D\\uDE00'",
		"'a' -- x\n'b'", "$?$?", "x$?", "1..2", "a : : b", ". . .", "-/**/-", "$a$ $a", "\"\"\"",
		// inspectPlain's territory and its edges.
		"SELECT abalance FROM pgbench_accounts WHERE aid = 42;", " update t set a = a + -1 where b <= 2 ;  ",
		"delete from t where a >= 1.5e3", "SELECT a INTO b FROM c", "select *, t.* from t", "select 1 -- c",
		"select 1; select 2", "selectx 1", "SELECT 1 - -1", "select\r\n\t1", "select a=-b", "select 1;;",
	} {
		f.Add(s)
	}
}

// kindsOf lexes src and returns the token kinds without comments, literal
// kinds mapped to TokPlaceholder (what Normalize writes for them).
func kindsOf(src string) []TokenKind {
	var lx Lexer
	lx.Reset(src)
	var out []TokenKind
	for t := lx.Next(); t.Kind != TokEOF; t = lx.Next() {
		switch t.Kind {
		case TokComment:
			continue
		case TokNumber, TokString, TokBitString:
			out = append(out, TokPlaceholder)
		default:
			out = append(out, t.Kind)
		}
	}
	return out
}

func FuzzLexer(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, src string) {
		checkLexerInvariants(t, src)
	})
}

func FuzzNormalize(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, sql string) {
		shape, lits := Normalize(sql)
		// Idempotent on shapes, and a shape has no literals left.
		again, more := Normalize(shape)
		if again != shape || len(more) != 0 {
			t.Fatalf("Normalize(%q) = %q, then %q with %d literals", sql, shape, again, len(more))
		}
		// The shape scans to the same tokens, literals as placeholders:
		// spacing never merges or splits tokens.
		if got, want := kindsOf(shape), kindsOf(sql); !reflect.DeepEqual(got, want) {
			t.Fatalf("shape %q of %q scans to %v, want %v", shape, sql, got, want)
		}
		// Literals are in order, within sql, and each scans as one literal.
		end := 0
		for _, l := range lits {
			if l.Start < end || l.End <= l.Start || l.End > len(sql) {
				t.Fatalf("literal %+v out of order or bounds in %q", l, sql)
			}
			end = l.End
			var lx Lexer
			lx.Reset(sql[l.Start:l.End])
			tok := lx.Next()
			if tok.End != l.End-l.Start || (tok.Kind != TokNumber && tok.Kind != TokString && tok.Kind != TokBitString) {
				t.Fatalf("literal %q of %q rescans as %v %q", l.Text(sql), sql, tok.Kind, tok.Text(lx.src))
			}
			_, _ = l.Value(sql) // must not panic
		}
		// Spacing outside tokens does not matter (unless the input ends
		// inside a token, which then takes in the space).
		if !endsInside(sql) {
			if s2, _ := Normalize(" \n" + sql + "\t "); s2 != shape {
				t.Fatalf("surrounding space changed the shape of %q: %q vs %q", sql, shape, s2)
			}
		}
	})
}

func FuzzInspect(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, sql string) {
		stmts := Inspect(sql).Statements
		if len(stmts) == 0 {
			t.Fatalf("Inspect(%q) returned no statements", sql)
		}
		if stmts[0].Command == CmdEmpty && len(stmts) != 1 {
			t.Fatalf("Inspect(%q): CmdEmpty among %d statements", sql, len(stmts))
		}
		end := 0
		for i, s := range stmts {
			if s.Command == CmdEmpty {
				continue
			}
			if s.Start < end || s.End < s.Start || s.End > len(sql) {
				t.Fatalf("statement %d [%d:%d] out of order or bounds in %q", i, s.Start, s.End, sql)
			}
			end = s.End
			if s.Set.Name != "" || s.Set.ResetAll {
				if s.Set.SQL() == "" {
					t.Fatalf("empty SQL() for %+v", s.Set)
				}
			}
			if s.Hints.Err != nil && s.Hints.Err.Error() == "" {
				t.Fatal("hint error without a message")
			}
		}
		// The allocation-free form agrees.
		buf := make([]Statement, 0, 2)
		if got := AppendInspect(buf, sql); !reflect.DeepEqual(got, stmts) {
			t.Fatalf("AppendInspect and Inspect disagree on %q", sql)
		}
		// So does the lexer where the shortcut answers.
		if st, ok := inspectPlain(sql); ok {
			if lexed := appendInspectLexed(nil, sql); !reflect.DeepEqual(lexed, []Statement{st}) {
				t.Fatalf("inspectPlain(%q) = %+v, the lexer says %+v", sql, st, lexed)
			}
		}
	})
}

func FuzzClassify(f *testing.F) {
	addSeeds(f)
	a := NewAnalyzer(Config{CacheBytes: 1 << 20})
	f.Fuzz(func(t *testing.T, sql string) {
		an := a.Classify(sql)
		if an == nil {
			t.Fatal("nil analysis")
		}
		if shape, _ := Normalize(sql); an.Shape != shape {
			t.Fatalf("analysis shape %q, Normalize gives %q", an.Shape, shape)
		}
		switch an.Class {
		case ClassRead:
			if an.Reason != "" {
				t.Fatalf("read with reason %q", an.Reason)
			}
		case ClassWrite, ClassUnknown:
			if an.Reason == "" {
				t.Fatalf("%v without reason for %q", an.Class, sql)
			}
		default:
			t.Fatalf("class %d", an.Class)
		}
	})
}

// endsInside reports whether src ends inside an unterminated token.
func endsInside(src string) bool {
	var lx Lexer
	lx.Reset(src)
	for t := lx.Next(); t.Kind != TokEOF; t = lx.Next() {
		if t.Flags&FlagUnterminated != 0 {
			return true
		}
	}
	return false
}

// FuzzRoute routes arbitrary SQL with an arbitrary first bind parameter
// and key hint against the spec's map: Route must not panic, its answers
// must be well formed, and an analysis cached for a sibling statement (the
// same shape with other numbers at other offsets) must route this
// statement exactly as a fresh analysis of it does.
func FuzzRoute(f *testing.F) {
	for _, c := range routeCases {
		f.Add(c.sql, []byte("44"), false, uint32(0), "")
	}
	for _, c := range classifyCases {
		f.Add(c.sql, []byte{0, 0, 0, 0, 0, 0, 0, 44}, true, uint32(20), "")
	}
	for _, s := range lexerSeeds {
		f.Add(s, []byte(nil), false, uint32(0), "")
	}
	f.Add("SELECT * FROM orders WHERE customer_id = ANY($1)", []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 44}, true, uint32(1016), "")
	f.Add("SELECT * FROM orders WHERE customer_id = ANY($1)", []byte(`{1,"2",NULL,{3}}`), false, uint32(0), "")
	f.Add("SELECT process(1)", []byte(nil), false, uint32(0), "42")
	spec, _ := testMaps(f)
	f.Fuzz(func(t *testing.T, sql string, p []byte, bin bool, oid uint32, key string) {
		params := fakeParams{{v: p, bin: bin, oid: oid}, {v: p}}
		opt := RouteOptions{Key: key, HasKey: key != ""}
		fresh := NewAnalyzer(Config{CacheBytes: 1 << 20})
		var s Scratch
		an := fresh.ClassifyWith(&s, sql)
		r, err := fresh.Route(an, sql, s.Literals(), params, spec, opt)
		checkRouteResult(t, spec, sql, r, err)

		primed := NewAnalyzer(Config{CacheBytes: 1 << 20})
		primed.Classify(sibling(sql))
		an2 := primed.ClassifyWith(&s, sql)
		r2, err2 := primed.Route(an2, sql, s.Literals(), params, spec, opt)
		checkRouteResult(t, spec, sql, r2, err2)
		if an.keys == nil {
			return // not parsed on its own: the sibling's analysis may differ
		}
		if got, want := routeSummary(r2, err2), routeSummary(r, err); got != want {
			t.Fatalf("%q: routed %s with a sibling's cached analysis (%s), %s with its own (%s)",
				sql, got, an2.keys, want, an.keys)
		}
	})
}

func routeSummary(r Route, err error) string {
	if err != nil {
		var re *RouteError
		if errors.As(err, &re) {
			return "error " + re.Code
		}
		return "error ?"
	}
	return fmt.Sprintf("%v any=%v by=%v", r.Shards, r.AnyShard, r.By)
}

func checkRouteResult(t *testing.T, m *shardmap.Map, sql string, r Route, err error) {
	t.Helper()
	if err != nil {
		var re *RouteError
		if !errors.As(err, &re) || len(re.Code) != 5 || !strings.HasPrefix(re.Msg, "shardwire: ") {
			t.Fatalf("%q: malformed error %#v", sql, err)
		}
		return
	}
	if len(r.Shards) == 0 {
		t.Fatalf("%q: route without shards: %+v", sql, r)
	}
	for i, s := range r.Shards {
		if !m.HasShard(s) || (i > 0 && r.Shards[i-1] >= s) {
			t.Fatalf("%q: shards %v unknown, unsorted or repeated", sql, r.Shards)
		}
	}
	if r.NoTables && !r.Default {
		t.Fatalf("%q: NoTables without Default: %+v", sql, r)
	}
	if r.Default && (len(r.Shards) != 1 || r.Shards[0] != m.DefaultShard()) {
		t.Fatalf("%q: Default route to %v", sql, r.Shards)
	}
}
