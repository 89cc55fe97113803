package pgcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// ownerFile in a shard directory names the process that created it. Servers
// die with that process (Pdeathsig), so once it is gone the directory is
// garbage; in /dev/shm such garbage would hold memory until a reboot.
const ownerFile = ".pgcluster-owner"

var (
	sweepShardsOnce  sync.Once
	sweepSocketsOnce sync.Once
)

// writeOwner records this process as the owner of dir.
func writeOwner(dir string) error { return WriteOwner(dir, ownerFile) }

// WriteOwner records this process as the owner of dir, in dir's file name,
// for SweepOrphans. Without /proc it writes nothing (and nothing is swept).
func WriteOwner(dir, name string) error {
	start, ok := processStart(os.Getpid())
	if !ok {
		return nil
	}
	err := os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "%d %s\n", os.Getpid(), start), 0o644)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return nil
}

// sweep removes the directories matching pattern whose owner process is
// gone (one that was killed, say by a test timeout, before it could close
// them).
func sweep(pattern string, logf func(string, ...any)) {
	for _, d := range SweepOrphans(pattern, ownerFile, nil) {
		logf("pgcluster: removed %s, left behind by a process that is gone", d)
	}
}

// SweepOrphans removes the directories matching pattern whose owner file
// name (written by WriteOwner) names a process that no longer runs, with
// remove (nil: os.RemoveAll), and returns them. A directory without the
// file is left alone: it is not one of ours, or is still being created.
func SweepOrphans(pattern, name string, remove func(dir string) error) []string {
	if _, ok := processStart(os.Getpid()); !ok {
		return nil // no /proc: owners cannot be told alive or dead
	}
	if remove == nil {
		remove = os.RemoveAll
	}
	var removed []string
	dirs, _ := filepath.Glob(pattern)
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, name))
		if err != nil {
			continue
		}
		pidText, start, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		pid, err := strconv.Atoi(pidText)
		if err != nil {
			continue
		}
		if now, alive := processStart(pid); alive && now == start {
			continue
		}
		if err := remove(d); err == nil {
			removed = append(removed, d)
		}
	}
	return removed
}

// processStart returns the start time of pid (field 22 of /proc/PID/stat,
// in clock ticks since boot), which tells a process from a later one that
// reuses its pid; a zombie, whose servers are gone already, counts as dead.
func processStart(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", false
	}
	return f[19], true
}
