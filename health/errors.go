package health

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoWriter is wrapped by the error WaitWriter returns when no writable
// primary appeared in time.
var ErrNoWriter = errors.New("no writable primary")

// ErrCircuitOpen is what a pool should return (wrapped) when AllowDial says
// no: recent connection attempts to the node failed and it is backing off.
var ErrCircuitOpen = errors.New("circuit open: recent connection attempts to the node failed")

// errClass says what an error tells about a node.
type errClass uint8

const (
	// classIgnore: nothing about the node (the caller gave up, bad login).
	classIgnore errClass = iota
	// classFailure: the node may be in trouble (reset, timeout, EOF).
	classFailure
	// classGone: the node certainly does not serve now (nothing listens,
	// it is starting up or shutting down).
	classGone
	// classBusy: the node is alive but refuses more connections; back off
	// dialling, but it is not down.
	classBusy
)

// classify sorts an error from a connection to a node.
func classify(err error) errClass {
	if err == nil || errors.Is(err, context.Canceled) {
		return classIgnore
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "57P03", // cannot_connect_now: starting up, shutting down, in recovery without hot standby
			pgErr.Code == "57P02": // crash_shutdown: the server is restarting
			return classGone
		case pgErr.Code == "57P01":
			// admin_shutdown is also what pg_terminate_backend sends one
			// session: a failure to confirm, not proof the node is gone.
			return classFailure
		case pgErr.Code == "53300", pgErr.Code == "53400": // too_many_connections, configuration_limit_exceeded
			return classBusy
		case hasAnyPrefix(pgErr.Code, "08", "53", "58", "XX"):
			return classFailure
		}
		// Authentication, a missing database, a failing statement: the node
		// answers, so it is up.
		return classIgnore
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return classGone
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, context.DeadlineExceeded) {
		return classFailure
	}
	// Unknown errors from a connection (pgconn wraps many) count as failures:
	// callers report connection errors, not query errors.
	return classFailure
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
