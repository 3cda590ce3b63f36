#!/bin/bash
# netdemux against a C AF_XDP reference, side by side: xdp-bench (xdp-tools, libxdp) `xsk-drop`
# against `netdemux run --udp-sink`, and `xsk-tx` (hairpin) against `run --udp-echo`, on one
# 1-queue veth pair, one `netdemux gen` on CPU 0 (64-byte UDP, 64 flows), every receiver on
# CPU 1, copy mode, spinning and busy-polling, interleaved rounds (ROUNDS, 3 by default): each
# ratio is taken within a round, the two sides one right after the other in a random order, and
# reported as the median of the rounds' ratios with the lowest and highest (and, from 6 rounds, a
# 95% interval for the median).
#
# The repository does not need xdp-tools: build it apart and pass its xdp-bench, e.g.
#   git clone https://github.com/xdp-project/xdp-tools && cd xdp-tools && git checkout v1.6.3
#   apt-get install clang libelf-dev libpcap-dev libbpf-dev m4 pkg-config bpftool
#   FORCE_SYSTEM_LIBBPF=1 ./configure && make -C lib/util && make -C xdp-bench
#   [ROUNDS=5] bench/c-reference.sh path/to/xdp-bench [path/to/netdemux]        (as root)
#
# For the transmitters, an XDP_DROP program (`xdp-bench drop`) on the peer end takes every
# answer: xsk-tx sends frames back unchanged (the peer's kernel drops them early as another
# host's), netdemux's echo sends real answers (the peer's kernel would look up a UDP socket and
# send ICMP errors, on the echo's core) — dropped at the peer's XDP, both cost the same there.
set -euo pipefail
XB=${1:?usage: c-reference.sh XDP_BENCH [NETDEMUX]}
BIN=${2:-$(dirname "$0")/../target/release/netdemux}
ROUNDS=${ROUNDS:-3}
[ "$(id -u)" = 0 ] || { echo "run as root (it creates namespaces and loads XDP programs)" >&2; exit 1; }
A=ncref$$a B=ncref$$b
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del $A 2>/dev/null || true
  ip netns del $B 2>/dev/null || true
}
trap cleanup EXIT
ip netns add $A
ip netns add $B
ip link add vA netns $A numrxqueues 1 numtxqueues 1 type veth peer name vB netns $B numrxqueues 1 numtxqueues 1
ip -n $A addr add 198.18.0.1/24 dev vA
ip -n $B addr add 198.18.0.2/24 dev vB
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set vA up
ip -n $B link set vB up
ip netns exec $A ethtool -K vA tx off >/dev/null
ip netns exec $A ping -q -c1 -w5 -i0.1 198.18.0.2 >/dev/null
ip netns exec $B ping -q -c1 -w5 -i0.1 198.18.0.1 >/dev/null

json() { python3 -c "import json,sys; v=json.load(sys.stdin); print(v$1)"; }
gen() { "$BIN" --netns $A gen --iface vA --dst 198.18.0.2:7000 --duration 3 --json 2>/dev/null; }
stat() { "$BIN" --netns $B stats --iface vB --json | json "$1"; }

# One measurement: prints "received-or-answered per second".
measure() {
  local kind=$1 mode=$2 g got
  case $kind in
    xsk-drop|xsk-tx)
      local flag=""
      [ "$mode" = busy ] && flag=-B
      ip netns exec $B taskset -c 1 "$XB" $kind -C copy $flag -d 6 -i 1 vB >/tmp/ncref.$$ 2>&1 &
      local x=$!
      sleep 1.5
      g=$(gen)
      wait $x
      local what=RX
      [ $kind = xsk-tx ] && what=TX
      got=$(grep -A3 '^ sock0' /tmp/ncref.$$ | awk -v w=$what '$1 == w {print $2}')
      ;;
    sink|echo)
      local extra=() field='["services"][0]["packets"]'
      [ "$mode" = busy ] && extra=(--busy-poll)
      [ $kind = echo ] && field='["queues"][0]["tx"]'
      "$BIN" --netns $B run --iface vB --udp-$kind 198.18.0.2:7000 --cpu 1 --spin "${extra[@]}" >/dev/null 2>&1 &
      local d=$!
      for _ in $(seq 100); do
        "$BIN" --netns $B stats --iface vB --json 2>/dev/null | grep -q '"services"' && break
        sleep 0.1
      done
      local before
      before=$(stat "$field")
      g=$(gen)
      sleep 0.3
      got=$(( $(stat "$field") - before ))
      kill -TERM $d
      wait $d || true
      ;;
  esac
  python3 -c "print($got / $(echo "$g" | json '["duration_s"]'))"
}

declare -A R P
ip netns exec $A "$XB" drop -i 100 vA >/dev/null 2>&1 &
PIDS+=($!)
sleep 1
for round in $(seq "$ROUNDS"); do
  for pair in "xsk-drop sink" "xsk-tx echo"; do
    for mode in busy spin; do
      declare -A got=()
      for kind in $(shuf -e $pair); do
        v=$(measure $kind $mode)
        got[$kind]=$v
        R[$kind.$mode]+="$v "
        printf 'round %s %-8s %-4s %6.3f Mpps\n' $round $kind $mode "$(python3 -c "print($v/1e6)")"
      done
      # The round's ratio: both sides measured one right after the other, so a drift of the
      # VM's speed over the run moves both alike.
      set -- $pair
      P[$2.$mode]+="$(python3 -c "print(${got[$2]} / ${got[$1]})") "
      unset got
    done
  done
done
rm -f /tmp/ncref.$$
median() { python3 -c "import sys; v=sorted(map(float,sys.argv[1:])); n=len(v); print(v[n//2] if n%2 else (v[n//2-1]+v[n//2])/2)" $1; }
# The median of the rounds' ratios, the lowest and highest round, and from 6 rounds on a 95%
# interval for the median from the order statistics (ranks n/2 -/+ 0.98 sqrt(n), as a sign test
# takes them; the udp bench's paired ratios use the same rule).
spread() {
  python3 -c "
import math, sys
v = sorted(map(float, sys.argv[1:])); n = len(v)
m = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
out = f'{m:.2f} ({v[0]:.2f}–{v[-1]:.2f}'
if n >= 6:
    h = 0.98 * math.sqrt(n)
    lo, hi = max(1, math.floor(n / 2 - h)) - 1, min(n, math.ceil(n / 2 + 1 + h)) - 1
    out += f'; 95%: {v[lo]:.2f}–{v[hi]:.2f}'
print(out + ')')" $1
}
echo
echo "netdemux / C reference, the median of the $ROUNDS rounds' ratios (lowest–highest round; from 6 rounds, the median's 95% interval):"
echo
echo "| netdemux / C reference | busy-poll | spin |"
echo "|---|---:|---:|"
for pair in "sink xsk-drop" "echo xsk-tx"; do
  set -- $pair
  row="| $1 / $2 |"
  for mode in busy spin; do
    row+=" $(spread "${P[$1.$mode]}") |"
  done
  echo "$row"
done
echo
for k in "${!R[@]}"; do echo "$k: $(median "${R[$k]}") per s"; done | sort
