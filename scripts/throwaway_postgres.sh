# Sourced by scripts/test.sh and the PostgreSQL benchmark: private,
# throwaway PostgreSQL servers in one temporary directory, stopped and
# removed when the calling script exits.
#
#   throwaway_postgres PORT WAL_LEVEL   starts one; prints nothing
#
# Installs PostgreSQL (Debian) when it is missing.

pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$pg_bin" ]; then
    echo "installing PostgreSQL (Debian)"
    pg_sudo=""
    if [ "$(id -u)" != 0 ]; then pg_sudo="sudo"; fi
    $pg_sudo apt-get update -qq
    $pg_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
fi
pg_dir="$(mktemp -d /tmp/shadowcast-pg.XXXXXX)"
if [ "$(id -u)" = 0 ]; then chown postgres "$pg_dir"; fi
pg_servers=()

as_pg() {
    # PostgreSQL refuses to run as root.
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_throwaway_postgres() {
    for server in "${pg_servers[@]}"; do
        as_pg "$pg_bin/pg_ctl" -D "$pg_dir/$server" -m fast stop >/dev/null || true
    done
    rm -rf "$pg_dir"
}
trap stop_throwaway_postgres EXIT

throwaway_postgres() {
    local port=$1 wal_level=$2
    as_pg "$pg_bin/initdb" -D "$pg_dir/$port" -A trust -U postgres >/dev/null
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/$port" -l "$pg_dir/$port.log" -w \
        -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c wal_level=$wal_level" start >/dev/null
    pg_servers+=("$port")
}
