package pool

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardwire/shardwire/pgcluster"
)

// startNode starts a one-node PostgreSQL with user app (password pw) and
// database app, authenticating TCP logins with method.
func startNode(t *testing.T, method string) *pgcluster.Node {
	t.Helper()
	sh, err := pgcluster.StartShard(context.Background(), "pool"+method[:2], 0, pgcluster.Options{
		Users: []pgcluster.User{{Name: "app", Password: "pw"}}, Database: "app", AuthMethod: method, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sh.Close() })
	return sh.Primary
}

// selectOne runs SELECT 1 on a borrowed connection at the wire level and
// reports whether its answer arrives within timeout.
func selectOne(c *Conn, timeout time.Duration) error {
	if _, err := c.Write([]byte{'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0}); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	fr := 0
	for {
		hdr, err := c.Reader.Peek(5)
		if err != nil {
			return err
		}
		n := int(hdr[1])<<24 | int(hdr[2])<<16 | int(hdr[3])<<8 | int(hdr[4])
		typ := hdr[0]
		if _, err := c.Reader.Discard(1 + n); err != nil {
			return err
		}
		fr++
		if typ == 'Z' {
			if fr != 4 { // T, D, C, Z
				return errors.New("unexpected reply to SELECT 1")
			}
			return nil
		}
	}
}

// TestDialAuthMethods: the pool logs in with SCRAM, md5 and trust, learns
// the backend key and parameters, and a wrong password is the server's
// 28P01, which the health checker classifies.
func TestDialAuthMethods(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"scram-sha-256", "md5", "trust"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, method)
			p := New(Options{Addr: n.Addr(), User: "app", Password: "pw", Database: "app", Size: 1, ConnectTimeout: 10 * time.Second})
			defer p.Close()
			c, err := p.Borrow(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if c.PID == 0 || len(c.SecretKey) == 0 || c.Params["server_version"] == "" {
				t.Fatalf("startup info missing: pid %d key %x params %v", c.PID, c.SecretKey, c.Params)
			}
			if err := selectOne(c, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			p.Return(c)
			if method == "trust" {
				return
			}
			bad := New(Options{Addr: n.Addr(), User: "app", Password: "wrong", Database: "app", Size: 1, ConnectTimeout: 10 * time.Second})
			defer bad.Close()
			_, err = bad.Borrow(context.Background())
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Fatalf("wrong password: %v", err)
			}
		})
	}
}

// TestFirstReplyUnderLoad: the first reply on a freshly dialled connection
// reaches the pool's reader even when the machine is too busy for the
// handshake's writes to be quick. (pgconn's handshake, used before, could
// leave a background reader on the socket that swallowed it.)
func TestFirstReplyUnderLoad(t *testing.T) {
	t.Parallel()
	n := startNode(t, "scram-sha-256")
	stop := make(chan struct{})
	defer close(stop)
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
					for j := 0; j < 1e5; j++ {
						runtime.KeepAlive(j)
					}
				}
			}
		}()
	}
	var lost atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				p := New(Options{Addr: n.Addr(), User: "app", Password: "pw", Database: "app", Size: 1, ConnectTimeout: 10 * time.Second})
				c, err := p.Borrow(context.Background())
				if err != nil {
					t.Error(err)
					p.Close()
					return
				}
				if err := selectOne(c, 5*time.Second); err != nil {
					lost.Add(1)
				}
				p.Discard(c)
				p.Close()
			}
		}()
	}
	wg.Wait()
	if lost.Load() > 0 {
		t.Fatalf("%d of 200 first replies never arrived", lost.Load())
	}
}
