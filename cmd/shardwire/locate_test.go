package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testConfig is a valid config without ${…} references, so tests need no
// environment and can run in parallel.
const testConfig = `listen: 127.0.0.1:6432
database: app
users:
  - name: app
    password: x
shards:
  - name: s0
    primary: 127.0.0.1:15432
  - name: s1
    primary: 127.0.0.1:15532
default_shard: s0
tables:
  customers: { key: id, type: bigint, strategy: hash }
  orders: { key: customer_id, type: bigint, strategy: hash }
  stores: { key: region, type: text, strategy: list, lists: { s0: [eu, uk], s1: [us, ca] } }
  events:
    key: created_at
    type: date
    strategy: range
    ranges: [ { shard: s0, to: 2026-01-01 }, { shard: s1, from: 2026-01-01 } ]
  countries: { strategy: replicated }
ring:
  vnodes: 256
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(f func([]string, *bytes.Buffer, *bytes.Buffer) int, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := f(args, &out, &errb)
	return code, out.String(), errb.String()
}

func locate(args []string, out, errb *bytes.Buffer) int { return runLocate(args, out, errb) }
func check(args []string, out, errb *bytes.Buffer) int  { return runCheck(args, out, errb) }

func TestLocate(t *testing.T) {
	t.Parallel()
	cfg := writeFile(t, "shardwire.yaml", testConfig)
	cases := []struct {
		name       string
		args       []string
		code       int
		out        string
		errContain string
	}{
		// The placements of the worked example in docs/sharding.md.
		{"hash", []string{"-c", cfg, "orders", "42"}, 0, "s0\n", ""},
		{"hash on s1", []string{"--config", cfg, "orders", "44"}, 0, "s1\n", ""},
		{"several keys", []string{"-c", cfg, "orders", "42", "44", " 042"}, 0, "s0\ns1\ns0\n", ""},
		{"a negative key after the table", []string{"-c", cfg, "orders", "-5"}, 0, "", ""},
		{"schema and case fold like SQL", []string{"-c", cfg, "Public.ORDERS", "44"}, 0, "s1\n", ""},
		{"list", []string{"-c", cfg, "stores", "us"}, 0, "s1\n", ""},
		{"range edge", []string{"-c", cfg, "events", "2026-01-01"}, 0, "s1\n", ""},
		{"range before the edge", []string{"-c", cfg, "events", "2025-12-31"}, 0, "s0\n", ""},
		{"replicated", []string{"-c", cfg, "countries", "x"}, 0, "s0,s1\n", ""},
		{"unsharded", []string{"-c", cfg, "users", "1"}, 0, "s0\n", "table users is not listed"},
		{"bad key", []string{"-c", cfg, "orders", "abc"}, 1, "", `invalid input syntax for type bigint: "abc"`},
		{"bad key after good ones", []string{"-c", cfg, "orders", "42", "x"}, 1, "s0\n", `invalid input syntax`},
		{"no shard for a value", []string{"-c", cfg, "stores", "fr"}, 1, "", "is in no list and the table has no default shard"},
		{"missing key", []string{"-c", cfg, "orders"}, 2, "", "usage: shardwire locate"},
		{"unknown flag", []string{"-x", "-c", cfg, "orders", "1"}, 2, "", "flag provided but not defined"},
		{"missing file", []string{"-c", cfg + ".nope", "orders", "1"}, 1, "", cfg + ".nope: read config"},
		{"bad table name", []string{"-c", cfg, `"orders`, "1"}, 1, "", "unterminated quoted identifier"},
		{"help", []string{"-h"}, 0, "", "usage: shardwire locate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, out, errs := run(locate, c.args...)
			if code != c.code || (c.out != "" && out != c.out) || !strings.Contains(errs, c.errContain) {
				t.Errorf("locate %q = %d, stdout %q, stderr %q; want %d, %q, stderr containing %q", c.args, code, out, errs, c.code, c.out, c.errContain)
			}
			if c.code == 0 && c.name != "help" && c.name != "unsharded" && errs != "" {
				t.Errorf("stderr %q on success", errs)
			}
		})
	}
}

func TestLocateBrokenConfig(t *testing.T) {
	t.Parallel()
	bad := writeFile(t, "bad.yaml", strings.Replace(testConfig, "s1: [us, ca]", "s7: [us, ca]", 1))
	code, out, errs := run(locate, "-c", bad, "orders", "1")
	if code != 1 || out != "" || !strings.HasPrefix(errs, bad+":15: ") {
		t.Errorf("got %d, %q, %q; want 1 and %s:15: …", code, out, errs, bad)
	}
}

// TestLocateDefaultConfig uses $SHARDWIRE_CONFIG when -c is absent, and
// loads the spec's own file (which needs its password variables).
func TestLocateDefaultConfig(t *testing.T) {
	t.Setenv("SHARDWIRE_CONFIG", "../../configs/shardwire.yaml")
	t.Setenv("APP_PASSWORD", "a")
	t.Setenv("OPS_PASSWORD", "b")
	code, out, errs := run(locate, "orders", "42", "44")
	if code != 0 || out != "s0\ns1\n" {
		t.Errorf("got %d, %q, %q", code, out, errs)
	}
	t.Setenv("SHARDWIRE_CONFIG", "")
	code, _, errs = run(locate, "orders", "42")
	if _, err := os.Stat("/etc/shardwire/shardwire.yaml"); err != nil && (code != 1 || !strings.Contains(errs, "/etc/shardwire/shardwire.yaml")) {
		t.Errorf("without -c or $SHARDWIRE_CONFIG: %d, %q; want the /etc path named", code, errs)
	}
}
