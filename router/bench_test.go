package router

import (
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
