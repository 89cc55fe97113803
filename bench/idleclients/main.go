// Command idleclients measures a proxy's memory per idle client: it reads the
// proxy's RSS, opens N client connections that log in and then stay idle,
// reads the RSS again, and prints the difference per client.
//
//	go run ./bench/idleclients -pid $(pidof shardwire) -dsn postgres://app:pw@127.0.0.1:6432/app -n 10000
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func rssKB(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmRSS:") {
			return strconv.Atoi(strings.Fields(sc.Text())[1])
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

func main() {
	pid := flag.Int("pid", 0, "proxy process id")
	dsn := flag.String("dsn", "", "connection string through the proxy")
	n := flag.Int("n", 10000, "idle clients")
	par := flag.Int("parallel", 32, "concurrent logins")
	hold := flag.Duration("hold", 0, "keep the clients connected this long after measuring")
	flag.Parse()
	if *pid == 0 || *dsn == "" {
		flag.Usage()
		os.Exit(2)
	}
	ctx := context.Background()
	// Warm up: one client and a query, so pools and buffers exist before
	// the baseline.
	warm, err := pgconn.Connect(ctx, *dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := warm.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	time.Sleep(time.Second)
	before, err := rssKB(*pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	conns := make([]*pgconn.PgConn, *n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, *par)
	var mu sync.Mutex
	var firstErr error
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := pgconn.Connect(ctx, *dsn)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			// One query each, so every session has been through the
			// whole path once, then idles.
			_, err = c.Exec(ctx, "SELECT 1").ReadAll()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "connect:", firstErr)
		os.Exit(1)
	}
	// Let the proxy's GC settle (idle stacks shrink at GC).
	time.Sleep(3 * time.Second)
	after, err := rssKB(*pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("idle clients: %d\nRSS before: %d KiB\nRSS after:  %d KiB\nper client: %.2f KiB\n",
		*n, before, after, float64(after-before)/float64(*n))
	time.Sleep(*hold)
	for _, c := range conns {
		_ = c.Close(ctx)
	}
	_ = warm.Close(ctx)
}
