//go:build race

package router

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// allocation counts through the pool are not meaningful.
const raceEnabled = true
