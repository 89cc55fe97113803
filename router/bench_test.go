package router

import (
	"os"
	"strconv"
	"testing"
)

const (
	pgbenchSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = 123;"
	pgbenchUpdate = "UPDATE pgbench_accounts SET abalance = abalance + -4242 WHERE aid = 98765;"
	// The TPC-B-like script as one Query string.
	pgbenchScript = "BEGIN; UPDATE pgbench_accounts SET abalance = abalance + -4242 WHERE aid = 98765; " +
		"SELECT abalance FROM pgbench_accounts WHERE aid = 98765; " +
		"UPDATE pgbench_tellers SET tbalance = tbalance + -4242 WHERE tid = 7; " +
		"UPDATE pgbench_branches SET bbalance = bbalance + -4242 WHERE bid = 1; " +
		"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 98765, -4242, CURRENT_TIMESTAMP); END;"
)

func BenchmarkLexer(b *testing.B) {
	b.SetBytes(int64(len(pgbenchSelect)))
	b.ReportAllocs()
	var lx Lexer
	for i := 0; i < b.N; i++ {
		lx.Reset(pgbenchSelect)
		for lx.Next().Kind != TokEOF {
		}
	}
}

func BenchmarkNormalize(b *testing.B) {
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 256)
		lits := make([]Literal, 0, 8)
		for i := 0; i < b.N; i++ {
			buf, lits = AppendNormalize(buf[:0], lits[:0], pgbenchSelect)
		}
	})
	b.Run("alloc", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			Normalize(pgbenchSelect)
		}
	})
}

func BenchmarkInspect(b *testing.B) {
	for _, bc := range []struct{ name, sql string }{
		{"select", pgbenchSelect},
		{"begin", "BEGIN;"},
		{"update", pgbenchUpdate},
		{"commit", "END;"},
		{"script", pgbenchScript},
		{"set", "SET search_path TO \"$user\", public"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]Statement, 0, 8)
			for i := 0; i < b.N; i++ {
				buf = AppendInspect(buf[:0], bc.sql)
			}
			if buf[0].Command == CmdOther {
				b.Fatal("not recognised")
			}
		})
	}
	// The lexer's answer for the statements inspectPlain shortcuts.
	for _, bc := range []struct{ name, sql string }{{"select-lexed", pgbenchSelect}, {"update-lexed", pgbenchUpdate}} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]Statement, 0, 8)
			for i := 0; i < b.N; i++ {
				buf = appendInspectLexed(buf[:0], bc.sql)
			}
		})
	}
	b.Run("select-alloc", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			Inspect(pgbenchSelect)
		}
	})
}

// BenchmarkClassifyCached is the routing decision for a shape already in
// the cache, normalisation included: what every repeated statement costs.
func BenchmarkClassifyCached(b *testing.B) {
	for _, bc := range []struct{ name, sql string }{
		{"select", pgbenchSelect},
		{"update", pgbenchUpdate},
		{"script", pgbenchScript},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := NewAnalyzer(Config{})
			want := a.Classify(bc.sql)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if a.Classify(bc.sql) != want {
					b.Fatal("cache miss")
				}
			}
		})
	}
	b.Run("select-scratch", func(b *testing.B) {
		a := NewAnalyzer(Config{})
		var s Scratch
		want := a.ClassifyWith(&s, pgbenchSelect)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if a.ClassifyWith(&s, pgbenchSelect) != want {
				b.Fatal("cache miss")
			}
		}
	})
	// 32 goroutines per CPU (with -cpu 1, 32 goroutines) hitting one hot
	// shape, as under pgbench -S -c 32.
	b.Run("select-parallel", func(b *testing.B) {
		a := NewAnalyzer(Config{})
		want := a.Classify(pgbenchSelect)
		b.ReportAllocs()
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if a.Classify(pgbenchSelect) != want {
					b.Error("cache miss")
					return
				}
			}
		})
	})
	// Many distinct shapes, all resident: lookups spread over the map.
	b.Run("mixed-1000-shapes", func(b *testing.B) {
		a := NewAnalyzer(Config{})
		sqls := make([]string, 1000)
		for i := range sqls {
			sqls[i] = "SELECT c" + strconv.Itoa(i) + " FROM t WHERE id = " + strconv.Itoa(i)
			a.Classify(sqls[i])
		}
		misses := a.Stats().Misses
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			a.Classify(sqls[i%len(sqls)])
		}
		b.StopTimer()
		if a.Stats().Misses != misses {
			b.Fatal("cache misses during the run")
		}
	})
}

// BenchmarkClassifyMiss is a cache miss: the PostgreSQL parser and the
// tree walk, paid once per new shape.
func BenchmarkClassifyMiss(b *testing.B) {
	a := NewAnalyzer(Config{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a.Classify("SELECT abalance, c" + strconv.Itoa(i) + " FROM pgbench_accounts WHERE aid = 123")
	}
}

// BenchmarkRouteCached is the sharding decision for a shape already in the
// cache: "route" is Route alone (what a prepared statement pays at each
// Bind), "classify+route" adds the lexer pass and cache lookup every
// simple Query pays.
func BenchmarkRouteCached(b *testing.B) {
	data, err := os.ReadFile("../configs/shardwire.yaml")
	if err != nil {
		b.Fatal(err)
	}
	m, err := loadMap(string(data))
	if err != nil {
		b.Fatal(err)
	}
	a := NewAnalyzer(Config{})
	for _, bc := range []struct {
		name, sql string
		params    Params
	}{
		{"literal", "SELECT * FROM orders WHERE customer_id = 42 AND status = 'new'", nil},
		{"in-list", "SELECT * FROM orders WHERE customer_id IN (42, 3, 5)", nil},
		{"join", "SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id = 44", nil},
		{"insert", "INSERT INTO orders (id, customer_id, status) VALUES (1, 44, 'new')", nil},
		{"bind-binary", "SELECT * FROM orders WHERE customer_id = $1",
			&BindParams{Values: [][]byte{{0, 0, 0, 0, 0, 0, 0, 44}}, Formats: []int16{1}, Types: []uint32{20}}},
		{"bind-text", "SELECT * FROM orders WHERE customer_id = $1", &BindParams{Values: [][]byte{[]byte("44")}}},
	} {
		var s Scratch
		an := a.ClassifyWith(&s, bc.sql)
		lits := append([]Literal(nil), s.Literals()...)
		if _, err := a.Route(an, bc.sql, lits, bc.params, m, RouteOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name+"/route", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := a.Route(an, bc.sql, lits, bc.params, m, RouteOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/classify+route", func(b *testing.B) {
			b.ReportAllocs()
			var s Scratch
			for i := 0; i < b.N; i++ {
				an := a.ClassifyWith(&s, bc.sql)
				if _, err := a.Route(an, bc.sql, s.Literals(), bc.params, m, RouteOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClassifyMissJoin is a cache miss (parse, read/write walk, key
// analysis) of a typical sharded join.
func BenchmarkClassifyMissJoin(b *testing.B) {
	sql := "SELECT o.*, c.name FROM orders o JOIN customers c ON c.id = o.customer_id LEFT JOIN countries k ON k.code = c.country WHERE c.id = 44 AND o.status IN ('new', 'paid')"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a := NewAnalyzer(Config{})
		if an := a.Classify(sql); an.keys == nil {
			b.Fatal("not analysed")
		}
	}
}
