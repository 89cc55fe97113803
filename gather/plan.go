package gather

// Plan says how the rows of several shards are merged. The zero Plan
// concatenates them.
//
// Column numbers are 0-based positions in the rows the shards return (the
// statement as rewritten for the shards), which are the client's columns
// followed by hidden ones the merge needs and strips. A negative column
// number counts from the end of the row (-1 is the last column): the router
// uses them after a SELECT *, whose width only the RowDescription tells.
type Plan struct {
	// Visible is how many leading columns the client sees; 0 means all
	// but the Hidden trailing ones.
	Visible int
	// Hidden is how many trailing columns the router added for the merge
	// (sort keys, group columns, the counts of avg); the client never
	// sees them. (Added by the router helper for SELECT *, where Visible
	// cannot be known when planning.)
	Hidden int
	// Sort is the ORDER BY of the merged result. Without aggregation the
	// shards return their rows in this order, and the merge keeps it. When
	// the plan aggregates (Aggregating), the shards return partial groups
	// in no order and without LIMIT: Sort, Offset and Limit apply to the
	// combined groups.
	Sort []SortKey
	// Limit is the LIMIT applied after the merge; -1 for none. The shards
	// were asked for Limit+Offset rows each.
	Limit int64
	// Offset is the OFFSET applied after the merge (the shards got none).
	Offset int64
	// LimitParam and OffsetParam, when not 0, name the bind parameter ($n)
	// that gives the limit or offset at execution instead (an int8 in the
	// shard SQL: the shards got LIMIT $l::int8 + $o::int8). A NULL value
	// means no limit, or offset 0; a negative value must fail as Postgres
	// fails (SQLSTATE 2201W for LIMIT, 2201X for OFFSET), since the
	// shards' sum may be positive.
	LimitParam, OffsetParam int
	// Distinct drops duplicate rows (over the visible columns).
	Distinct bool
	// Group lists the columns the rows are grouped on when the statement
	// aggregates; with Aggs and no Group the whole result is one group.
	Group []int
	// Aggs combines the shards' partial aggregates of each group.
	Aggs []Agg
	// Having filters groups after they are combined: every condition
	// holds (a conjunction).
	Having []Cond
}

// Aggregating reports whether the plan combines groups.
func (p *Plan) Aggregating() bool { return len(p.Aggs) > 0 || len(p.Group) > 0 }

// SortKey is one ORDER BY item.
type SortKey struct {
	Col        int
	Desc       bool
	NullsFirst bool // Postgres default: NULLS LAST for ASC, NULLS FIRST for DESC
}

// AggKind is how partial aggregates are combined.
type AggKind uint8

const (
	AggCount   AggKind = iota + 1 // the sum of the shards' counts (int8)
	AggSum                        // the sum of the shards' sums (NULL when all are NULL)
	AggMin                        // the least non-NULL value
	AggMax                        // the greatest non-NULL value
	AggBoolAnd                    // every non-NULL value true
	AggBoolOr                     // some non-NULL value true
	AggAvg                        // Col holds the shards' sum, CountCol their count: sum/count
)

// Agg is one aggregate output column.
type Agg struct {
	Col  int
	Kind AggKind
	// CountCol is the hidden column with the count for AggAvg.
	CountCol int
}

// CmpOp is a comparison in a HAVING condition.
type CmpOp uint8

const (
	OpEq CmpOp = iota + 1
	OpNe
	OpLt
	OpLe
	OpGt
	OpGe
)

// Cond is one HAVING condition: column Col (an aggregate or grouped
// column, possibly hidden) compared with a constant given as text.
type Cond struct {
	Col   int
	Op    CmpOp
	Value string
}
