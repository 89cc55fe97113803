package pgcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// templateFormat changes whenever the template's content changes, so that an
// old template left in the temporary directory is not reused.
const templateFormat = 2

// nodeConfFile is included by the template's postgresql.conf and holds all
// per-node settings, so that settings can change without a new template.
const nodeConfFile = "pgcluster.conf"

// template is an initdb'ed, cleanly shut down data directory.
type template struct {
	data     string // the data directory to copy
	password string // of the superuser postgres
}

var (
	tmplMu  sync.Mutex
	tmplVal *template
)

// getTemplate returns the template, creating it on first use. It is shared by
// processes of the same user and server build: a file lock serialises the
// builders and a rename publishes a finished template atomically.
func getTemplate(ctx context.Context, bin string, u osUser, logf func(string, ...any)) (*template, error) {
	tmplMu.Lock()
	defer tmplMu.Unlock()
	if tmplVal != nil {
		return tmplVal, nil
	}
	id, err := buildID(bin)
	if err != nil {
		return nil, err
	}
	final := filepath.Join(scratchDir(), fmt.Sprintf("pgcluster-template-v%d-u%d-%s", templateFormat, os.Geteuid(), id))
	unlock, err := lockFile(ctx, final+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if t, err := loadTemplate(final); err == nil {
		tmplVal = t
		return t, nil
	}
	_ = os.RemoveAll(final) // an incomplete leftover
	start := time.Now()
	if err := buildTemplate(ctx, bin, u, final); err != nil {
		return nil, err
	}
	logf("pgcluster: initdb template %s built in %v", final, time.Since(start).Round(time.Millisecond))
	t, err := loadTemplate(final)
	if err != nil {
		return nil, err
	}
	tmplVal = t
	return t, nil
}

// buildID identifies the server build: its directory and postgres binary.
func buildID(bin string) (string, error) {
	st, err := os.Stat(filepath.Join(bin, "postgres"))
	if err != nil {
		return "", fmt.Errorf("pgcluster: %w", err)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d\x00%d", bin, st.Size(), st.ModTime().UnixNano())
	return fmt.Sprintf("%016x", h.Sum64()), nil
}

func loadTemplate(dir string) (*template, error) {
	if _, err := os.Stat(filepath.Join(dir, "ok")); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		return nil, err
	}
	pw, err := os.ReadFile(filepath.Join(dir, "password"))
	if err != nil {
		return nil, err
	}
	return &template{data: data, password: strings.TrimSpace(string(pw))}, nil
}

func buildTemplate(ctx context.Context, bin string, u osUser, final string) (err error) {
	build, err := os.MkdirTemp(filepath.Dir(final), "pgcluster-template-build-")
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(build)
		}
	}()
	if err := os.Chmod(build, 0o755); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	data := filepath.Join(build, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := u.chown(data); err != nil {
		return err
	}
	// The password file is kept: it is how later users learn the password.
	pwFile := filepath.Join(build, "password")
	if err := writeOwned(u, pwFile, []byte(randomHex(16)+"\n"), 0o600); err != nil {
		return err
	}
	ctx, cancel := withDefaultTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", "postgres", "--pwfile="+pwFile, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", fmt.Sprintf("--wal-segsize=%d", walSegment>>20))
	cmd.Env = serverEnv()
	cmd.SysProcAttr = u.attr()
	cmd.Dir = build
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgcluster: initdb: %w\n%s", err, tail(out.String(), 20))
	}
	conf := filepath.Join(data, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Per-node settings written by pgcluster.\ninclude_if_exists = '%s'\n", nodeConfFile)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.WriteFile(filepath.Join(build, "ok"), nil, 0o644); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.Rename(build, final); err != nil {
		return fmt.Errorf("pgcluster: publish template: %w", err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, polling so that ctx is honoured.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("pgcluster: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("pgcluster: waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// writeOwned writes a file that the server user owns.
func writeOwned(u osUser, path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return u.chown(path)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// scratchDir is where templates and, by default, shards live: /dev/shm when
// it is a writable directory, since copying a data directory there takes
// 0.05 s against 0.8 s on the disk of our CI machines; else os.TempDir().
func scratchDir() string {
	const shm = "/dev/shm"
	if st, err := os.Stat(shm); err == nil && st.IsDir() && syscall.Access(shm, 2 /* W_OK */) == nil {
		return shm
	}
	return os.TempDir()
}

// withDefaultTimeout bounds ctx by d unless it already has a deadline.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
