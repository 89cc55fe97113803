package router

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestPlanCopyOut(t *testing.T) {
	t.Parallel()
	spec, _ := testMaps(t)
	a := NewAnalyzer(Config{})
	all := spec.Table
	ordersShards := func() []string { tb, _ := all("orders"); return tb.Shards() }()
	cases := []struct {
		sql    string
		format CopyFormat
		header bool
		refuse string // fragment of the refusal
	}{
		{sql: "COPY orders TO STDOUT", format: CopyText},
		{sql: "COPY orders (customer_id, total) TO STDOUT WITH (FORMAT csv, HEADER)", format: CopyCSV, header: true},
		{sql: "COPY orders TO STDOUT CSV HEADER", format: CopyCSV, header: true},
		{sql: "COPY orders TO STDOUT (FORMAT binary)", format: CopyBinary},
		{sql: "COPY (SELECT customer_id, total FROM orders WHERE total > 10) TO STDOUT", format: CopyText},
		{sql: "COPY (SELECT * FROM orders ORDER BY total) TO STDOUT", refuse: "only concatenates"},
		{sql: "COPY (SELECT count(*) FROM orders) TO STDOUT", refuse: "only concatenates"},
		{sql: "COPY (SELECT * FROM orders LIMIT 5) TO STDOUT", refuse: "only concatenates"},
		{sql: "COPY (SELECT * FROM orders WHERE customer_id = 42) TO STDOUT", refuse: "does not span"},
		{sql: "COPY countries TO STDOUT", refuse: "not sharded"},
		{sql: "COPY orders FROM STDIN", refuse: "not a COPY … TO"},
		{sql: "COPY orders TO '/tmp/x'", refuse: "file or program"},
		{sql: "SELECT 1", refuse: "not a COPY"},
		{sql: "COPY orders TO STDOUT; COPY orders TO STDOUT", refuse: "only statement"},
	}
	for _, c := range cases {
		p, err := a.PlanCopyOut(c.sql, spec)
		if c.refuse != "" {
			var re *RouteError
			if !errors.As(err, &re) || !strings.Contains(re.Msg, c.refuse) {
				t.Errorf("%s: want a refusal with %q, got %+v %v", c.sql, c.refuse, p, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if p.Format != c.format || p.Header != c.header || !slices.Equal(p.Shards, ordersShards) {
			t.Errorf("%s: got %+v, want format %v header %v shards %v", c.sql, p, c.format, c.header, ordersShards)
		}
	}
}
