// Package sockio reads and writes plain TCP and Unix sockets with raw,
// non-blocking system calls, waiting through the runtime's network poller
// exactly as net.Conn does.
//
// Why: a proxy makes two writes per transaction to loopback peers, and each
// write wakes the peer, which the kernel often runs at once, preempting the
// writer before its system call returns. net.Conn's Write marks the call as
// blocking (entersyscall), so the runtime's monitor sees a P stuck in a
// system call for more than 20 µs, hands the P to another thread and keeps
// itself awake at its shortest period. Under pgbench -S through shardwire
// that monitor alone took 11% of the proxy's CPU, plus the thread hand-offs
// it caused. A non-blocking send or recv cannot wait, so RawSyscall is safe
// for it; the descriptor stays locked against Close for the duration of the
// call (syscall.RawConn), and deadlines work as before.
//
// A write the socket takes at once (nearly all of them) goes straight to
// sendto without the runtime's descriptor lock and readiness reset: Conn
// counts its direct writers and Close waits for them, so the descriptor
// cannot be closed and reused under one, and a mutex of its own keeps
// concurrent Writes whole. Only a full send buffer waits in
// the poller, where write deadlines apply; a write the socket can take at
// once succeeds even past a write deadline. Reads always go through the
// poller: a read that finds nothing must reset readiness first.
//
// WriteAwaitReadable is a request and the wait for its reply in one: it
// resets the read readiness, writes, then waits, and leaves the reply
// unread. Read would try the socket first, a system call that finds
// nothing right after a request; here the reply cannot slip by between the
// write and the wait, since the wait is armed first and every arrival of
// data reports the socket readable again.
//
// On other systems Wrap returns the connection unchanged.
package sockio
