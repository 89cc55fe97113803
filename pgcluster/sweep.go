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
func writeOwner(dir string) error {
	start, ok := processStart(os.Getpid())
	if !ok {
		return nil // no /proc: no sweeping either
	}
	err := os.WriteFile(filepath.Join(dir, ownerFile), fmt.Appendf(nil, "%d %s\n", os.Getpid(), start), 0o644)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return nil
}

// sweep removes the directories matching pattern whose owner process is
// gone (one that was killed, say by a test timeout, before it could close
// them).
func sweep(pattern string, logf func(string, ...any)) {
	dirs, _ := filepath.Glob(pattern)
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // not a shard directory, or still being created
		}
		pidText, start, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		pid, err := strconv.Atoi(pidText)
		if err != nil {
			continue
		}
		if now, alive := processStart(pid); alive && now == start {
			continue
		}
		if err := os.RemoveAll(d); err == nil {
			logf("pgcluster: removed %s, left behind by process %d", d, pid)
		}
	}
}

// processStart returns the start time of pid (field 22 of /proc/PID/stat,
// in clock ticks since boot), which tells a process from a later one that
// reuses its pid.
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
	if len(f) < 20 {
		return "", false
	}
	return f[19], true
}
