#!/bin/sh
# luaconcurrent benchmark (`make bench`): luaconcurrent vs `xargs -P` vs GNU
# parallel. scripts/bench/run.lua does the work (workloads, statistics,
# tables, targets; its header lists them and the environment variables it
# reads); this launcher checks the tools, makes the temporary directories
# and removes them however the run ends.
#
# Needs: lua5.4, GNU time (/usr/bin/time), xargs, GNU parallel, coreutils
# timeout, and the build (build/luaconcurrent, build/lib). `make bench`
# installs parallel, time and (for W9) openssh-server and openssh-client,
# and builds first.
set -u
cd "$(dirname "$0")/.." || exit 2
export LC_ALL=C
export PARALLEL_SHELL=/bin/bash   # parallel's --timeout misses jobs under dash
BENCH_ROOT=$PWD
export BENCH_ROOT

for t in lua5.4 /usr/bin/time xargs parallel timeout; do
	command -v "$t" >/dev/null 2>&1 || { echo "bench: missing tool: $t (run make bench)" >&2; exit 2; }
done

BENCH_WORK=$(mktemp -d "${TMPDIR:-/tmp}/lcbench.XXXXXX") || exit 2
own_w3=""
if [ -z "${BENCH_W3DIR:-}" ]; then
	if [ -d /dev/shm ] && [ -w /dev/shm ]; then
		BENCH_W3DIR=$(mktemp -d /dev/shm/lcbench.XXXXXX) || exit 2
		own_w3=$BENCH_W3DIR
	else
		BENCH_W3DIR=$BENCH_WORK/w3
	fi
fi
export BENCH_WORK BENCH_W3DIR
trap 'rm -rf "$BENCH_WORK" $own_w3' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

LUA_PATH="$BENCH_ROOT/lua/?.lua;$BENCH_ROOT/lua/?/init.lua;;" \
LUA_CPATH="$BENCH_ROOT/build/lib/?.so;;" \
	lua5.4 scripts/bench/run.lua
