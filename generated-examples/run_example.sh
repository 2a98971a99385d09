#!/usr/bin/env bash
# Runs an example end to end as a test: starts SERVER on an OS-assigned
# loopback port, reads the address from the "listening on ADDRESS" line it
# prints first, runs CLIENT against it (its exit code is the verdict), and
# stops the server by pid.
#   run_example.sh SERVER CLIENT
set -euo pipefail
server="$1" client="$2"
work="$(mktemp -d)"
pid=""
nats_started=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
  [ -n "$nats_started" ] && stop_nats
  rm -rf "$work"
}
trap cleanup EXIT
export DYN_TCP_RPC_HOST=127.0.0.1 DYN_HTTP_RPC_HOST=127.0.0.1
# On the NATS plane without a NATS server given (plain ctest), start one of
# our own, as ./scripts/test does.
plane="$(printf '%s' "${DYN_REQUEST_PLANE:-tcp}" | tr '[:upper:]' '[:lower:]')"
if [ "$plane" = nats ] && [ -z "${NATS_SERVER:-}" ]; then
  source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
  start_nats
  nats_started=1
fi
mkfifo "$work/out"
"$server" >"$work/out" &
pid=$!
exec 3<"$work/out"
if ! IFS= read -r -t 30 -u 3 line; then
  echo "server printed no address within 30 s" >&2
  exit 1
fi
echo "$line"
cat <&3 &  # keep draining what the server prints
address="$(sed -E 's/.*listening on ([^ ]+).*/\1/' <<<"$line")"
"$client" "$address"
