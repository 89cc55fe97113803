//go:build !linux

package proxy

import "net"

// idleWaiter parks idle clients on Linux only (see idle_linux.go); elsewhere
// each client waits on its own goroutine.
type idleWaiter struct{}

func newIdleWaiter(*Server) (*idleWaiter, error) { return nil, nil }

func socketFD(net.Conn) int32 { return -1 }

func (*idleWaiter) park(*session) bool { return false }
func (*idleWaiter) wakeAll()           {}
func (*idleWaiter) close()             {}
func (*idleWaiter) next() *session     { return nil }
