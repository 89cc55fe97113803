#!/usr/bin/env bash
# pgbench -S through PgBouncer and through shardwire, interleaved, against one
# local PostgreSQL, both in transaction pooling mode with the same pool size.
# Prints TPS per run, the TPS ratio shardwire/pgbouncer per protocol mode, and
# each proxy's CPU time (utime+stime from /proc/PID/stat) per 1000
# transactions; for each ratio also every round's own (its runs are back to
# back, so on a shared machine they are steadier than the ratio of means)
# and in how many rounds shardwire came out ahead.
#
#   bench/pgbench-vs-pgbouncer.sh
#
# Knobs (environment): DURATION=15 (seconds per run) CLIENTS=32 JOBS=2
# ROUNDS=2 (bouncer/shardwire pairs per mode; each round starts with the
# next proxy in turn) SCALE=10 POOL_SIZE=20
# MODES="simple extended prepared" PROXIES="pgbouncer shardwire" WARMUP=3
# (PROXIES may also name looproto: bench/looproto, an experimental event-loop
# relay that only shows what that shape costs in Go; not a proxy to use)
# SHARDWIRE_BIN=path (a prebuilt binary instead of building ./cmd/shardwire)
# SHARDWIRE_BASE_BIN=path with PROXIES naming base: a second shardwire build
# (say, the last commit's) in the same interleaved run, for an A/B ratio that
# this shared machine's drift does not blur
# KEEP=1 (keep the work directory with every log and config)
#
# PgBouncer before 1.21 cannot keep protocol-level prepared statements in
# transaction mode; its -M prepared runs then fail, which the table shows.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
CLIENTS=${CLIENTS:-32}
JOBS=${JOBS:-2}
ROUNDS=${ROUNDS:-2}
SCALE=${SCALE:-10}
POOL_SIZE=${POOL_SIZE:-20}
MODES=${MODES:-simple extended prepared}
PROXIES=${PROXIES:-pgbouncer shardwire}
WARMUP=${WARMUP:-3}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
wants() { [[ " $PROXIES " == *" $1 "* ]]; }

scripts/install-postgres
if wants pgbouncer && ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
	log "installing pgbouncer"
	sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
CLK_TCK=$(getconf CLK_TCK)

work=$(mktemp -d /tmp/pgbench-vs-pgbouncer.XXXXXX)
chmod 755 "$work"
pids=()
running= # the pgbench of the current run
cleanup() {
	local p
	[ -z "$running" ] || kill -TERM "$running" 2>/dev/null || true
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "${KEEP:-}" ]; then
		log "kept $work (logs, configs)"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building (work dir $work)"
go build -o "$work/benchenv" ./bench/cmd/benchenv
if wants base; then
	[ -n "${SHARDWIRE_BASE_BIN:-}" ] || die "PROXIES names base: set SHARDWIRE_BASE_BIN to the shardwire binary to compare with"
	cp "$SHARDWIRE_BASE_BIN" "$work/shardwire-base"
fi
if wants shardwire; then
	if [ -n "${SHARDWIRE_BIN:-}" ]; then
		cp "$SHARDWIRE_BIN" "$work/shardwire"
	else
		go build -o "$work/shardwire" ./cmd/shardwire ||
			die "cannot build ./cmd/shardwire (run with PROXIES=pgbouncer to bench PgBouncer alone)"
	fi
fi

password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
"$work/benchenv" -info "$work/env.sh" -user bench -password "$password" -database bench -free-ports 6 \
	>"$work/benchenv.log" 2>&1 &
benchenv_pid=$!
pids+=("$benchenv_pid")
for _ in $(seq 600); do
	[ -e "$work/env.sh" ] && break
	kill -0 "$benchenv_pid" 2>/dev/null || { cat "$work/benchenv.log" >&2; die "benchenv exited"; }
	sleep 0.2
done
[ -e "$work/env.sh" ] || die "PostgreSQL did not start in 120 s"
# shellcheck source=/dev/null
source "$work/env.sh"
read -r BOUNCER_PORT SW_PORT SW_ADMIN_PORT LOOP_PORT BASE_PORT BASE_ADMIN_PORT <<<"$FREE_PORTS"
export PGPASSWORD=$password PGSSLMODE=disable PGCONNECT_TIMEOUT=10
log "PostgreSQL on $PRIMARY_ADDR ($("$(pg_config --bindir)/postgres" --version))"

log "pgbench -i -s $SCALE"
pgbench -i -q -s "$SCALE" -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U bench bench >"$work/init.log" 2>&1 ||
	{ cat "$work/init.log" >&2; die "pgbench -i failed"; }

# wait_ready PORT PID NAME LOG: until a login through the proxy works.
wait_ready() {
	for _ in $(seq 150); do
		kill -0 "$2" 2>/dev/null || { cat "$4" >&2; die "$3 exited"; }
		psql -XAtq -h 127.0.0.1 -p "$1" -U bench -d bench -c 'SELECT 1' >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	cat "$4" >&2
	die "$3 does not accept logins on port $1"
}

declare -A PORT PID
if wants pgbouncer; then
	mkdir -p "$work/pgbouncer"
	printf '"bench" "%s"\n' "$PASSWORD_SECRET" >"$work/pgbouncer/userlist.txt"
	cat >"$work/pgbouncer/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PRIMARY_PORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/pgbouncer/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 1000
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
logfile = $work/pgbouncer/pgbouncer.log
EOF
	run_as=()
	if [ "$(id -u)" -eq 0 ]; then # PgBouncer refuses to run as root
		chown -R postgres: "$work/pgbouncer"
		run_as=(setpriv --reuid=postgres --regid=postgres --init-groups)
	fi
	# setpriv execs, so $! is PgBouncer's own pid.
	"${run_as[@]}" "$PGBOUNCER" "$work/pgbouncer/pgbouncer.ini" >"$work/pgbouncer/stdout.log" 2>&1 &
	PID[pgbouncer]=$!
	PORT[pgbouncer]=$BOUNCER_PORT
	pids+=("${PID[pgbouncer]}")
	wait_ready "$BOUNCER_PORT" "${PID[pgbouncer]}" pgbouncer "$work/pgbouncer/pgbouncer.log"
	log "$("$PGBOUNCER" --version | head -n1) on 127.0.0.1:$BOUNCER_PORT, pid ${PID[pgbouncer]}"
fi
# shardwire_config PORT ADMIN_PORT: the config both shardwire builds run.
shardwire_config() {
	cat <<EOF
listen: 127.0.0.1:$1
admin_listen: 127.0.0.1:$2
database: bench
users:
  - name: bench
    password: "$password"
auth_method: scram-sha-256
pool:
  mode: transaction
  size: $POOL_SIZE
  max_clients: 1000
  acquire_timeout: 5s
routing:
  reads: primary
shards:
  - name: s0
    primary: $PRIMARY_ADDR
    replicas: []
default_shard: s0
EOF
}
# start_shardwire NAME BINARY PORT ADMIN_PORT: runs a shardwire build as
# proxy NAME.
start_shardwire() {
	local name=$1 bin=$2
	shardwire_config "$3" "$4" >"$work/$name.yaml"
	"$bin" run -c "$work/$name.yaml" >"$work/$name.log" 2>&1 &
	PID[$name]=$!
	PORT[$name]=$3
	pids+=("${PID[$name]}")
	wait_ready "$3" "${PID[$name]}" "$name" "$work/$name.log"
	log "$name: shardwire $("$bin" version 2>/dev/null || true) on 127.0.0.1:$3, pid ${PID[$name]}"
}
if wants shardwire; then
	start_shardwire shardwire "$work/shardwire" "$SW_PORT" "$SW_ADMIN_PORT"
fi
if wants base; then
	start_shardwire base "$work/shardwire-base" "$BASE_PORT" "$BASE_ADMIN_PORT"
	log "base is $SHARDWIRE_BASE_BIN"
fi
if wants looproto; then
	go build -o "$work/looproto" ./bench/looproto
	"$work/looproto" -listen "127.0.0.1:$LOOP_PORT" -servers "$POOL_SIZE" \
		-server "postgres://bench:$password@$PRIMARY_ADDR/bench?sslmode=disable" >"$work/looproto.log" 2>&1 &
	PID[looproto]=$!
	PORT[looproto]=$LOOP_PORT
	pids+=("${PID[looproto]}")
	wait_ready "$LOOP_PORT" "${PID[looproto]}" looproto "$work/looproto.log"
	log "looproto (experiment) on 127.0.0.1:$LOOP_PORT, pid ${PID[looproto]}"
fi
read -ra proxies <<<"$PROXIES"
for p in "${proxies[@]}"; do
	[ -n "${PID[$p]:-}" ] || die "unknown proxy $p (pgbouncer, shardwire, base, looproto)"
done

# cpu_ticks PID: user and system CPU of the process, all threads, in clock
# ticks.
cpu_ticks() {
	local stat
	stat=$(<"/proc/$1/stat")
	stat=${stat##*) } # the command name may contain spaces
	local -a f
	read -ra f <<<"$stat"
	echo "${f[11]} ${f[12]}" # fields 14 and 15 of proc(5)
}

# bench PROXY MODE SECONDS: runs pgbench and writes "tps transactions failed
# cpu_ms" to $work/last. pgbench runs in the background so that a signal to
# this script is handled at once (bash runs traps only between commands).
bench() {
	local proxy=$1 mode=$2 secs=$3 out u0 s0 u1 s1 rc=0
	out="$work/run.$proxy.$mode.$RANDOM.log"
	read -r u0 s0 <<<"$(cpu_ticks "${PID[$proxy]}")"
	# A proxy that stops answering must not hang the benchmark.
	timeout -k 5 $((secs + 60)) pgbench -n -S -c "$CLIENTS" -j "$JOBS" -T "$secs" -M "$mode" \
		-h 127.0.0.1 -p "${PORT[$proxy]}" -U bench bench >"$out" 2>&1 &
	running=$!
	wait "$running" || rc=$?
	running=
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		log "pgbench through $proxy (-M $mode) did not finish within $((secs + 60))s: killed (the proxy stopped answering?)"
	elif [ "$rc" -ne 0 ]; then
		log "pgbench through $proxy (-M $mode) failed: $(grep -m1 -iE 'error|abort' "$out" || tail -n1 "$out")"
	fi
	read -r u1 s1 <<<"$(cpu_ticks "${PID[$proxy]}")"
	awk -v cpu=$(((u1 - u0 + s1 - s0) * 1000 / CLK_TCK)) -v user=$(((u1 - u0) * 1000 / CLK_TCK)) '
		/^tps = .*without initial connection time/ { tps = $3 }
		/^number of transactions actually processed:/ { tx = $6; sub(/\/.*/, "", tx) }
		/^number of failed transactions:/ { failed = $5 }
		/aborted in command|Run was aborted/ { aborted = 1 }
		END {
			if (tps == "" || aborted) tps = "FAILED"
			printf "%s %s %s %d %d\n", tps, (tx == "" ? 0 : tx), (failed == "" ? 0 : failed), cpu, user
		}' "$out" >"$work/last"
}

if [ "$WARMUP" -gt 0 ]; then
	log "warm-up, ${WARMUP}s per proxy"
	for p in "${proxies[@]}"; do bench "$p" simple "$WARMUP"; done
fi

results="$work/results"
: >"$results"
printf '\n%-9s %-5s %-10s %12s %12s %8s %9s %14s %15s\n' mode round proxy tps transactions failed cpu_ms cpu_ms_per_1k user_ms_per_1k
for mode in $MODES; do
	for round in $(seq "$ROUNDS"); do
		# Each round starts with the next proxy, so that none always runs
		# first or always follows the same one (the machine's load drifts
		# within a round as well as between rounds).
		order=()
		for i in "${!proxies[@]}"; do
			order+=("${proxies[$(((i + round - 1) % ${#proxies[@]}))]}")
		done
		for p in "${order[@]}"; do
			bench "$p" "$mode" "$DURATION"
			read -r tps tx failed cpu user <"$work/last"
			per1k=$(awk -v c="$cpu" -v t="$tx" 'BEGIN { if (t > 0) printf "%.2f", c * 1000 / t; else print "-" }')
			user1k=$(awk -v c="$user" -v t="$tx" 'BEGIN { if (t > 0) printf "%.2f", c * 1000 / t; else print "-" }')
			printf '%-9s %-5s %-10s %12s %12s %8s %9s %14s %15s\n' "$mode" "$round" "$p" "$tps" "$tx" "$failed" "$cpu" "$per1k" "$user1k"
			echo "$mode $p $tps $tx $cpu $user $round" >>"$results"
		done
	done
done

echo
echo "summary (mean over $ROUNDS rounds of ${DURATION}s, pgbench -S -c $CLIENTS -j $JOBS, pool size $POOL_SIZE, transaction pooling):"
awk '
	$3 == "FAILED" { bad[$1 " " $2] = 1; next }
	{
		k = $1 " " $2; n[k]++; tps[k] += $3; tx[k] += $4; cpu[k] += $5; user[k] += $6
		rtps[k, $7] = $3; rcpu[k, $7] = ($4 > 0) ? $5 / $4 : 0
	}
	END {
		nm = split("'"$MODES"'", modes, " ")
		np = split("'"$PROXIES"'", prox, " ")
		for (i = 1; i <= nm; i++) {
			m = modes[i]
			for (j = 1; j <= np; j++) {
				k = m " " prox[j]
				if (bad[k]) printf "  -M %-9s %-10s at least one run FAILED\n", m, prox[j]
				if (n[k]) printf "  -M %-9s %-10s %10.0f tps  %7.2f CPU ms per 1000 transactions (user %.2f, system %.2f)\n", m, prox[j], tps[k] / n[k], cpu[k] * 1000 / tx[k], user[k] * 1000 / tx[k], (cpu[k] - user[k]) * 1000 / tx[k]
			}
			# Ratios against PgBouncer, and shardwire against base (A/B).
			for (r = 1; r <= 2; r++) {
				ref = (r == 1) ? "pgbouncer" : "base"
				b = m " " ref
				for (j = 1; j <= np; j++) {
					if (prox[j] == ref || (r == 2 && prox[j] != "shardwire")) continue
					s = m " " prox[j]
					if (!n[b] || !n[s] || bad[b] || bad[s]) continue
					printf "  -M %-9s TPS ratio %s/%s = %.3f, CPU per transaction ratio = %.3f\n", m, prox[j], ref,
						(tps[s] / n[s]) / (tps[b] / n[b]), (cpu[s] / tx[s]) / (cpu[b] / tx[b])
					# The two runs of a round ran back to back, so their
					# ratio drifts less with the load of a shared machine
					# than the means do.
					line = ""; less = 0; more = 0
					for (rd = 1; rd <= '"$ROUNDS"'; rd++) {
						if (rcpu[b, rd] <= 0 || rtps[b, rd] <= 0) continue
						rc = rcpu[s, rd] / rcpu[b, rd]; rt = rtps[s, rd] / rtps[b, rd]
						line = line sprintf(" %.2f/%.2f", rt, rc)
						less += (rc < 1); more += (rt > 1)
					}
					printf "  -M %-9s   per round, TPS/CPU ratio:%s (CPU lower in %d, TPS higher in %d of %d)\n", m, line, less, more, n[s]
				}
			}
		}
	}' "$results"
