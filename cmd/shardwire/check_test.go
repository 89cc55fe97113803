package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	good := writeFile(t, "good.yaml", testConfig)
	three := writeFile(t, "three.yaml", strings.Replace(testConfig, "default_shard: s0",
		"  - name: s2\n    primary: 127.0.0.1:15632\ndefault_shard: s0", 1))
	broken := writeFile(t, "broken.yaml", strings.Replace(strings.Replace(testConfig,
		"s1: [us, ca]", "s7: [us, uk]", 1),
		"{ shard: s1, from: 2026-01-01 }", "{ shard: s1, from: 2025-01-01 }", 1))
	badYAML := writeFile(t, "syntax.yaml", testConfig+"pool: [\n")
	badPool := writeFile(t, "pool.yaml", testConfig+"pool:\n  size: 0\n")
	cases := []struct {
		name       string
		args       []string
		code       int
		out        []string // substrings of stdout
		errLines   []string // exact stderr lines
		errContain string
	}{
		{"valid", []string{"-c", good}, 0, []string{good + ": ok\n"}, nil, ""},
		{"map errors", []string{"-c", broken}, 1, nil, []string{
			broken + `:15: table stores: lists name "s7", which is not a shard`,
			broken + `:15: table stores: value "uk" is in the lists of both s0 and s7`,
			broken + `:20: table events: ranges 0 and 1 overlap`,
		}, ""},
		{"yaml syntax", []string{"-c", badYAML}, 1, nil, nil, badYAML + ":"},
		{"config errors", []string{"-c", badPool}, 1, nil, []string{badPool + ":25: pool.size must be at least 1"}, ""},
		{"against", []string{"-c", three, "--against", good}, 0, []string{
			three + ": ok\n",
			"changes from " + good + " to " + three + ":\n",
			"shards added: s2\n",
			"table countries (replicated):\n  copy the table to the new shards s2\n",
		}, nil, ""},
		{"against itself", []string{"-c", good, "-against", good}, 0, []string{"no changes: every key stays on its shard\n"}, nil, ""},
		{"against a broken file", []string{"-c", good, "--against", broken}, 1, nil, nil, broken + ":20: table events: ranges 0 and 1 overlap"},
		{"missing file", []string{"-c", good + ".nope"}, 1, nil, nil, good + ".nope: read config"},
		{"extra argument", []string{"-c", good, "extra"}, 2, nil, nil, `unexpected argument "extra"`},
		{"unknown flag", []string{"--frobnicate"}, 2, nil, nil, "flag provided but not defined"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, out, errs := run(check, c.args...)
			if code != c.code {
				t.Errorf("check %q = %d, want %d; stdout %q, stderr %q", c.args, code, c.code, out, errs)
			}
			for _, want := range c.out {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			if c.errLines != nil && strings.TrimRight(errs, "\n") != strings.Join(c.errLines, "\n") {
				t.Errorf("stderr:\n%s\nwant:\n%s", errs, strings.Join(c.errLines, "\n"))
			}
			if !strings.Contains(errs, c.errContain) {
				t.Errorf("stderr lacks %q:\n%s", c.errContain, errs)
			}
			if code == 1 {
				lineFormat := regexp.MustCompile(`^[^:]+(:\d+)?: .+$`)
				for _, l := range strings.Split(strings.TrimRight(errs, "\n"), "\n") {
					if !lineFormat.MatchString(l) {
						t.Errorf("stderr line %q is not FILE:LINE: reason", l)
					}
				}
			}
		})
	}
}

// TestCheckAgainstShare checks that the printed moved share of a hashed
// table is the one locate's placements give on sample keys.
func TestCheckAgainstShare(t *testing.T) {
	t.Parallel()
	good := writeFile(t, "good.yaml", testConfig)
	three := writeFile(t, "three.yaml", strings.Replace(testConfig, "default_shard: s0",
		"  - name: s2\n    primary: 127.0.0.1:15632\ndefault_shard: s0", 1))
	code, out, errs := run(check, "-c", three, "--against", good)
	if code != 0 {
		t.Fatalf("check: %d %s", code, errs)
	}
	m := regexp.MustCompile(`table orders \(hash bigint customer_id\): (\d+\.\d)% of keys move`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no moved share for orders in:\n%s", out)
	}
	var keys []string
	for k := 1; k <= 20000; k++ {
		keys = append(keys, strconv.Itoa(k))
	}
	_, before, _ := run(locate, append([]string{"-c", good, "orders"}, keys...)...)
	_, after, _ := run(locate, append([]string{"-c", three, "orders"}, keys...)...)
	b, a := strings.Split(before, "\n"), strings.Split(after, "\n")
	if len(b) != len(keys)+1 || len(a) != len(b) {
		t.Fatalf("locate printed %d and %d lines for %d keys", len(b), len(a), len(keys))
	}
	moved := 0
	for i := range keys {
		if b[i] != a[i] {
			if a[i] != "s2" {
				t.Fatalf("key %s moved %s -> %s", keys[i], b[i], a[i])
			}
			moved++
		}
	}
	measured := 100 * float64(moved) / float64(len(keys))
	printed, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	// 20,000 keys: sampling sigma <= 0.35 points; allow 3 sigma.
	if d := measured - printed; d > 1.1 || d < -1.1 {
		t.Errorf("check prints %.1f%%, locate moves %.2f%% of %d keys", printed, measured, len(keys))
	}
}
