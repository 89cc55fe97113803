package health

import (
	"sort"
	"time"
)

// maxSamples bounds the primary WAL positions kept per shard. Samples are
// only added when the position moves, so at the default interval (500ms)
// this covers at least two minutes of continuous writes; a replica further
// behind than the oldest sample is reported at least that far behind.
const maxSamples = 256

type lsnSample struct {
	at  time.Time
	lsn LSN
}

// samples is the recent history of the writer's WAL position: when the
// checker first saw each position. A replica whose replay position has not
// reached a position seen at time t misses data that existed at t, so its
// data is at least (its check time - t) old; a replica that has reached
// every sample lags by less than one check interval. A quiet primary adds no
// samples, so its replicas never look lagged.
type samples struct {
	buf []lsnSample // at and lsn both strictly increasing
}

func (s *samples) reset() { s.buf = s.buf[:0] }

// add records that the writer was at lsn at time at.
func (s *samples) add(at time.Time, lsn LSN) {
	if n := len(s.buf); n > 0 {
		last := s.buf[n-1]
		switch {
		case lsn == last.lsn:
			return // the data at lsn existed since last.at already
		case lsn < last.lsn:
			// A writer going backwards (restored from a backup) makes the
			// history meaningless.
			s.reset()
		case !at.After(last.at):
			return // out of order; keeps both fields increasing
		}
	}
	if len(s.buf) == maxSamples {
		copy(s.buf, s.buf[1:])
		s.buf = s.buf[:maxSamples-1]
	}
	s.buf = append(s.buf, lsnSample{at, lsn})
}

// lag returns how far a replica that had replayed up to replay at time at
// is behind: the age (at at) of the oldest sample it has not reached, and
// the bytes between its replay position and the newest sample taken no
// later than at. ok is false without any sample taken by then.
func (s *samples) lag(at time.Time, replay LSN) (d time.Duration, bytes uint64, ok bool) {
	// Only samples the checker had seen by at count.
	n := sort.Search(len(s.buf), func(i int) bool { return s.buf[i].at.After(at) })
	if n == 0 {
		return 0, 0, false
	}
	seen := s.buf[:n]
	if last := seen[n-1].lsn; last > replay {
		bytes = uint64(last - replay)
	}
	i := sort.Search(len(seen), func(i int) bool { return seen[i].lsn > replay })
	if i < len(seen) {
		d = at.Sub(seen[i].at)
	}
	return d, bytes, true
}
