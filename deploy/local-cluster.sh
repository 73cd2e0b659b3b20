#!/usr/bin/env bash
# A two-node decentd cluster on this machine, with one command:
#
#   deploy/local-cluster.sh [path/to/decentd]
#
# Starts PostgreSQL (a fresh cluster in a temporary directory, on a free port) and nats-server,
# then two decentd nodes sharing them: http://127.0.0.1:3001 and http://127.0.0.1:3002 serve one
# community (sign up on one, chat on the other). The first node prints the setup link for the
# administrator. Ctrl-C stops everything and removes the temporary directory.
#
# Needs Debian's postgresql and nats-server packages (apt-get install postgresql nats-server).
# Ports: DECENTD_PORTS (default "3001 3002"), PGPORT (default 55432), NATS_PORT (default 54222).
set -euo pipefail

bin=${1:-$(dirname "$0")/../target/release/decentd}
[ -x "$bin" ] || { echo "no decentd binary at $bin: cargo build --release, or pass its path" >&2; exit 1; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$pg_bin" ] || { echo "PostgreSQL is not installed: apt-get install postgresql" >&2; exit 1; }
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$nats" ] || { echo "nats-server is not installed: apt-get install nats-server" >&2; exit 1; }
ports=(${DECENTD_PORTS:-3001 3002})
pgport=${PGPORT:-55432}
natsport=${NATS_PORT:-54222}

work=$(mktemp -d /tmp/decentd-cluster.XXXXXX)
pids=()
stop() {
  trap - EXIT INT TERM
  echo "stopping the cluster"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT INT TERM

# PostgreSQL refuses to run as root: as root, it runs as the postgres user.
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(runuser -u postgres --)
  chown postgres: "$work"
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 >/dev/null
"${as_pg[@]}" "$pg_bin/postgres" -D "$work/pg" -p "$pgport" -k "$work" \
  -c listen_addresses=127.0.0.1 >"$work/postgres.log" 2>&1 &
pids+=($!)
until psql -X -q -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1; do
  sleep 0.2
done
psql -X -q -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -c 'CREATE DATABASE decentd'
store="postgres://postgres@127.0.0.1:$pgport/decentd"
echo "PostgreSQL: $store"

"$nats" -a 127.0.0.1 -p "$natsport" >"$work/nats.log" 2>&1 &
pids+=($!)
echo "NATS: nats://127.0.0.1:$natsport"

mkdir -p "$work/uploads"
for i in "${!ports[@]}"; do
  port=${ports[$i]}
  mkdir -p "$work/node$i"
  "$bin" serve --listen "127.0.0.1:$port" --data "$work/node$i" \
    --store "$store" --bus "nats://127.0.0.1:$natsport" --uploads "$work/uploads" &
  pids+=($!)
  # One node at a time: the first applies the schema and prints the setup link.
  until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.2; done
  echo "node $((i + 1)): http://127.0.0.1:$port"
done
echo "the cluster is up; Ctrl-C stops it"
wait
