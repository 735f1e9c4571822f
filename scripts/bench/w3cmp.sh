#!/bin/sh
# W3 interleaved (issue 17 item 14): each round runs scripts/bench/w3.lua
# under every executable given, then the plain C loop (w3ref.c), and prints
# time_run, system time, peak RSS (KB) and the /proc/vmstat deltas that tell
# huge-page faults and compaction apart from 4 KiB faults.
#   sh scripts/bench/w3cmp.sh ROUNDS EXE...
set -e
here=$(cd "$(dirname "$0")" && pwd)
R=$1; shift
ref=${TMPDIR:-/tmp}/w3ref.$$
cc -O2 -o "$ref" "$here/w3ref.c"
trap 'rm -f "$ref" "$ref.t"' EXIT
F="thp_fault_alloc thp_fault_fallback compact_stall pgfault"
snap() { for f in $F; do grep "^$f " /proc/vmstat | cut -d' ' -f2; done | tr '\n' ' '; }
echo "round exe time_run sys_s peak_rss_kb | $F (deltas)"
for i in $(seq "$R"); do
  for exe in "$@" C; do
    a=$(snap)
    if [ "$exe" = C ]; then
      o=$(/usr/bin/time -f "%S %M" -o "$ref.t" "$ref")
    else
      o=$(/usr/bin/time -f "%S %M" -o "$ref.t" "$exe" "$here/w3.lua")
    fi
    b=$(snap)
    d=$(echo "$a|$b" | awk -F'|' '{n=split($1,x," "); split($2,y," "); s=""; for(k=1;k<=n;k++) s=s" "(y[k]-x[k]); print s}')
    echo "$i $exe $(echo "$o" | sed -n 's/time_run=//p') $(cat "$ref.t") |$d"
  done
done
