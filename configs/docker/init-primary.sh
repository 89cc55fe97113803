#!/usr/bin/env bash
# Runs once, when a primary's data directory is created (the official
# postgres image runs /docker-entrypoint-initdb.d/* then). Creates the users
# shardwire logs in as, a replication user for the replica, and the sample
# schema of the spec's shard map (tables owned by app, empty).
#
# No `set -u` and no `exit`: the image sources (rather than runs) an init
# script that lost its executable bit, and both would leak into its shell.
set -eo pipefail
: "${APP_PASSWORD:?set APP_PASSWORD}" "${OPS_PASSWORD:?set OPS_PASSWORD}" "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
	-v app_password="$APP_PASSWORD" -v ops_password="$OPS_PASSWORD" \
	-v replication_password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE app LOGIN PASSWORD :'app_password';
CREATE ROLE ops LOGIN PASSWORD :'ops_password';
CREATE ROLE replicator REPLICATION LOGIN PASSWORD :'replication_password';
ALTER DATABASE app OWNER TO app;
GRANT ALL ON SCHEMA public TO app, ops;

SET ROLE app;
CREATE TABLE countries (
  code text PRIMARY KEY,
  name text NOT NULL);
CREATE TABLE customers (
  id         bigint PRIMARY KEY,
  name       text NOT NULL,
  email      text NOT NULL,
  country    text NOT NULL REFERENCES countries (code),
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE orders (
  id          bigint PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers (id),
  amount      numeric(10,2) NOT NULL,
  status      text NOT NULL,
  placed_at   timestamptz NOT NULL);
CREATE TABLE stores (
  id     bigint PRIMARY KEY,
  region text NOT NULL,
  city   text NOT NULL);
CREATE TABLE events (
  id          bigint PRIMARY KEY,
  created_at  date NOT NULL,
  customer_id bigint,
  kind        text NOT NULL);
GRANT ALL ON ALL TABLES IN SCHEMA public TO ops;
SQL

# The image's pg_hba.conf admits "all" databases over TCP, which does not
# cover replication connections.
echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
