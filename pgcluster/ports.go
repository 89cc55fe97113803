package pgcluster

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// Ports are drawn at random below the kernel's ephemeral range (32768 and up
// on Linux), so outgoing connections of busy tests never take a port between
// our check and the server's bind; a bind that fails all the same is retried
// on a new port (see Node.start). Randomness keeps concurrent test processes,
// which do not share reserved, apart.
const (
	portLow  = 20000
	portHigh = 32000
)

var (
	portMu   sync.Mutex
	reserved = map[int]bool{}
)

// reservePort returns a loopback port that was free a moment ago and that no
// other node of this process holds.
func reservePort() (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	for range 200 {
		p := portLow + rand.IntN(portHigh-portLow)
		if reserved[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		_ = l.Close()
		reserved[p] = true
		return p, nil
	}
	return 0, errors.New("pgcluster: no free loopback port found")
}

func releasePort(p int) {
	portMu.Lock()
	delete(reserved, p)
	portMu.Unlock()
}
