# Sourced by the benchmark scripts: a private PostgreSQL cluster for one run, never a
# system service.
#
# start_pg_cluster DIR [SETTING=VALUE ...]: initdb in DIR/data (as nobody when run as
# root: DIR's parent must let nobody through) and start postgres on a free loopback
# port with those settings. Sets pgbin and pgport, and adds the server's pid to the
# caller's pids array, which its cleanup stops. The server logs to DIR/log.
start_pg_cluster() {
  local dir=$1 setting
  shift
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
    echo "needs PostgreSQL (Debian package postgresql)"
    exit 1
  fi
  local as_pg=() settings=()
  if [ "$(id -u)" -eq 0 ]; then
    as_pg=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
  fi
  for setting in "$@"; do settings+=(-c "$setting"); done
  mkdir -p "$dir/data" "$dir/sock"
  chmod 755 "$dir"
  chmod 700 "$dir/data"
  if [ "$(id -u)" -eq 0 ]; then
    chown -R nobody:nogroup "$dir/data" "$dir/sock"
  fi
  "${as_pg[@]}" "$pgbin/initdb" -D "$dir/data" -U brief --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${as_pg[@]}" "$pgbin/postgres" -D "$dir/data" -p "$pgport" -k "$dir/sock" \
    -c listen_addresses=127.0.0.1 "${settings[@]}" >"$dir/log" 2>&1 &
  pids+=($!)
  until "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$pgport"; do sleep 0.2; done
}
