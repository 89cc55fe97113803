package pool

// waitQueue is the FIFO of waiting Borrows, a ring over one slice. A plain
// slice popped from the front (q = q[1:]) loses capacity at its head, so
// under steady load every few waits reallocated it; the ring allocates only
// when more borrowers wait at once than ever before.
type waitQueue struct {
	buf  []*waiter
	head int // index of the first waiter in buf
	n    int // waiters queued
}

func (q *waitQueue) len() int { return q.n }

// at returns the i-th waiter in queue order.
func (q *waitQueue) at(i int) *waiter { return q.buf[(q.head+i)%len(q.buf)] }

func (q *waitQueue) push(w *waiter) {
	if q.n == len(q.buf) {
		grown := make([]*waiter, max(8, 2*len(q.buf)))
		for i := range q.n {
			grown[i] = q.at(i)
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = w
	q.n++
}

// pop takes the first waiter off the queue, or returns nil.
func (q *waitQueue) pop() *waiter {
	if q.n == 0 {
		return nil
	}
	w := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return w
}

// keepIf removes, in order, the waiters for which keep is false.
func (q *waitQueue) keepIf(keep func(*waiter) bool) {
	kept := 0
	for i := range q.n {
		w := q.at(i)
		if keep(w) {
			q.buf[(q.head+kept)%len(q.buf)] = w
			kept++
		}
	}
	for i := kept; i < q.n; i++ {
		q.buf[(q.head+i)%len(q.buf)] = nil
	}
	q.n = kept
}

// remove takes w off the queue if it is there.
func (q *waitQueue) remove(w *waiter) bool {
	found := false
	q.keepIf(func(x *waiter) bool {
		if x == w && !found {
			found = true
			return false
		}
		return true
	})
	return found
}
