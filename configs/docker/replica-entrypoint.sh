#!/usr/bin/env bash
# Entrypoint of a streaming replica in docker-compose.yml. On first start it
# clones $PRIMARY_HOST with pg_basebackup (--write-recovery-conf writes
# standby.signal and primary_conninfo), then hands over to the official
# image's entrypoint, which finds a data directory, skips initdb and starts
# postgres as a hot standby streaming from the primary.
set -euo pipefail
: "${PRIMARY_HOST:?set PRIMARY_HOST}" "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	mkdir -p "$PGDATA"
	chown postgres:postgres "$PGDATA"
	chmod 0700 "$PGDATA"
	# The primary listens on TCP only once its init scripts have run.
	until pg_isready -q -h "$PRIMARY_HOST" -p 5432; do
		echo "replica: waiting for $PRIMARY_HOST:5432"
		sleep 1
	done
	echo "replica: cloning $PRIMARY_HOST"
	gosu postgres env PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup \
		--host="$PRIMARY_HOST" --port=5432 --username=replicator \
		--pgdata="$PGDATA" --wal-method=stream --checkpoint=fast --write-recovery-conf
fi
exec docker-entrypoint.sh postgres
