package router

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardwire/shardwire/gather"
	"github.com/shardwire/shardwire/pgcluster"
	"github.com/shardwire/shardwire/shardmap"
)

type scatterCase struct {
	sql  string
	args []any // bind parameters, for the run on Postgres
	// shard is the expected shard SQL; "=" means the client's text.
	shard string
	plan  gather.Plan
	code  string // expected SQLSTATE of a refusal
	msg   string // a substring of the refusal
	ext   bool   // needs the extended map
	nopg  bool   // not run on Postgres (tables it lacks)
}

// The spec map: orders (hash customer_id), customers (hash id), stores
// (list region), events (range created_at), countries (replicated), any
// other table unsharded on s0.
var scatterCases = []scatterCase{
	// --- concatenation: the client's text, zero plan
	{sql: "SELECT * FROM orders", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT id, status FROM orders WHERE status = 'new' AND qty > $1", args: []any{1}, shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT * FROM orders WHERE customer_id IN (3, 9)", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id, c.name FROM orders o, customers c WHERE o.customer_id = c.id AND c.vip", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id, x.name FROM orders o JOIN countries x ON x.code = o.status", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id, c.name FROM orders o LEFT JOIN customers c ON c.id = o.customer_id", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id, c.id FROM orders o FULL JOIN customers c ON o.customer_id = c.id AND o.qty > 2", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id FROM orders o LEFT JOIN countries x ON x.code = o.status", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT c.id FROM countries x RIGHT JOIN customers c ON c.country = x.code", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT * FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.total > 100)", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT * FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT * FROM customers c WHERE c.id IN (SELECT o.customer_id FROM orders o WHERE o.status = 'paid')", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE vip)", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT c.id, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) AS n FROM customers c", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT id FROM orders o WHERE o.status IN (SELECT code FROM countries)", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "WITH big AS (SELECT * FROM orders WHERE total > 100) SELECT id FROM big", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "WITH o AS (SELECT customer_id AS cid, total FROM orders) SELECT c.name, o.total FROM o JOIN customers c ON c.id = o.cid", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT s.id FROM (SELECT id, customer_id FROM orders WHERE qty > 1) s JOIN customers c ON c.id = s.customer_id", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT s.id FROM (SELECT id, customer_id FROM orders) s(id, cid) JOIN customers c ON c.id = s.cid", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT c.id, l.n FROM customers c, LATERAL (SELECT count(*) AS n FROM orders o WHERE o.customer_id = c.id) l", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id, t FROM orders o, unnest(string_to_array(o.note, ' ')) t", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id, g FROM generate_series(1, 2) g, orders o", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT * FROM events WHERE kind = 'a'", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT * FROM stores s JOIN countries x ON x.code = s.region", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id FROM orders o JOIN orders o2 ON o2.customer_id = o.customer_id AND o2.id <> o.id", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id, a.id FROM orders o JOIN accounts a ON a.id = o.customer_id", shard: "=", plan: gather.Plan{Limit: -1}, ext: true, nopg: true}, // integer and bigint keys are co-located
	{sql: "TABLE orders", shard: "=", plan: gather.Plan{Limit: -1}},

	{sql: "SELECT c.id, (SELECT sum(qty) FROM orders o WHERE o.customer_id = c.id) AS s, (SELECT max(o.total) FROM orders o WHERE o.customer_id = c.id) FROM customers c", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM (SELECT * FROM customers c2 WHERE c2.id = o.customer_id) d WHERE d.vip)", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "WITH x AS (SELECT * FROM orders) SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM x WHERE x.customer_id = c.id AND x.qty = 4)", shard: "=", plan: gather.Plan{Limit: -1}},
	{sql: "SELECT o.id FROM (VALUES ('new'), ('paid')) v(s) JOIN orders o ON o.status = v.s", shard: "=", plan: gather.Plan{Limit: -1}},

	// --- ORDER BY, LIMIT, OFFSET, DISTINCT
	{sql: "SELECT o.total::int, CAST(o.qty AS bigint), EXTRACT(day FROM created_at), created_at AT TIME ZONE 'UTC', 1::int, COALESCE(note, 'none') FROM orders o ORDER BY 1, id LIMIT 3",
		// Deparsing rewrites some syntax; the names stay (checked on Postgres).
		shard: `SELECT o.total::int, o.qty::bigint, extract ('day' FROM created_at), created_at AT TIME ZONE 'UTC', 1::int, COALESCE(note, 'none'), id AS "?sw_sort_1" FROM orders o ORDER BY 1, id LIMIT 3`,
		plan:  gather.Plan{Visible: 6, Hidden: 1, Sort: []gather.SortKey{{Col: 0}, {Col: 6}}, Limit: 3}},
	{sql: "SELECT id, total FROM orders ORDER BY total DESC NULLS LAST, id LIMIT 5", shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 1, Desc: true}, {Col: 0}}, Limit: 5}},
	{sql: "SELECT id FROM orders ORDER BY total, id LIMIT 5 OFFSET 10",
		shard: `SELECT id, total AS "?sw_sort_1" FROM orders ORDER BY total, id LIMIT 15`,
		plan:  gather.Plan{Visible: 1, Hidden: 1, Sort: []gather.SortKey{{Col: 1}, {Col: 0}}, Limit: 5, Offset: 10}},
	{sql: "SELECT id AS i, status FROM orders ORDER BY i DESC", shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 0, Desc: true, NullsFirst: true}}, Limit: -1}},
	{sql: "SELECT id, qty * 2 AS dbl FROM orders ORDER BY qty * 2, 1", shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 1}, {Col: 0}}, Limit: -1}},
	{sql: "SELECT id, o.total FROM orders o ORDER BY total DESC, o.id", shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 1, Desc: true, NullsFirst: true}, {Col: 0}}, Limit: -1}},
	{sql: "SELECT * FROM orders ORDER BY created_at DESC, id LIMIT $1 OFFSET $2", args: []any{4, 3},
		shard: `SELECT *, created_at AS "?sw_sort_1", id AS "?sw_sort_2" FROM orders ORDER BY created_at DESC, id LIMIT $1::int8 + $2::int8`,
		plan:  gather.Plan{Hidden: 2, Sort: []gather.SortKey{{Col: -2, Desc: true, NullsFirst: true}, {Col: -1}}, Limit: -1, LimitParam: 1, OffsetParam: 2}},
	{sql: "SELECT *, lower(status) AS ls FROM orders ORDER BY ls, id",
		shard: `SELECT *, lower(status) AS ls, id AS "?sw_sort_1" FROM orders ORDER BY ls, id`,
		plan:  gather.Plan{Hidden: 1, Sort: []gather.SortKey{{Col: -2}, {Col: -1}}, Limit: -1}},
	{sql: "SELECT id, * FROM orders ORDER BY 1 LIMIT 3", shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 0}}, Limit: 3}},
	{sql: "SELECT id FROM orders ORDER BY id LIMIT $1", args: []any{7}, shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 0}}, Limit: -1, LimitParam: 1}},
	{sql: "SELECT id FROM orders ORDER BY id OFFSET $1", args: []any{250},
		shard: "SELECT id FROM orders ORDER BY id OFFSET NULLIF($1::int8, $1::int8)",
		plan:  gather.Plan{Sort: []gather.SortKey{{Col: 0}}, Limit: -1, OffsetParam: 1}},
	{sql: "SELECT id FROM orders ORDER BY id LIMIT 3 OFFSET $1", args: []any{2},
		shard: "SELECT id FROM orders ORDER BY id LIMIT 3 + $1::int8",
		plan:  gather.Plan{Sort: []gather.SortKey{{Col: 0}}, Limit: 3, OffsetParam: 1}},
	{sql: "SELECT id FROM orders ORDER BY id FETCH FIRST 3 ROWS ONLY", shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 0}}, Limit: 3}},
	{sql: "SELECT id FROM orders ORDER BY id OFFSET 2 ROWS FETCH FIRST 3 ROWS ONLY",
		shard: "SELECT id FROM orders ORDER BY id LIMIT 5",
		plan:  gather.Plan{Sort: []gather.SortKey{{Col: 0}}, Limit: 3, Offset: 2}},
	{sql: "SELECT id FROM orders ORDER BY id LIMIT ALL OFFSET 4",
		shard: "SELECT id FROM orders ORDER BY id LIMIT ALL",
		plan:  gather.Plan{Sort: []gather.SortKey{{Col: 0}}, Limit: -1, Offset: 4}},
	{sql: "SELECT id FROM orders ORDER BY id LIMIT NULL OFFSET 0", shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 0}}, Limit: -1}},
	{sql: "SELECT id FROM orders ORDER BY id LIMIT 9223372036854775807 OFFSET 5",
		shard: "SELECT id FROM orders ORDER BY id LIMIT 9223372036854775807",
		plan:  gather.Plan{Sort: []gather.SortKey{{Col: 0}}, Limit: 9223372036854775807, Offset: 5}},
	{sql: `SELECT id, name FROM customers ORDER BY name COLLATE "C" DESC LIMIT 3`, shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 1, Desc: true, NullsFirst: true}}, Limit: 3}},
	{sql: "SELECT id FROM orders ORDER BY status NULLS FIRST, id",
		shard: `SELECT id, status AS "?sw_sort_1" FROM orders ORDER BY status NULLS FIRST, id`,
		plan:  gather.Plan{Visible: 1, Hidden: 1, Sort: []gather.SortKey{{Col: 1, NullsFirst: true}, {Col: 0}}, Limit: -1}},
	{sql: "SELECT id FROM orders ORDER BY status DESC NULLS LAST, id DESC",
		shard: `SELECT id, status AS "?sw_sort_1" FROM orders ORDER BY status DESC NULLS LAST, id DESC`,
		plan:  gather.Plan{Visible: 1, Hidden: 1, Sort: []gather.SortKey{{Col: 1, Desc: true}, {Col: 0, Desc: true, NullsFirst: true}}, Limit: -1}},
	{sql: "SELECT DISTINCT status FROM orders ORDER BY status", shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 0}}, Limit: -1, Distinct: true}},
	{sql: "SELECT DISTINCT status, qty FROM orders ORDER BY 2 DESC, 1 LIMIT 4 OFFSET 1",
		shard: "SELECT DISTINCT status, qty FROM orders ORDER BY 2 DESC, 1 LIMIT 5",
		plan:  gather.Plan{Sort: []gather.SortKey{{Col: 1, Desc: true, NullsFirst: true}, {Col: 0}}, Limit: 4, Offset: 1, Distinct: true}},
	{sql: "SELECT DISTINCT country FROM customers", shard: "=", plan: gather.Plan{Limit: -1, Distinct: true}},
	{sql: "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY c.name, o.id LIMIT 7", shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 1}, {Col: 0}}, Limit: 7}},
	{sql: "SELECT count FROM (SELECT id AS count FROM orders) s ORDER BY count LIMIT 2", shard: "=",
		plan: gather.Plan{Sort: []gather.SortKey{{Col: 0}}, Limit: 2}},

	// --- aggregates
	{sql: "SELECT count(*) FROM orders", shard: "=",
		plan: gather.Plan{Limit: -1, Aggs: []gather.Agg{{Col: 0, Kind: gather.AggCount}}}},
	{sql: "SELECT count(*), sum(total), min(created_at), max(status), bool_and(qty > 0), bool_or(total > 100), every(qty < 5), count(note), pg_catalog.sum(qty) FROM orders", shard: "=",
		plan: gather.Plan{Limit: -1, Aggs: []gather.Agg{{Col: 0, Kind: gather.AggCount}, {Col: 1, Kind: gather.AggSum}, {Col: 2, Kind: gather.AggMin},
			{Col: 3, Kind: gather.AggMax}, {Col: 4, Kind: gather.AggBoolAnd}, {Col: 5, Kind: gather.AggBoolOr}, {Col: 6, Kind: gather.AggBoolAnd},
			{Col: 7, Kind: gather.AggCount}, {Col: 8, Kind: gather.AggSum}}}},
	{sql: "SELECT avg(total) FROM orders",
		shard: `SELECT sum(total) AS avg, count(total) AS "?sw_count_1" FROM orders`,
		plan:  gather.Plan{Visible: 1, Hidden: 1, Limit: -1, Aggs: []gather.Agg{{Col: 0, Kind: gather.AggAvg, CountCol: 1}}}},
	{sql: "SELECT avg(qty) FILTER (WHERE status = 'paid') AS paid, max(total) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.vip",
		shard: `SELECT sum(qty) FILTER (WHERE status = 'paid') AS paid, max(total), count(qty) FILTER (WHERE status = 'paid') AS "?sw_count_1" FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.vip`,
		plan:  gather.Plan{Visible: 2, Hidden: 1, Limit: -1, Aggs: []gather.Agg{{Col: 0, Kind: gather.AggAvg, CountCol: 2}, {Col: 1, Kind: gather.AggMax}}}},
	{sql: "SELECT status, avg(qty) AS a FROM orders GROUP BY status ORDER BY a DESC, status",
		shard: `SELECT status, sum(qty) AS a, count(qty) AS "?sw_count_1" FROM orders GROUP BY status`,
		plan: gather.Plan{Visible: 2, Hidden: 1, Limit: -1, Group: []int{0}, Aggs: []gather.Agg{{Col: 1, Kind: gather.AggAvg, CountCol: 2}},
			Sort: []gather.SortKey{{Col: 1, Desc: true, NullsFirst: true}, {Col: 0}}}},
	{sql: "SELECT status, count(*) FROM orders GROUP BY 1 HAVING count(*) > 3 AND max(total) >= 10.5 ORDER BY 2 DESC, 1 LIMIT 3 OFFSET 1",
		shard: `SELECT status, count(*), max(total) AS "?sw_agg_1" FROM orders GROUP BY 1`,
		plan: gather.Plan{Visible: 2, Hidden: 1, Limit: 3, Offset: 1, Group: []int{0},
			Aggs:   []gather.Agg{{Col: 2, Kind: gather.AggMax}, {Col: 1, Kind: gather.AggCount}},
			Having: []gather.Cond{{Col: 1, Op: gather.OpGt, Value: "3"}, {Col: 2, Op: gather.OpGe, Value: "10.5"}},
			Sort:   []gather.SortKey{{Col: 1, Desc: true, NullsFirst: true}, {Col: 0}}}},
	{sql: "SELECT status, count(*) FROM orders GROUP BY status HAVING 5 < count(*) AND avg(qty) <> 2 ORDER BY status",
		shard: `SELECT status, count(*), sum(qty) AS "?sw_agg_1", count(qty) AS "?sw_count_2" FROM orders GROUP BY status`,
		plan: gather.Plan{Visible: 2, Hidden: 2, Limit: -1, Group: []int{0},
			Aggs:   []gather.Agg{{Col: 2, Kind: gather.AggAvg, CountCol: 3}, {Col: 1, Kind: gather.AggCount}},
			Having: []gather.Cond{{Col: 1, Op: gather.OpGt, Value: "5"}, {Col: 2, Op: gather.OpNe, Value: "2"}},
			Sort:   []gather.SortKey{{Col: 0}}}},
	{sql: "SELECT customer_id, sum(total) FILTER (WHERE status = 'paid') FROM orders GROUP BY customer_id ORDER BY 1", shard: "SELECT customer_id, sum(total) FILTER (WHERE status = 'paid') FROM orders GROUP BY customer_id",
		plan: gather.Plan{Limit: -1, Group: []int{0}, Aggs: []gather.Agg{{Col: 1, Kind: gather.AggSum}}, Sort: []gather.SortKey{{Col: 0}}}},
	{sql: "SELECT date_trunc('day', created_at) AS d, count(*) FROM orders GROUP BY d ORDER BY d",
		shard: "SELECT date_trunc('day', created_at) AS d, count(*) FROM orders GROUP BY d",
		plan:  gather.Plan{Limit: -1, Group: []int{0}, Aggs: []gather.Agg{{Col: 1, Kind: gather.AggCount}}, Sort: []gather.SortKey{{Col: 0}}}},
	{sql: "SELECT count(*) FROM orders GROUP BY status",
		shard: `SELECT count(*), status AS "?sw_group_1" FROM orders GROUP BY status`,
		plan:  gather.Plan{Visible: 1, Hidden: 1, Limit: -1, Group: []int{1}, Aggs: []gather.Agg{{Col: 0, Kind: gather.AggCount}}}},
	{sql: "SELECT DISTINCT count(*) FROM orders GROUP BY status ORDER BY 1",
		shard: `SELECT count(*), status AS "?sw_group_1" FROM orders GROUP BY status`,
		plan: gather.Plan{Visible: 1, Hidden: 1, Limit: -1, Group: []int{1}, Aggs: []gather.Agg{{Col: 0, Kind: gather.AggCount}},
			Distinct: true, Sort: []gather.SortKey{{Col: 0}}}},
	{sql: "SELECT 'x' AS k, $1::int AS p, count(*) FROM orders", args: []any{5}, shard: "=",
		plan: gather.Plan{Limit: -1, Group: []int{0, 1}, Aggs: []gather.Agg{{Col: 2, Kind: gather.AggCount}}}},
	{sql: "SELECT status, count(*) FROM orders GROUP BY status ORDER BY status LIMIT $1", args: []any{2},
		shard: "SELECT status, count(*) FROM orders GROUP BY status LIMIT NULLIF($1::int8, $1::int8)",
		plan:  gather.Plan{Limit: -1, LimitParam: 1, Group: []int{0}, Aggs: []gather.Agg{{Col: 1, Kind: gather.AggCount}}, Sort: []gather.SortKey{{Col: 0}}}},
	{sql: "SELECT min(DISTINCT qty), max(qty) FROM orders", shard: "=",
		plan: gather.Plan{Limit: -1, Aggs: []gather.Agg{{Col: 0, Kind: gather.AggMin}, {Col: 1, Kind: gather.AggMax}}}},
	{sql: "SELECT status FROM orders GROUP BY status HAVING status <> 'new' ORDER BY 1",
		shard: "SELECT status FROM orders GROUP BY status",
		plan:  gather.Plan{Limit: -1, Group: []int{0}, Having: []gather.Cond{{Col: 0, Op: gather.OpNe, Value: "new"}}, Sort: []gather.SortKey{{Col: 0}}}},
	{sql: "SELECT sum(qty) FROM orders ORDER BY 1 OFFSET 0", shard: "SELECT sum(qty) FROM orders",
		plan: gather.Plan{Limit: -1, Aggs: []gather.Agg{{Col: 0, Kind: gather.AggSum}}, Sort: []gather.SortKey{{Col: 0}}}},
	{sql: "SELECT c.country, count(*) AS n FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.country ORDER BY n DESC, country",
		shard: "SELECT c.country, count(*) AS n FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.country",
		plan: gather.Plan{Limit: -1, Group: []int{0}, Aggs: []gather.Agg{{Col: 1, Kind: gather.AggCount}},
			Sort: []gather.SortKey{{Col: 1, Desc: true, NullsFirst: true}, {Col: 0}}}},
	{sql: "SELECT status, count(*) FROM orders GROUP BY status ORDER BY count(*) DESC, max(id)",
		shard: `SELECT status, count(*), max(id) AS "?sw_agg_1" FROM orders GROUP BY status`,
		plan: gather.Plan{Visible: 2, Hidden: 1, Limit: -1, Group: []int{0},
			Aggs: []gather.Agg{{Col: 2, Kind: gather.AggMax}, {Col: 1, Kind: gather.AggCount}},
			Sort: []gather.SortKey{{Col: 1, Desc: true, NullsFirst: true}, {Col: 2}}}},
	{sql: "SELECT count(*) FROM orders HAVING count(*) > 0", shard: "SELECT count(*) FROM orders",
		plan: gather.Plan{Limit: -1, Aggs: []gather.Agg{{Col: 0, Kind: gather.AggCount}}, Having: []gather.Cond{{Col: 0, Op: gather.OpGt, Value: "0"}}}},
	{sql: "SELECT count(*) FROM orders WHERE customer_id = $1 OR qty > $2", args: []any{42, 3}, shard: "=",
		plan: gather.Plan{Limit: -1, Aggs: []gather.Agg{{Col: 0, Kind: gather.AggCount}}}},

	// --- refusals
	{sql: "SELECT * FROM orders; SELECT 1", code: "0A000", msg: "several statements"},
	{sql: "UPDATE orders SET qty = 1", code: "0A000", msg: "a statement other than SELECT"},
	{sql: "SELECT * INTO t FROM orders", code: "0A000", msg: "SELECT INTO"},
	{sql: "SELECT * FROM orders FOR UPDATE", code: "0A000", msg: "FOR UPDATE"},
	{sql: "SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id FOR SHARE)", code: "0A000", msg: "FOR SHARE"},
	{sql: "SELECT id FROM orders UNION SELECT id FROM customers", code: "0A000", msg: "UNION, INTERSECT or EXCEPT"},
	{sql: "SELECT id FROM orders UNION ALL SELECT id FROM orders", code: "0A000", msg: "UNION"},
	{sql: "VALUES (1)", code: "0A000", msg: "VALUES"},
	{sql: "SELECT count(DISTINCT status) FROM orders", code: "0A000", msg: "count(DISTINCT …)"},
	{sql: "SELECT string_agg(status, ',') FROM orders", code: "0A000", msg: "aggregate string_agg()"},
	{sql: "SELECT stddev(total) FROM orders", code: "0A000", msg: "aggregate stddev()"},
	{sql: "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total) FROM orders", code: "0A000", msg: "percentile_cont()"},
	{sql: "SELECT array_agg(id ORDER BY id) FROM orders", code: "0A000", msg: "aggregate array_agg()"},
	{sql: "SELECT sum(qty ORDER BY id) FROM orders", code: "0A000", msg: "sum() with ORDER BY"},
	{sql: "SELECT id, rank() OVER (ORDER BY total) FROM orders", code: "0A000", msg: "window function rank()"},
	{sql: "SELECT id, sum(qty) OVER w FROM orders WINDOW w AS (PARTITION BY status)", code: "0A000", msg: "window function"},
	{sql: "SELECT sum(total) / count(*) FROM orders", code: "0A000", msg: "an expression on aggregate sum()"},
	{sql: "SELECT round(avg(total), 2) FROM orders", code: "0A000", msg: "an expression on aggregate avg()"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY ROLLUP (status)", code: "0A000", msg: "GROUPING SETS, ROLLUP or CUBE"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY GROUPING SETS ((status), ())", code: "0A000", msg: "GROUPING SETS"},
	{sql: "SELECT DISTINCT ON (status) status, id FROM orders ORDER BY status, id", code: "0A000", msg: "DISTINCT ON"},
	{sql: "SELECT id FROM orders ORDER BY status USING <", code: "0A000", msg: "ORDER BY … USING"},
	{sql: `SELECT id FROM orders ORDER BY status COLLATE "en_US"`, code: "0A000", msg: `COLLATE "en_US" in ORDER BY`},
	{sql: "SELECT id FROM orders ORDER BY id FETCH FIRST 3 ROWS WITH TIES", code: "0A000", msg: "WITH TIES"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY status HAVING count(*) > 1 OR status = 'x'", code: "0A000", msg: "HAVING condition"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY status HAVING count(*) > $1", code: "0A000", msg: "HAVING condition"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY status HAVING sum(qty) > avg(qty)", code: "0A000", msg: "HAVING condition"},
	{sql: "SELECT upper(status), count(*) FROM orders GROUP BY status", code: "0A000", msg: `select-list column "upper" that is neither an aggregate nor a GROUP BY item`},
	{sql: "SELECT * FROM orders o JOIN stores s ON s.region = o.status", code: "0A000", msg: `join of sharded tables "orders" and "stores"`},
	{sql: "SELECT * FROM orders o JOIN customers c ON c.name = o.status", code: "0A000", msg: "not on equal shard keys"},
	{sql: "SELECT * FROM orders o, customers c", code: "0A000", msg: "not on equal shard keys"},
	{sql: "SELECT * FROM orders o JOIN customers c ON c.id = o.id", code: "0A000", msg: "not on equal shard keys"},
	{sql: "SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id OR c.vip", code: "0A000", msg: "not on equal shard keys"},
	{sql: "SELECT * FROM orders o LEFT JOIN customers c ON c.name = o.status WHERE o.qty > 1", code: "0A000", msg: "not on equal shard keys"},
	{sql: "SELECT * FROM (orders o LEFT JOIN customers c ON c.name = o.status) JOIN customers c2 ON c2.id = o.customer_id", code: "0A000", msg: "not on equal shard keys"},
	{sql: "SELECT * FROM orders o JOIN events e ON e.id = o.id", code: "0A000", msg: `join of sharded tables "orders" and "events"`},
	{sql: "SELECT * FROM orders o JOIN sessions s ON s.sid::text = o.status", code: "0A000", msg: "join of sharded tables", ext: true},
	{sql: "SELECT * FROM countries x LEFT JOIN orders o ON o.status = x.code", code: "0A000", msg: `LEFT JOIN of sharded table "orders" with rows that are on every shard`},
	{sql: "SELECT * FROM orders o FULL JOIN countries x ON o.status = x.code", code: "0A000", msg: "FULL JOIN"},
	{sql: "SELECT * FROM orders WHERE total > (SELECT avg(total) FROM orders)", code: "0A000", msg: `subquery over sharded table "orders" that is not tied to the enclosing row by its shard key`},
	{sql: "SELECT * FROM orders WHERE status IN (SELECT status FROM orders WHERE qty > 3)", code: "0A000", msg: "not tied to the enclosing row"},
	{sql: "SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.name = o.status)", code: "0A000", msg: "not tied to the enclosing row"},
	{sql: "SELECT * FROM customers c WHERE c.id NOT IN (SELECT customer_id FROM orders)", code: "0A000", msg: "not tied to the enclosing row"},
	{sql: "SELECT c.id, (SELECT count(*) FROM orders o WHERE o.status = c.name) FROM customers c", code: "0A000", msg: "not tied to the enclosing row"},
	{sql: "SELECT * FROM customers c, LATERAL (SELECT * FROM orders o LEFT JOIN countries x ON o.customer_id = c.id) l", code: "0A000", msg: "not on equal shard keys"},
	{sql: "SELECT count(*) FROM (SELECT DISTINCT status FROM orders) s", code: "0A000", msg: `subquery over sharded table "orders" with DISTINCT`},
	{sql: "SELECT * FROM (SELECT * FROM orders LIMIT 5) s", code: "0A000", msg: "with LIMIT or OFFSET"},
	{sql: "WITH t AS (SELECT status, count(*) FROM orders GROUP BY status) SELECT * FROM t", code: "0A000", msg: "with GROUP BY"},
	{sql: "SELECT * FROM (SELECT id, row_number() OVER () FROM orders) s", code: "0A000", msg: "window function row_number()"},
	{sql: "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", code: "0A000", msg: "data-modifying statement in WITH"},
	{sql: "SELECT * FROM orders o JOIN users u ON u.id = o.customer_id", code: "0A000", msg: `unsharded table "users"`},
	{sql: "SELECT * FROM orders o, pg_class c", code: "0A000", msg: "system catalog pg_class"},
	{sql: "SELECT * FROM orders TABLESAMPLE SYSTEM (10)", code: "0A000", msg: "TABLESAMPLE"},
	{sql: "SELECT * FROM orders o, pg_ls_dir('.') f", code: "0A000", msg: "function pg_ls_dir() in FROM"},
	{sql: "SELECT my_agg(total) FROM orders", code: "0A000", msg: "function my_agg(), which shardwire does not know"},
	{sql: "SELECT id FROM orders ORDER BY 5", code: "42P10", msg: "ORDER BY position 5 is not in select list"},
	{sql: "SELECT * FROM orders ORDER BY 2", code: "0A000", msg: "ORDER BY a position after SELECT *"},
	{sql: "SELECT DISTINCT status FROM orders ORDER BY id", code: "42P10", msg: "for SELECT DISTINCT, ORDER BY expressions must appear in select list"},
	{sql: "SELECT * FROM orders LIMIT -1", code: "2201W", msg: "LIMIT must not be negative"},
	{sql: "SELECT * FROM orders OFFSET -2", code: "2201X", msg: "OFFSET must not be negative"},
	{sql: "SELECT * FROM orders LIMIT 2 + 3", code: "0A000", msg: "LIMIT other than a constant or a $n parameter"},
	{sql: "SELECT *, count(*) FROM orders GROUP BY id", code: "0A000", msg: "SELECT * with GROUP BY or aggregates"},
	{sql: "SELECT status, (SELECT max(code) FROM countries), count(*) FROM orders GROUP BY status", code: "0A000", msg: "a subquery in the select list"},
	{sql: "SELECT count(*) FROM countries", code: "0A000", msg: "a query whose FROM reads no sharded table"},
	{sql: "SELECT (SELECT sum(o.qty)) FROM orders o", code: "0A000", msg: "aggregate sum() over the outer query's columns inside a subquery"},
	{sql: "SELECT id, (SELECT max(o.total) FROM countries x) FROM orders o", code: "0A000", msg: "aggregate max() over the outer query's columns"},
	{sql: "SELECT id FROM orders o ORDER BY (SELECT count(o.id))", code: "0A000", msg: "aggregate count() over the outer query's columns"},
	{sql: "SELECT xmlelement(name x), id FROM orders ORDER BY id", code: "0A000", msg: "when shardwire cannot tell the name of every output column"},
	{sql: "SELECT id AS x, qty AS x FROM orders ORDER BY x", code: "42702", msg: `ORDER BY "x" is ambiguous`},
	{sql: "SELECT count(*), status FROM orders GROUP BY 1", code: "42803", msg: "aggregate functions are not allowed in GROUP BY"},
	{sql: "SELECT count(*) FROM orders GROUP BY 3", code: "42P10", msg: "GROUP BY position 3 is not in select list"},
	{sql: "SELECT * FROM orders o JOIN customers c USING (customer_id)", code: "0A000", msg: "not on equal shard keys"},
	{sql: "SELECT * FROM orders o NATURAL JOIN customers c", code: "0A000", msg: "not on equal shard keys"},
	{sql: "SELECT * FROM orders o JOIN LATERAL (SELECT * FROM customers c WHERE c.name = o.status) l ON true", code: "0A000", msg: "not on equal shard keys"},
	{sql: "SELECT * FROM orders o JOIN (SELECT id, customer_id AS cid FROM orders) s(a, b) ON s.a = o.customer_id", code: "0A000", msg: "not on equal shard keys"},
	{sql: "SELECT * FROM orders WHERE", code: "42601", msg: "syntax error"},
}

func TestPlanScatter(t *testing.T) {
	t.Parallel()
	spec, ext := testMaps(t)
	a := NewAnalyzer(Config{})
	for _, c := range scatterCases {
		t.Run(c.sql, func(t *testing.T) {
			t.Parallel()
			m := spec
			if c.ext {
				m = ext
			}
			sc, err := a.PlanScatter(c.sql, m)
			if c.code != "" {
				var re *RouteError
				if !errors.As(err, &re) || re.Code != c.code || !strings.Contains(re.Msg, c.msg) {
					t.Fatalf("%s\n  got %q %+v, %v\n  want error %s containing %q", c.sql, sc.SQL, sc.Plan, err, c.code, c.msg)
				}
				if c.code == CodeFeatureNotSupported && !strings.HasPrefix(re.Msg, "shardwire: SELECT across shards is not supported: ") {
					t.Fatalf("%s: message %q does not say what is not supported", c.sql, re.Msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s\n  error %v", c.sql, err)
			}
			want := c.shard
			if want == "=" {
				want = c.sql
			}
			if sc.SQL != want {
				t.Errorf("%s\n  shard SQL %s\n       want %s", c.sql, sc.SQL, want)
			}
			if !reflect.DeepEqual(sc.Plan, c.plan) {
				t.Errorf("%s\n  plan %+v\n  want %+v", c.sql, sc.Plan, c.plan)
			}
			checkScatterInvariants(t, c.sql, sc)
		})
	}
}

// checkScatterInvariants checks what holds for every plan: the shard SQL
// parses and uses the client's parameters, and the plan's columns exist.
func checkScatterInvariants(t *testing.T, sql string, sc Scatter) {
	t.Helper()
	tree, err := pg_query.Parse(sc.SQL)
	if err != nil {
		t.Fatalf("%s: shard SQL %q does not parse: %v", sql, sc.SQL, err)
	}
	orig, err := pg_query.Parse(sql)
	if err != nil {
		t.Fatalf("%s: planned, but does not parse: %v", sql, err)
	}
	if a, b := paramsOf(orig.ProtoReflect()), paramsOf(tree.ProtoReflect()); !slices.Equal(a, b) {
		t.Fatalf("%s: parameters %v, shard SQL %q has %v", sql, a, sc.SQL, b)
	}
	p := sc.Plan
	if p.Limit < -1 || p.Offset < 0 || p.Hidden < 0 || p.Visible < 0 {
		t.Fatalf("%s: plan %+v", sql, p)
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	width, star := len(sel.TargetList), false
	for _, n := range sel.TargetList {
		if s, _ := starOf(n.GetResTarget().GetVal()); s {
			star = true
		}
	}
	if !star && p.Visible != 0 && p.Visible+p.Hidden != width {
		t.Fatalf("%s: %d visible + %d hidden columns, shard SQL has %d", sql, p.Visible, p.Hidden, width)
	}
	cols := []int{}
	for _, k := range p.Sort {
		cols = append(cols, k.Col)
	}
	cols = append(cols, p.Group...)
	for _, a := range p.Aggs {
		cols = append(cols, a.Col)
		if a.Kind == gather.AggAvg {
			cols = append(cols, a.CountCol)
		}
	}
	for _, h := range p.Having {
		cols = append(cols, h.Col)
	}
	for _, c := range cols {
		if c >= width || (c < 0 && (!star || -c > width)) {
			t.Fatalf("%s: column %d outside the %d columns of %q", sql, c, width, sc.SQL)
		}
	}
}

func TestPlanScatterCache(t *testing.T) {
	t.Parallel()
	spec, ext := testMaps(t)
	a := NewAnalyzer(Config{})
	const q = "SELECT status, avg(qty) FROM orders GROUP BY status"
	s1, err := a.PlanScatter(q, spec)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := a.PlanScatter(q, spec)
	if &s1.Plan.Aggs[0] != &s2.Plan.Aggs[0] {
		t.Error("the second plan of the same text was not served from the cache")
	}
	// Another map: planned again (placement may differ).
	s3, _ := a.PlanScatter(q, ext)
	if &s3.Plan.Aggs[0] == &s1.Plan.Aggs[0] {
		t.Error("a plan was shared between two maps")
	}
	// A refusal is cached too, and stays a refusal.
	for range 2 {
		if _, err := a.PlanScatter("SELECT string_agg(status, ',') FROM orders", spec); err == nil {
			t.Fatal("refusal not returned")
		}
	}
	// The cache stays within its budget.
	mi := a.index(spec)
	long := strings.Repeat(" ", 4000)
	for i := range 3000 {
		if _, err := a.PlanScatter(fmt.Sprintf("SELECT id FROM orders WHERE qty = %d%s", i, long), spec); err != nil {
			t.Fatal(err)
		}
	}
	if b := mi.scatter.bytes.Load(); b > scatterCacheBytes+64<<10 || b <= 0 {
		t.Errorf("cache holds %d bytes, budget %d", b, scatterCacheBytes)
	}
	// A text longer than scatterMaxText is planned but not cached.
	huge := "SELECT id FROM orders" + strings.Repeat(" ", scatterMaxText)
	if _, err := a.PlanScatter(huge, spec); err != nil {
		t.Fatal(err)
	}
	if mi.scatter.get(huge) != nil {
		t.Error("a huge text was cached")
	}
}

func TestFigureColname(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ expr, want string }{
		{"a", "a"}, {"t.a", "a"}, {"s.t.a", "a"}, {"f(x)", "f"}, {"pg_catalog.lower(x)", "lower"},
		{"1", "?column?"}, {"$1", "?column?"}, {"a + 1", "?column?"}, {"a::int", "a"}, {"1::int", "int4"},
		{"'x'::text", "text"}, {"CAST(1 AS bigint)", "int8"}, {"NULLIF(a, 1)", "nullif"}, {"COALESCE(a, 1)", "coalesce"},
		{"GREATEST(a, 1)", "greatest"}, {"LEAST(a, 1)", "least"}, {"CASE WHEN a THEN 1 END", "case"},
		{"CASE WHEN a THEN 1 ELSE b END", "b"}, {"ARRAY[1]", "array"}, {"ROW(1, 2)", "row"}, {"(a).b", "b"},
		{"a[1]", "a"}, {"EXISTS (SELECT 1)", "exists"}, {"(SELECT x FROM t)", "x"}, {"(SELECT x AS y FROM t)", "y"},
		{"(SELECT 1)", "?column?"}, {"ARRAY(SELECT 1)", "array"}, {"a IN (SELECT 1)", "?column?"}, {"current_date", "current_date"},
		{"current_user", "current_user"}, {"a COLLATE \"C\"", "a"}, {"NOT a", "?column?"}, {"a IS NULL", "?column?"},
		{"count(*)", "count"},
	} {
		tree, err := pg_query.Parse("SELECT " + c.expr)
		if err != nil {
			t.Fatal(err)
		}
		val := tree.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val
		if got, ok := figureColname(val); !ok || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.expr, got, ok, c.want)
		}
	}
}

func FuzzPlanScatter(f *testing.F) {
	for _, c := range scatterCases {
		f.Add(c.sql)
	}
	for _, s := range []string{"", ";", "SELECT", "SELECT * FROM orders o JOIN LATERAL (SELECT 1) x ON true",
		"WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r, orders",
		"SELECT (SELECT (SELECT count(*) FROM orders o2 WHERE o2.customer_id = o.customer_id)) FROM orders o",
		"SELECT * FROM orders WHERE customer_id = ANY (SELECT id FROM customers)"} {
		f.Add(s)
	}
	spec, _ := testMaps(f)
	a := NewAnalyzer(Config{})
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > 4096 {
			return
		}
		sc, err := a.PlanScatter(sql, spec)
		if err != nil {
			var re *RouteError
			if !errors.As(err, &re) {
				t.Fatalf("%q: error %T %v is not a RouteError", sql, err, err)
			}
			if strings.Contains(re.Msg, "the planner failed on") {
				t.Fatalf("%q: the planner panicked: %v", sql, err)
			}
			return
		}
		checkScatterInvariants(t, sql, sc)
		// The shard SQL plans the same way a second time: what the proxy
		// sends plans to itself (no hidden column is added twice).
		if sc.SQL != sql {
			if _, err := a.PlanScatter(sc.SQL, spec); err != nil && strings.Contains(err.Error(), "planner failed") {
				t.Fatalf("%q: shard SQL %q panics the planner", sql, sc.SQL)
			}
		}
	})
}

func BenchmarkPlanScatterCached(b *testing.B) {
	spec, _ := testMaps(b)
	a := NewAnalyzer(Config{})
	const q = "SELECT status, count(*), avg(total) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.vip GROUP BY status HAVING count(*) > 5 ORDER BY 3 DESC LIMIT $1"
	if _, err := a.PlanScatter(q, spec); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.PlanScatter(q, spec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkPlanScatterMiss(b *testing.B) {
	spec, _ := testMaps(b)
	const q = "SELECT status, count(*), avg(total) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.vip GROUP BY status HAVING count(*) > 5 ORDER BY 3 DESC LIMIT $1"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := planScatter(&functionSet{}, q, spec); err != nil {
			b.Fatal(err)
		}
	}
}

// --- on a real Postgres ---------------------------------------------------------

// TestPlanScatterOnPostgres runs every planned case on Postgres: the
// client's statement on a database holding every row, the shard SQL on
// two databases holding each shard's rows (placed by the spec map), and
// merges the shards' rows with a simple in-test reading of the plan. The
// merged rows must equal the single server's, column names included: the
// plan, and not only the rewritten text, is checked.
func TestPlanScatterOnPostgres(t *testing.T) {
	if err := pgcluster.PostgresAvailable(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run the Postgres tests: %v", err)
		}
		t.Skipf("no PostgreSQL: %v", err)
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sh, err := pgcluster.StartShard(ctx, "scatter", 0, pgcluster.Options{
		Users: []pgcluster.User{{Name: "app", Password: "app-pw"}}, Database: "app", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sh.Close(); err != nil {
			t.Error(err)
		}
	})
	spec, _ := testMaps(t)
	conns := map[string]*pgx.Conn{}
	for _, db := range []string{"all", "s0", "s1"} {
		if err := sh.Primary.Exec(ctx, "CREATE DATABASE sw_"+db); err != nil {
			t.Fatal(err)
		}
		c, err := sh.Primary.Connect(ctx, "sw_"+db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		conns[db] = c
		if _, err := c.Exec(ctx, scatterSchema); err != nil {
			t.Fatal(err)
		}
	}
	loadScatterData(ctx, t, spec, conns)

	a := NewAnalyzer(Config{})
	ran := 0
	var empty []string
	for _, c := range scatterCases {
		if c.code != "" || c.ext || c.nopg {
			continue
		}
		sc, err := a.PlanScatter(c.sql, spec)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		want, wantCols, err := queryText(ctx, conns["all"], c.sql, c.args)
		if err != nil {
			t.Errorf("%s: on one server: %v", c.sql, err)
			continue
		}
		var parts [][][]*string
		var cols []colInfo
		for _, db := range []string{"s0", "s1"} {
			rows, cs, err := queryText(ctx, conns[db], sc.SQL, c.args)
			if err != nil {
				t.Errorf("%s\n  shard SQL %s on %s: %v", c.sql, sc.SQL, db, err)
				break
			}
			parts, cols = append(parts, rows), cs
		}
		if len(parts) != 2 {
			continue
		}
		ran++
		if len(want) == 0 {
			empty = append(empty, c.sql)
		}
		got, gotCols, err := refMerge(sc.Plan, cols, parts, c.args)
		if err != nil {
			t.Errorf("%s: merge: %v", c.sql, err)
			continue
		}
		if !slices.Equal(colNames(gotCols), colNames(wantCols)) {
			t.Errorf("%s\n  shard SQL %s\n  columns %v, one server's %v", c.sql, sc.SQL, colNames(gotCols), colNames(wantCols))
			continue
		}
		avgCols := map[int]bool{}
		for _, ag := range sc.Plan.Aggs {
			if ag.Kind == gather.AggAvg {
				avgCols[resolveCol(ag.Col, len(cols))] = true
			}
		}
		ordered := len(sc.Plan.Sort) > 0
		if !ordered && (sc.Plan.Limit >= 0 || sc.Plan.LimitParam > 0) {
			// Which rows an unordered LIMIT keeps is up to each server.
			if len(got) != len(want) {
				t.Errorf("%s: %d rows merged, one server %d", c.sql, len(got), len(want))
			}
			continue
		}
		if !ordered {
			sortRowsText(got)
			sortRowsText(want)
		}
		if d := diffRows(got, want, wantCols, avgCols); d != "" {
			t.Errorf("%s\n  shard SQL %s\n  plan %+v\n  %s", c.sql, sc.SQL, sc.Plan, d)
		}
	}
	t.Logf("%d cases ran on Postgres", ran)
	if ran < 40 {
		t.Errorf("only %d cases ran on Postgres", ran)
	}
	if len(empty) > 0 {
		// An empty result proves little: the data should make every case
		// return rows.
		t.Errorf("cases with no rows on one server: %q", empty)
	}
}

const scatterSchema = `
CREATE TABLE customers (id bigint PRIMARY KEY, name text, vip bool, country text);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, status text, total numeric(10,2), qty int,
	created_at timestamp, note text);
CREATE TABLE stores (id int, region text, name text);
CREATE TABLE events (id int, created_at date, kind text);
CREATE TABLE countries (code text, name text);
`

// loadScatterData fills sw_all with every row and sw_s0, sw_s1 with the
// rows the spec map places there (countries, replicated, everywhere).
func loadScatterData(ctx context.Context, t *testing.T, m *shardmap.Map, conns map[string]*pgx.Conn) {
	t.Helper()
	ins := map[string]*strings.Builder{"all": {}, "s0": {}, "s1": {}}
	lit := func(v string, null bool) string {
		if null {
			return "NULL"
		}
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	}
	add := func(table, key, values string) {
		dbs := []string{"all", "s0", "s1"}
		if key != "" {
			tab, ok := m.Table(table)
			if !ok {
				t.Fatalf("table %s not in the map", table)
			}
			shard, err := tab.LocateText(key)
			if err != nil {
				t.Fatal(err)
			}
			dbs = []string{"all", shard}
		}
		for _, db := range dbs {
			fmt.Fprintf(ins[db], "INSERT INTO %s VALUES (%s);\n", table, values)
		}
	}
	countries := []string{"de", "fr", "us"}
	for id := 1; id <= 45; id++ { // 41 to 45 have no orders
		add("customers", strconv.Itoa(id), fmt.Sprintf("%d, %s, %v, %s", id, lit(fmt.Sprintf("cust-%02d", id), false),
			id%3 == 0, lit(countries[id%3], id%7 == 0)))
	}
	statuses := []string{"new", "paid", "shipped", "returned"}
	for id := 1; id <= 300; id++ {
		cid := (id*7)%40 + 1
		total := fmt.Sprintf("%d.%02d", (id*37)%500, 25*(id%4))
		note := []string{"a b", "b c d", "", "x"}[id%4]
		add("orders", strconv.Itoa(cid), fmt.Sprintf("%d, %d, %s, %s, %d, %s, %s", id, cid,
			lit(statuses[(id/3)%4], id%11 == 0), lit(total, id%13 == 0), id%5,
			lit(fmt.Sprintf("2026-01-%02d %02d:00:00", 1+id%28, id%24), false), lit(note, id%9 == 0)))
	}
	regions := []string{"eu", "uk", "us", "ca"}
	for id := 1; id <= 12; id++ {
		add("stores", regions[id%4], fmt.Sprintf("%d, %s, %s", id, lit(regions[id%4], false), lit(fmt.Sprintf("store %d", id), false)))
	}
	for id := 1; id <= 30; id++ {
		d := time.Date(2025, 12, 15, 0, 0, 0, 0, time.UTC).AddDate(0, 0, id).Format("2006-01-02")
		add("events", d, fmt.Sprintf("%d, %s, %s", id, lit(d, false), lit([]string{"a", "b"}[id%2], false)))
	}
	for _, c := range []string{"de", "fr", "us", "new", "paid"} {
		add("countries", "", fmt.Sprintf("%s, %s", lit(c, false), lit("name of "+c, false)))
	}
	for db, b := range ins {
		if _, err := conns[db].Exec(ctx, b.String()); err != nil {
			t.Fatalf("loading %s: %v", db, err)
		}
	}
	for _, db := range []string{"s0", "s1"} {
		var n int
		if err := conns[db].QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n == 0 || n == 300 {
			t.Fatalf("shard %s holds %d of 300 orders (%v): the data is not spread", db, n, err)
		}
	}
}

type colInfo struct {
	name string
	oid  uint32
}

func colNames(cs []colInfo) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.name
	}
	return out
}

// queryText runs sql with args and returns its rows in text format (nil
// is NULL) and its columns.
func queryText(ctx context.Context, c *pgx.Conn, sql string, args []any) ([][]*string, []colInfo, error) {
	rows, err := c.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var cols []colInfo
	for _, f := range rows.FieldDescriptions() {
		cols = append(cols, colInfo{f.Name, f.DataTypeOID})
	}
	var out [][]*string
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]*string, len(raw))
		for i, v := range raw {
			if v != nil {
				s := string(v)
				row[i] = &s
			}
		}
		out = append(out, row)
	}
	return out, cols, rows.Err()
}

func resolveCol(c, n int) int {
	if c < 0 {
		return n + c
	}
	return c
}

func numericOID(oid uint32) bool {
	switch oid {
	case 20, 21, 23, 26, 700, 701, 1700:
		return true
	}
	return false
}

func ratOf(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic("not a number: " + s)
	}
	return r
}

// compareText orders two non-NULL values of a column: numbers by value,
// everything else (text in the C locale, ISO dates, booleans) by bytes.
func compareText(oid uint32, a, b string) int {
	if numericOID(oid) {
		return ratOf(a).Cmp(ratOf(b))
	}
	return strings.Compare(a, b)
}

func rowKey(row []*string, cols []int) string {
	var b strings.Builder
	for _, c := range cols {
		if row[c] == nil {
			b.WriteString("\x00N")
		} else {
			b.WriteString("\x00V" + *row[c])
		}
	}
	return b.String()
}

func argInt(args []any, n int) (int64, bool) {
	if n < 1 || n > len(args) || args[n-1] == nil {
		return 0, false
	}
	return int64(args[n-1].(int)), true
}

// refMerge merges shard rows as the plan says, the slow and obvious way;
// it is the test's reading of gather.Plan, not the gather package.
func refMerge(p gather.Plan, cols []colInfo, parts [][][]*string, args []any) ([][]*string, []colInfo, error) {
	n := len(cols)
	rc := func(c int) int { return resolveCol(c, n) }
	var rows [][]*string
	for _, part := range parts {
		rows = append(rows, part...)
	}
	if p.Aggregating() {
		var group []int
		for _, g := range p.Group {
			group = append(group, rc(g))
		}
		index := map[string]int{}
		var out [][]*string
		for _, r := range rows {
			k := rowKey(r, group)
			i, ok := index[k]
			if !ok {
				index[k] = len(out)
				out = append(out, slices.Clone(r))
				continue
			}
			acc := out[i]
			for _, ag := range p.Aggs {
				c := rc(ag.Col)
				switch ag.Kind {
				case gather.AggCount, gather.AggSum, gather.AggAvg:
					acc[c] = addText(acc[c], r[c])
					if ag.Kind == gather.AggAvg {
						cc := rc(ag.CountCol)
						acc[cc] = addText(acc[cc], r[cc])
					}
				case gather.AggMin, gather.AggMax, gather.AggBoolAnd, gather.AggBoolOr:
					if r[c] == nil {
						continue
					}
					if acc[c] == nil {
						acc[c] = r[c]
						continue
					}
					d := compareText(cols[c].oid, *r[c], *acc[c])
					if (ag.Kind == gather.AggMin || ag.Kind == gather.AggBoolAnd) && d < 0 || (ag.Kind == gather.AggMax || ag.Kind == gather.AggBoolOr) && d > 0 {
						acc[c] = r[c]
					}
				default:
					return nil, nil, fmt.Errorf("aggregate kind %d", ag.Kind)
				}
			}
		}
		for _, acc := range out {
			for _, ag := range p.Aggs {
				if ag.Kind != gather.AggAvg {
					continue
				}
				c, cc := rc(ag.Col), rc(ag.CountCol)
				if acc[c] == nil || acc[cc] == nil || ratOf(*acc[cc]).Sign() == 0 {
					acc[c] = nil
					continue
				}
				s := new(big.Rat).Quo(ratOf(*acc[c]), ratOf(*acc[cc])).FloatString(20)
				acc[c] = &s
			}
		}
		rows = out[:0:0]
	keep:
		for _, r := range out {
			for _, h := range p.Having {
				c := rc(h.Col)
				if r[c] == nil {
					continue keep
				}
				d := compareText(cols[c].oid, *r[c], h.Value)
				ok := map[gather.CmpOp]bool{gather.OpEq: d == 0, gather.OpNe: d != 0, gather.OpLt: d < 0,
					gather.OpLe: d <= 0, gather.OpGt: d > 0, gather.OpGe: d >= 0}[h.Op]
				if !ok {
					continue keep
				}
			}
			rows = append(rows, r)
		}
	}
	slices.SortStableFunc(rows, func(a, b []*string) int {
		for _, k := range p.Sort {
			c := rc(k.Col)
			va, vb := a[c], b[c]
			var d int
			switch {
			case va == nil && vb == nil:
				continue
			case va == nil:
				d = 1
				if k.NullsFirst {
					d = -1
				}
				return d
			case vb == nil:
				d = -1
				if k.NullsFirst {
					d = 1
				}
				return d
			}
			d = compareText(cols[c].oid, *va, *vb)
			if k.Desc {
				d = -d
			}
			if d != 0 {
				return d
			}
		}
		return 0
	})
	visible := p.Visible
	if visible == 0 {
		visible = n - p.Hidden
	}
	vis := make([]int, visible)
	for i := range vis {
		vis[i] = i
	}
	if p.Distinct {
		seen := map[string]bool{}
		out := rows[:0:0]
		for _, r := range rows {
			k := rowKey(r, vis)
			if !seen[k] {
				seen[k] = true
				out = append(out, r)
			}
		}
		rows = out
	}
	offset, limit := p.Offset, p.Limit
	if p.OffsetParam > 0 {
		offset, _ = argInt(args, p.OffsetParam)
	}
	if p.LimitParam > 0 {
		var ok bool
		if limit, ok = argInt(args, p.LimitParam); !ok {
			limit = -1
		}
	}
	rows = rows[min(int64(len(rows)), offset):]
	if limit >= 0 {
		rows = rows[:min(int64(len(rows)), limit)]
	}
	for i, r := range rows {
		rows[i] = r[:visible]
	}
	return rows, cols[:visible], nil
}

func addText(a, b *string) *string {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	s := new(big.Rat).Add(ratOf(*a), ratOf(*b)).RatString()
	return &s
}

func sortRowsText(rows [][]*string) {
	all := make([]int, 0)
	if len(rows) > 0 {
		for i := range rows[0] {
			all = append(all, i)
		}
	}
	slices.SortFunc(rows, func(a, b []*string) int { return cmp.Compare(rowKey(a, all), rowKey(b, all)) })
}

// diffRows compares merged rows with the single server's: numbers by
// value (averages within 1e-9, as the server rounds them), the rest as
// text.
func diffRows(got, want [][]*string, cols []colInfo, avg map[int]bool) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d rows merged, one server %d", len(got), len(want))
	}
	for i := range got {
		for j := range want[i] {
			g, w := got[i][j], want[i][j]
			switch {
			case g == nil && w == nil:
				continue
			case g == nil || w == nil:
			case numericOID(cols[j].oid) && avg[j]:
				d := new(big.Rat).Sub(ratOf(*g), ratOf(*w))
				if f, _ := d.Abs(d).Float64(); f < 1e-9 {
					continue
				}
			case numericOID(cols[j].oid):
				if ratOf(*g).Cmp(ratOf(*w)) == 0 {
					continue
				}
			case *g == *w:
				continue
			}
			return fmt.Sprintf("row %d column %s: merged %s, one server %s", i, cols[j].name, show(g), show(w))
		}
	}
	return ""
}

func show(s *string) string {
	if s == nil {
		return "NULL"
	}
	return strconv.Quote(*s)
}
