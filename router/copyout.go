package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardwire/shardwire/shardmap"
)

// CopyOut says how a COPY … TO STDOUT that needs several shards is
// gathered: the statement runs unchanged on each shard and their data is
// concatenated, with one header.
type CopyOut struct {
	Shards []string
	Format CopyFormat
	// Header: CSV or text HEADER, a first line each shard sends and the
	// client must get once.
	Header bool
}

// PlanCopyOut plans COPY table TO STDOUT for a sharded table, and COPY
// (SELECT …) TO STDOUT for a query over sharded tables whose rows only
// need concatenating (no ORDER BY, LIMIT, aggregate or DISTINCT: the
// shards' COPY output cannot be merged otherwise). Anything else is
// refused with a *RouteError: the caller routes it as usual when it
// names no sharded table.
func (a *Analyzer) PlanCopyOut(sql string, m *shardmap.Map) (*CopyOut, error) {
	res, err := pg_query.Parse(sql)
	if err != nil {
		return nil, &RouteError{Code: CodeSyntaxError, Msg: "shardwire: cannot parse the COPY statement: " + err.Error(), Err: err}
	}
	if len(res.Stmts) != 1 {
		return nil, copyError("", CodeFeatureNotSupported, "a COPY across shards must be the only statement of its query")
	}
	c := res.Stmts[0].Stmt.GetCopyStmt()
	switch {
	case c == nil:
		return nil, copyError("", CodeFeatureNotSupported, "not a COPY statement")
	case c.IsFrom:
		return nil, copyError("", CodeFeatureNotSupported, "not a COPY … TO")
	case c.IsProgram || c.Filename != "":
		return nil, copyError("", CodeFeatureNotSupported, "COPY … TO a file or program writes on the server's disk and cannot run across shards; use TO STDOUT")
	}
	out := &CopyOut{}
	plan := CopyPlan{}
	if err := plan.options(c.Options); err != nil {
		return nil, err
	}
	out.Format, out.Header = plan.Format, plan.Header
	if c.Relation != nil {
		name := canonicalName(c.Relation.Schemaname, c.Relation.Relname)
		t, listed := m.Table(name)
		if !listed || t.Replicated() {
			return nil, copyError(name, CodeFeatureNotSupported, "table "+name+" is not sharded")
		}
		out.Shards = t.Shards()
		return out, nil
	}
	if c.Query == nil {
		return nil, copyError("", CodeFeatureNotSupported, "COPY TO needs a table or a query")
	}
	inner, err := pg_query.Deparse(&pg_query.ParseResult{Version: res.Version, Stmts: []*pg_query.RawStmt{{Stmt: c.Query}}})
	if err != nil {
		return nil, copyError("", CodeFeatureNotSupported, "cannot read the query of the COPY: "+err.Error())
	}
	sc, err := a.PlanScatter(inner, m)
	if err != nil {
		return nil, err
	}
	p := sc.Plan
	if len(p.Sort) > 0 || p.Limit >= 0 || p.Offset > 0 || p.Distinct || p.Aggregating() || p.Hidden > 0 || p.LimitParam > 0 || p.OffsetParam > 0 {
		return nil, copyError("", CodeFeatureNotSupported, "COPY (SELECT …) TO STDOUT across shards only concatenates rows: ORDER BY, LIMIT, OFFSET, DISTINCT and aggregates are not supported there; run the SELECT itself")
	}
	// The shards of the query: those of its sharded tables, which
	// PlanScatter checked are co-located.
	an, lits := a.Prepare(inner)
	r, err := a.Route(an, inner, lits, nil, m, RouteOptions{})
	if err != nil {
		return nil, err
	}
	if len(r.Shards) < 2 || r.AnyShard {
		return nil, copyError("", CodeFeatureNotSupported, "the query of the COPY does not span shards")
	}
	out.Shards = r.Shards
	return out, nil
}
