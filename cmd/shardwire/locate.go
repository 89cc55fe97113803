package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/shardwire/shardwire/config"
	"github.com/shardwire/shardwire/shardmap"
)

// printConfigErrors prints err as FILE:LINE: reason lines, one per problem.
func printConfigErrors(w io.Writer, path string, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", path, err)
}

// loadMap loads the config at path and builds its shard map, printing every
// problem to w.
func loadMap(path string, w io.Writer) (*shardmap.Map, bool) {
	cfg, err := config.Load(path)
	if err != nil {
		printConfigErrors(w, path, err)
		return nil, false
	}
	m, err := shardmap.New(cfg)
	if err != nil {
		printConfigErrors(w, path, err)
		return nil, false
	}
	return m, true
}

// runLocate is `shardwire locate -c FILE TABLE KEY [KEY...]`: it prints, one
// line per KEY, the shard that holds it, by the same rule the proxy routes
// by. KEY is the value's text form, as in a text bind parameter (a
// timestamptz without an offset is taken as UTC). A table that the map does
// not list is unsharded: its line is the default shard (and a note on
// stderr says so, to catch a misspelt name). A replicated table's line is
// every shard, comma-separated. Exit status: 0 on success, 1 when the config
// or a key is bad, 2 for wrong usage.
func runLocate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("locate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path string
	fs.StringVar(&path, "c", "", "the config `FILE` (default $SHARDWIRE_CONFIG, then /etc/shardwire/shardwire.yaml)")
	fs.StringVar(&path, "config", "", "the same as -c")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: shardwire locate [-c FILE] TABLE KEY [KEY...]")
		fmt.Fprintln(stderr, "Prints the shard that holds each KEY of TABLE, one per line.")
		fs.PrintDefaults()
	}
	if code, ok := parseArgs(fs, args, false, stderr); !ok {
		return code
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return 2
	}
	path = configPath(path)
	m, ok := loadMap(path, stderr)
	if !ok {
		return 1
	}
	name, err := shardmap.CanonicalTable(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "shardwire locate: table %q: %v\n", fs.Arg(0), err)
		return 1
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	tb, listed := m.Table(name)
	switch {
	case !listed:
		fmt.Fprintf(stderr, "shardwire locate: table %s is not listed in %s: it is unsharded, on the default shard %s\n", name, path, m.DefaultShard())
		for range fs.Args()[1:] {
			fmt.Fprintln(out, m.DefaultShard())
		}
	case tb.Replicated():
		all := strings.Join(m.Shards(), ",")
		for range fs.Args()[1:] {
			fmt.Fprintln(out, all)
		}
	default:
		for _, key := range fs.Args()[1:] {
			shard, err := tb.LocateText(key)
			if err != nil {
				out.Flush()
				fmt.Fprintf(stderr, "shardwire locate: %v\n", err)
				return 1
			}
			fmt.Fprintln(out, shard)
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(stderr, "shardwire locate: %v\n", err)
		return 1
	}
	return 0
}
