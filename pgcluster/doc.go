// Package pgcluster starts real, throw-away PostgreSQL servers on loopback
// ports: a shard is a primary with streaming replicas, and several shards can
// be started in parallel. The e2e tests and `shardwire demo` use it.
//
// initdb runs once, into a template directory shared by the processes of the
// same user and server build, and every node is a copy of it. Templates and,
// unless Options.Dir says otherwise, shards live in /dev/shm when it is
// writable (RAM; copying a data directory there is more than ten times faster
// than on the disks of our CI machines), else in os.TempDir(). Because a cleanly shut down data directory is
// a valid base backup, replicas are copies of the same template started with
// standby.signal, so no pg_basebackup is needed and every node of a shard
// starts within about a second. The flip side: all clusters started from one
// template share the same system identifier.
//
// Servers run with durability switched off (fsync, full_page_writes and
// synchronous_commit off): they are for tests and demos, never for data that
// matters. When the process runs as root, Postgres runs as the operating
// system user postgres. The postmaster is a child process that receives
// SIGKILL when its parent dies, so a crashed test leaves no server behind;
// the directories it leaves in the default place are removed by the first
// StartShard of a later process.
//
// Every node has a superuser named postgres, reachable without a password over
// the node's own Unix socket directory (see Node.Connect), and by replication
// connections over 127.0.0.1 with a random password.
package pgcluster
