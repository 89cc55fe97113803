package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/shardmap"
)

// runCheck is `shardwire check -c FILE [--against OLD]`. It validates FILE
// (and OLD) with everything the proxy checks before it uses a config,
// including the shard map, and prints each problem to stderr as
// FILE:LINE: reason. A valid FILE prints "FILE: ok"; with --against it then
// prints what changes from OLD to FILE, with the share of each hashed
// table's keys that move and between which shards. With
// routing.two_phase_commit it also asks every shard primary for
// max_prepared_transactions, which must not be 0. Exit status: 0 when
// valid, 1 when a file has errors, 2 for wrong usage.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path, against string
	fs.StringVar(&path, "c", "", "the config `FILE` (default $SHARDWIRE_CONFIG, then /etc/shardwire/shardwire.yaml)")
	fs.StringVar(&path, "config", "", "the same as -c")
	fs.StringVar(&against, "against", "", "compare with the `OLD` config: what moves from OLD to FILE")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: shardwire check [-c FILE] [--against OLD]")
		fmt.Fprintln(stderr, "Validates FILE; with --against, prints what changes from OLD to FILE.")
		fs.PrintDefaults()
	}
	if code, ok := parseArgs(fs, args, true, stderr); !ok {
		return code
	}
	path = configPath(path)
	newMap, ok := loadMap(path, stderr)
	if ok {
		if cfg, err := config.Load(path); err == nil && !checkPreparedTransactions(cfg, path, stderr) {
			ok = false
		}
	}
	if against == "" {
		if !ok {
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
		return 0
	}
	oldMap, oldOK := loadMap(against, stderr)
	if !ok || !oldOK {
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\nchanges from %s to %s:\n", path, against, path)
	if err := shardmap.Compare(oldMap, newMap).Write(stdout); err != nil {
		fmt.Fprintf(stderr, "shardwire check: %v\n", err)
		return 1
	}
	return 0
}
