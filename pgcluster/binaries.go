package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BinDirEnv names an environment variable that, when set, is the directory
// holding initdb and postgres; it overrides the search.
const BinDirEnv = "PGCLUSTER_BINDIR"

var (
	binMu  sync.Mutex
	binDir string
)

// PostgresAvailable reports why this machine cannot run servers, or nil when
// it can: the server binaries are found and, when running as root, the
// operating system user postgres exists.
func PostgresAvailable() error {
	if _, err := BinDir(); err != nil {
		return err
	}
	_, err := serverUser()
	return err
}

// BinDir returns the directory of the PostgreSQL server binaries: $PGCLUSTER_BINDIR,
// else `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin, else
// the directory of initdb on PATH.
func BinDir() (string, error) {
	binMu.Lock()
	defer binMu.Unlock()
	if binDir != "" {
		return binDir, nil
	}
	d, err := findBinDir()
	if err != nil {
		return "", err
	}
	binDir = d
	return d, nil
}

func findBinDir() (string, error) {
	if d := os.Getenv(BinDirEnv); d != "" {
		if !hasServer(d) {
			return "", fmt.Errorf("pgcluster: $%s=%s holds no initdb and postgres", BinDirEnv, d)
		}
		return d, nil
	}
	var candidates []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	if dirs, err := filepath.Glob("/usr/lib/postgresql/*/bin"); err == nil {
		candidates = append(candidates, sortVersionDirs(dirs)...)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, d := range candidates {
		if hasServer(d) {
			return d, nil
		}
	}
	return "", errors.New("pgcluster: PostgreSQL server binaries (initdb, postgres) not found; " +
		"run scripts/install-postgres or set " + BinDirEnv)
}

func hasServer(dir string) bool {
	for _, b := range []string{"initdb", "postgres"} {
		st, err := os.Stat(filepath.Join(dir, b))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// sortVersionDirs orders /usr/lib/postgresql/N/bin paths newest first.
func sortVersionDirs(dirs []string) []string {
	version := func(d string) float64 {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		if err != nil {
			return -1
		}
		return v
	}
	out := append([]string(nil), dirs...)
	sort.SliceStable(out, func(i, j int) bool { return version(out[i]) > version(out[j]) })
	return out
}

// osUser is the operating system account the servers run as.
type osUser struct {
	uid, gid int
	asRoot   bool // we are root and switch to uid/gid for every server process
}

// serverUser is postgres when running as root (Postgres refuses root), else
// the current user.
func serverUser() (osUser, error) {
	if os.Geteuid() != 0 {
		return osUser{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return osUser{}, fmt.Errorf("pgcluster: running as root needs the operating system user postgres (Postgres refuses to run as root): %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return osUser{}, fmt.Errorf("pgcluster: uid of postgres: %w", err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return osUser{}, fmt.Errorf("pgcluster: gid of postgres: %w", err)
	}
	return osUser{uid: uid, gid: gid, asRoot: true}, nil
}

// attr is the SysProcAttr of a server process: its own process group, so a
// Ctrl-C at a terminal reaches only our process (which then shuts the servers
// down in order), and SIGKILL when we die, so nothing outlives a crashed test.
func (u osUser) attr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if u.asRoot {
		a.Credential = &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}
	}
	return a
}

// chown hands path to the server user; a no-op unless running as root.
func (u osUser) chown(path string) error {
	if !u.asRoot {
		return nil
	}
	if err := os.Lchown(path, u.uid, u.gid); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return nil
}

// serverEnv is the environment of server processes: ours without libpq's PG*
// variables (which would redirect pg tools) and with the C locale, so that log
// messages, which we match on, are in English.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// ensureReachable makes dir and its ancestors traversable by the server user.
// Only directories inside the system temporary directory are changed (a
// t.TempDir() is 0700); elsewhere a blocked ancestor is an error.
func ensureReachable(u osUser, dir string) error {
	if !u.asRoot {
		return nil
	}
	tmp, err := filepath.Abs(os.TempDir())
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	for d := abs; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		reachable := st.Mode()&0o001 != 0 ||
			(sys != nil && int(sys.Uid) == u.uid && st.Mode()&0o100 != 0) ||
			(sys != nil && int(sys.Gid) == u.gid && st.Mode()&0o010 != 0)
		if !reachable {
			if d == tmp || !strings.HasPrefix(d, tmp+string(filepath.Separator)) {
				return fmt.Errorf("pgcluster: directory %s is not traversable by the postgres user; use a directory under %s", d, tmp)
			}
			if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("pgcluster: %w", err)
			}
		}
		if d == "/" || d == filepath.Dir(d) {
			return nil
		}
	}
}
