// Command benchenv starts local PostgreSQL servers with pgcluster for the
// benchmark scripts in bench/, writes how to reach them as shell variable
// assignments, and keeps them running until SIGINT or SIGTERM, when it stops
// them and removes their files.
//
//	benchenv -info FILE [-user bench] [-password PW] [-database bench]
//	         [-auth scram-sha-256] [-replicas 0] [-free-ports 2]
//
// FILE is written once every server accepts connections (write-then-rename,
// so its existence means ready), with PRIMARY_HOST, PRIMARY_PORT,
// PRIMARY_ADDR, PRIMARY_LOG, SOCKET_DIR, PASSWORD_SECRET (the stored
// SCRAM or md5 secret of the user, for PgBouncer's auth_file), REPLICA_ADDRS
// and FREE_PORTS (loopback ports free at that moment, for proxies).
package main
