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
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
export DYN_TCP_RPC_HOST=127.0.0.1 DYN_HTTP_RPC_HOST=127.0.0.1
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
