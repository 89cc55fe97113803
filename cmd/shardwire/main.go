// Command shardwire is a sharding, pooling PostgreSQL proxy.
//
//	shardwire run -c FILE        run the proxy (also: shardwire -c FILE)
//	shardwire check -c FILE      validate a config [--against OLD]
//	shardwire locate -c FILE TABLE KEY
//	shardwire demo
//	shardwire version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch cmd := args[0]; {
	case cmd == "run":
		return runProxy(args[1:], stderr)
	case strings.HasPrefix(cmd, "-"):
		return runProxy(args, stderr)
	case cmd == "check":
		return runCheck(args[1:], stdout, stderr)
	case cmd == "locate":
		return runLocate(args[1:], stdout, stderr)
	case cmd == "demo":
		return runDemo(args[1:], stdout, stderr)
	case cmd == "version", cmd == "--version":
		fmt.Fprintf(stdout, "shardwire %s\n", version)
		return 0
	case cmd == "help", cmd == "-h", cmd == "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "shardwire: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  shardwire run -c FILE             run the proxy (also: shardwire -c FILE)
  shardwire check -c FILE [--against OLD]
                                    validate a config; with --against, show what changes
  shardwire locate -c FILE TABLE KEY
                                    print the shard that holds KEY of TABLE
  shardwire demo                    run two local shards and shardwire in front of them
  shardwire version                 print the version
FILE defaults to $SHARDWIRE_CONFIG, then /etc/shardwire/shardwire.yaml.
`)
}

// configPath returns the -c value, or the documented defaults.
func configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv("SHARDWIRE_CONFIG"); env != "" {
		return env
	}
	return "/etc/shardwire/shardwire.yaml"
}

// parseArgs parses a subcommand's flags. It returns the exit code to end
// with and false when the command should stop: 0 after -h, 2 for bad flags
// or (with noArgs) stray arguments.
func parseArgs(fs *flag.FlagSet, args []string, noArgs bool, stderr io.Writer) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if noArgs && fs.NArg() > 0 {
		fmt.Fprintf(stderr, "shardwire %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return 2, false
	}
	return 0, true
}
