package pgcluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSweep(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	start, ok := processStart(os.Getpid())
	if !ok {
		t.Skip("no /proc")
	}
	mk := func(name, owner string) string {
		d := filepath.Join(parent, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(owner), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	gone := mk("pgcluster-gone-1", fmt.Sprintf("%d 12345\n", dead.Process.Pid))
	reused := mk("pgcluster-reused-1", fmt.Sprintf("%d 1\n", os.Getpid())) // our pid, another start time
	mine := mk("pgcluster-mine-1", fmt.Sprintf("%d %s\n", os.Getpid(), start))
	unowned := mk("pgcluster-unowned-1", "")
	other := mk("someone-else", fmt.Sprintf("%d 12345\n", dead.Process.Pid))

	sweep(filepath.Join(parent, "pgcluster-*"), t.Logf)
	for d, want := range map[string]bool{gone: false, reused: false, mine: true, unowned: true, other: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s: exists = %v, want %v", filepath.Base(d), err == nil, want)
		}
	}
}

// helperEnv makes the test binary, run by TestOwnerCrash, start a shard and
// wait to be killed.
const helperEnv = "PGCLUSTER_TEST_HELPER_DIR"

func TestHelperHoldShard(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for TestOwnerCrash")
	}
	s, err := StartShard(context.Background(), "crash", 1, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ready %s\n", s.Dir)
	time.Sleep(time.Minute)
}

// TestOwnerCrash kills a process holding a shard with SIGKILL: its servers
// must die with it, and the next sweep must remove its directory.
func TestOwnerCrash(t *testing.T) {
	t.Parallel()
	requirePostgres(t)
	// In the scratch directory (RAM where possible), not in a slow t.TempDir().
	parent, err := os.MkdirTemp(scratchDir(), "crashtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldShard$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+parent)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	var shardDir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
			shardDir = d
			break
		}
	}
	if shardDir == "" {
		t.Fatal("helper did not start its shard")
	}
	var pids []int
	for _, node := range []string{"crash-primary", "crash-replica1"} {
		b, err := os.ReadFile(filepath.Join(shardDir, node, "data", "postmaster.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
		pids = append(pids, childPIDs(pid)...)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for _, pid := range pids {
		for processAlive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("server process %d outlived its owner", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	sweep(filepath.Join(parent, "pgcluster-*"), t.Logf)
	if _, err := os.Stat(shardDir); !os.IsNotExist(err) {
		t.Fatalf("sweep left %s: %v", shardDir, err)
	}
}
