package proxy

import (
	"slices"
	"strings"
	"testing"

	"github.com/shardwire/shardwire/router"
)

// TestSurvivingChanges replays the effects of a transaction block's
// statements (one Query each, or several statements in one) and checks which
// SETs outlive the block.
func TestSurvivingChanges(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		queries []string
		want    []string // surviving SET values of statement_timeout, in order
	}{
		{"plain sets", []string{"SET statement_timeout = 1", "SET statement_timeout = 2"}, []string{"1", "2"}},
		{"rollback to undoes later sets", []string{"SET statement_timeout = 1", "SAVEPOINT a", "SET statement_timeout = 2", "ROLLBACK TO a"}, []string{"1"}},
		{"rollback to keeps the savepoint", []string{"SAVEPOINT a", "SET statement_timeout = 1", "ROLLBACK TO a", "SET statement_timeout = 2", "ROLLBACK TO SAVEPOINT a"}, nil},
		{"release keeps", []string{"SAVEPOINT a", "SET statement_timeout = 1", "RELEASE a"}, []string{"1"}},
		{"release drops later savepoints", []string{"SAVEPOINT a", "SAVEPOINT b", "SET statement_timeout = 1", "RELEASE a", "ROLLBACK TO b"}, []string{"1"}},
		{"newest of a name", []string{"SAVEPOINT a", "SET statement_timeout = 1", "SAVEPOINT a", "SET statement_timeout = 2", "ROLLBACK TO a"}, []string{"1"}},
		{"released newest uncovers older", []string{"SAVEPOINT a", "SET statement_timeout = 1", "SAVEPOINT a", "RELEASE SAVEPOINT a", "ROLLBACK TO a"}, nil},
		{"unknown savepoint undoes nothing", []string{"SET statement_timeout = 1", "ROLLBACK TO nowhere"}, []string{"1"}},
		{"quoted names are exact", []string{`SAVEPOINT "A"`, "SET statement_timeout = 1", "ROLLBACK TO a", `ROLLBACK TO "A"`}, nil},
		{"one query string", []string{"SET statement_timeout = 1; SAVEPOINT s; SET statement_timeout = 2; ROLLBACK TO s; SET statement_timeout = 3"}, []string{"1", "3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var effects []*queryEffects
			for _, q := range tc.queries {
				if e := analyzeQuery(q); e != nil {
					effects = append(effects, e)
				}
			}
			// Split anywhere between txnEffects and cycleEffects: same answer.
			for cut := 0; cut <= len(effects); cut++ {
				var got []string
				for _, sc := range survivingChanges(nil, effects[:cut], effects[cut:]) {
					if sc.kind != changeSet || sc.name != "statement_timeout" {
						t.Fatalf("unexpected change %+v", sc)
					}
					got = append(got, strings.TrimPrefix(sc.sql, `SET "statement_timeout" = `))
				}
				if !slices.Equal(got, tc.want) {
					t.Fatalf("cut %d: surviving %q, want %q", cut, got, tc.want)
				}
			}
		})
	}
}

// TestQueryEffectSteps: a Query string of several statements keeps each
// statement's effects apart, one per CommandComplete the server will send, so
// that a COMMIT or ROLLBACK in the string decides for those before it.
func TestQueryEffectSteps(t *testing.T) {
	t.Parallel()
	cases := []struct {
		sql  string
		want []string // per statement: the names it sets, "discard", or "" for none; nil: no steps
	}{
		{"SET statement_timeout = 1", nil},
		{"SELECT 1; SELECT 2", nil},
		{"BEGIN; SET a.b = 1; COMMIT; SET a.c = 2", []string{"", "a.b", "", "a.c"}},
		{"BEGIN; SET a.b = 1; COMMIT; BEGIN; SET a.c = 2; ROLLBACK", []string{"", "a.b", "", "", "a.c", ""}},
		{"SELECT 1;; SET a.b = 1;", []string{"", "a.b"}},
		{"SET a.b = 1; SAVEPOINT s; DISCARD ALL", []string{"a.b", "s", "discard"}},
		{"DISCARD ALL; SET a.b = 1; DISCARD ALL", []string{"discard", "a.b", "discard"}},
	}
	for _, tc := range cases {
		e := analyzeQuery(tc.sql)
		var got []string
		if e != nil && e.steps != nil {
			got = []string{}
			for _, st := range e.steps {
				var parts []string
				if st != nil {
					for _, sc := range st.sets {
						parts = append(parts, sc.name)
					}
					if st.discardAll {
						parts = append(parts, "discard")
					}
				}
				got = append(got, strings.Join(parts, ","))
			}
		}
		if !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("%q: steps %q, want %q", tc.sql, got, tc.want)
		}
	}
}

// TestPinLabel: every reason the router gives has its own metrics label.
func TestPinLabel(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, reason := range []string{router.PinPrepare, router.PinListen, router.PinAdvisoryLock, router.PinWithHold, router.PinTemp, router.PinSetConfig, router.PinLoad} {
		label := pinLabel(reason)
		if label == "other" {
			t.Errorf("%q has no label of its own", reason)
		}
		if prev, dup := seen[label]; dup {
			t.Errorf("%q and %q share the label %q", prev, reason, label)
		}
		seen[label] = reason
	}
}
