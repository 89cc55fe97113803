//go:build !linux

package sockio

import "net"

// Wrap returns c unchanged: the raw system calls are written for Linux only.
func Wrap(c net.Conn) net.Conn { return c }
