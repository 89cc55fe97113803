// Package pool keeps server connections to one PostgreSQL node for one user.
//
// A Pool owns its idle connections; a borrowed Conn belongs to the borrower
// until it is handed back with Return (reusable) or Discard (broken or in an
// unknown state). Borrow waits at most until its context ends (BorrowUntil
// also until a deadline), so a client never hangs on a full pool. Waiters
// queue in order; a returned connection goes to the first one, handed over
// under the pool's lock, and one timer per pool, armed for the earliest
// deadline, times out those whose deadline has passed: a client waiting its
// turn under load sets up no timer of its own. Connections are opened with pgconn, which speaks
// every authentication method Postgres may ask for (SCRAM-SHA-256, md5,
// password, trust), then hijacked: from then on the proxy reads and writes
// raw protocol frames on them.
package pool
