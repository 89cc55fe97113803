// Package e2e holds end-to-end tests: they start real PostgreSQL servers with
// pgcluster, build and run the real shardwire binary, and drive it with real
// clients (pgx, psql, pgbench).
package e2e
