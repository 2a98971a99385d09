#!/usr/bin/env bash
# A deployment across four hosts, made of network namespaces joined by a
# bridge (in a fifth namespace, so the machine's own network is untouched):
#   h1 10.77.0.1  etcd (discovery) and, for the nats plane, nats-server
#   h2 10.77.0.2  a greeter worker
#   h3 10.77.0.3  a greeter worker
#   h4 10.77.0.4  greeter_fleet_client, which finds the workers through etcd
# While the client calls, the worker on h2 is killed (SIGKILL): the calls go
# on, on h3, and at most the calls in flight on h2 fail.
#
#   run_multihost.sh PLANE GREETER_SERVER FLEET_CLIENT
#
# Exit 77 (a skip, which ctest reports as such) with the reason when this
# machine cannot create the namespaces (not root, or the kernel refuses).
set -euo pipefail
plane="$1" server="$2" client="$3"
in_flight=4

skip() { echo "SKIPPED: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "creating network namespaces needs root"
command -v ip >/dev/null || skip "iproute2's ip is not installed"
command -v etcd >/dev/null || { echo "etcd is not installed (etcd-server)"; exit 1; }
nats_server_bin="$(command -v nats-server || echo /usr/sbin/nats-server)"

tag="dmh$$"  # unique per run: names stay under 15 characters
sw="${tag}sw"
hosts=("${tag}h1" "${tag}h2" "${tag}h3" "${tag}h4")
work="$(mktemp -d)"
pids=()
created=()
cleanup() {
  local p n
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "${created[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$sw" 2>"$work/err" || skip "ip netns add: $(cat "$work/err")"
created+=("$sw")
ip -n "$sw" link add br0 type bridge 2>"$work/err" ||
  skip "the kernel refuses a bridge: $(cat "$work/err")"
ip -n "$sw" link set br0 up
for i in 1 2 3 4; do
  h="${hosts[$((i - 1))]}"
  ip netns add "$h"
  created+=("$h")
  ip link add "${tag}v$i" type veth peer name "${tag}p$i"
  ip link set "${tag}v$i" netns "$h"
  ip link set "${tag}p$i" netns "$sw"
  ip -n "$sw" link set "${tag}p$i" master br0 up
  ip -n "$h" link set "${tag}v$i" name eth0
  ip -n "$h" addr add "10.77.0.$i/24" dev eth0
  ip -n "$h" link set eth0 up
  ip -n "$h" link set lo up
done

# wait_for FILE PATTERN SECONDS: until a line of FILE matches.
wait_for() {
  local _
  for _ in $(seq $(($3 * 10))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no '$2' in $1 within $3 s; it says:" >&2
  cat "$1" >&2
  return 1
}

ip netns exec "${hosts[0]}" etcd --name mh --data-dir "$work/etcd" \
  --listen-client-urls http://10.77.0.1:2379 \
  --advertise-client-urls http://10.77.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster mh=http://127.0.0.1:2380 >"$work/etcd.log" 2>&1 &
pids+=($!)
wait_for "$work/etcd.log" "ready to serve client requests" 30
if [ "$plane" = nats ]; then
  ip netns exec "${hosts[0]}" "$nats_server_bin" -a 10.77.0.1 -p 4222 \
    >"$work/nats.log" 2>&1 &
  pids+=($!)
  wait_for "$work/nats.log" "Server is ready" 30
fi

env_for() {  # env_for HOST_NUMBER
  echo DYN_REQUEST_PLANE="$plane" DYN_DISCOVERY_BACKEND=etcd \
    ETCD_ENDPOINTS=http://10.77.0.1:2379 DYN_NAMESPACE=multihost \
    DYN_DISCOVERY_LEASE_TTL=3s NATS_SERVER=nats://10.77.0.1:4222 \
    DYN_TCP_RPC_HOST="10.77.0.$1" DYN_HTTP_RPC_HOST="10.77.0.$1" \
    DYN_HTTP_RPC_PORT=0
}
# shellcheck disable=SC2046
ip netns exec "${hosts[1]}" env $(env_for 2) "$server" >"$work/w2.log" 2>&1 &
w2=$!
pids+=($w2)
# shellcheck disable=SC2046
ip netns exec "${hosts[2]}" env $(env_for 3) "$server" >"$work/w3.log" 2>&1 &
pids+=($!)
wait_for "$work/w2.log" "listening on 10.77.0.2\|listening on [0-9a-f]\{16\}" 30
wait_for "$work/w3.log" "listening on 10.77.0.3\|listening on [0-9a-f]\{16\}" 30
id2="$(sed -nE 's/.*instance ([0-9a-f]{16}).*/\1/p' "$work/w2.log")"
id3="$(sed -nE 's/.*instance ([0-9a-f]{16}).*/\1/p' "$work/w3.log")"
echo "workers: h2 $id2, h3 $id3 ($plane request plane, etcd on h1)"

# shellcheck disable=SC2046
ip netns exec "${hosts[3]}" env $(env_for 4) "$client" --seconds=8 \
  --in-flight=$in_flight --pause-ms=5 >"$work/client.log" 2>"$work/client.err" &
client_pid=$!
pids+=($client_pid)

# calls_on ID: that instance's count on the client's last line.
calls_on() {
  tail -n 1 "$work/client.log" | grep -o "$1=[0-9]*" | cut -d= -f2 || true
}
# Until both workers have taken calls.
for _ in $(seq 100); do
  a="$(calls_on "$id2")" b="$(calls_on "$id3")"
  [ "${a:-0}" -ge 20 ] && [ "${b:-0}" -ge 20 ] && break
  sleep 0.1
done
[ "${a:-0}" -ge 20 ] && [ "${b:-0}" -ge 20 ] || {
  echo "the client did not reach both workers:" >&2
  cat "$work/client.log" "$work/client.err" >&2
  exit 1
}
kill -9 "$w2"
h3_at_kill="$(calls_on "$id3")"
echo "killed the worker on h2 after $(tail -n 1 "$work/client.log")"
wait "$client_pid" || true
final="$(tail -n 1 "$work/client.log")"
echo "client: $final"
failed="$(grep -o 'failed=[0-9]*' <<<"$final" | cut -d= -f2)"
h3_end="$(calls_on "$id3")"
status=0
if [ "$failed" -gt "$in_flight" ]; then
  echo "FAIL: $failed calls failed; at most the $in_flight in flight on" \
       "the killed worker may" >&2
  status=1
fi
if [ "$((h3_end - h3_at_kill))" -lt 100 ]; then
  echo "FAIL: the calls did not go on on h3 ($h3_at_kill -> $h3_end)" >&2
  status=1
fi
[ "$status" -eq 0 ] || cat "$work/client.err" >&2
exit $status
