#!/bin/sh
# luaconcurrent benchmark: luaconcurrent vs `xargs -P` vs GNU parallel.
#
#   W1  5000 x /bin/true, concurrency 2 and 8            -> tasks/s
#   W2  500 x `sleep 0.5`, concurrency 250                -> wall (ideal 1.0 s)
#   W3  4 x 200 MB to stdout, concurrency 4, all captured -> MB/s, peak RSS
#   W4  50 x `sleep 10`, timeout 0.2 s, concurrency 50    -> wall, leftover sleeps
#       (W4a: the sleep itself; W4b: sh starting two grandchild sleeps)
#   W5  100 000 trivial function tasks, results kept       -> tasks/s
#       (ProcRunAsyncio num_workers 4 and 0, ProcRunMp 2 workers, beside two
#       plain-Lua references under the same executable: a coroutine per task
#       keeping a small result table, and a bare loop keeping nothing)
#   W6  16 CPU-bound function tasks (~0.25 s each, calibrated at start),
#       ProcRunMp 1 vs 2 workers                         -> speed-up
#   W7  10 000 function tasks each lc.sleep(0.1), ProcRunAsyncio, unlimited -> wall
#
# Every workload runs each tool in turn, interleaved (lc, xargs, parallel,
# lc, xargs, parallel, ...), BENCH_RUNS times (default 5); the tables show the
# median wall time of each tool, the derived rate, peak RSS (GNU time %M) and
# the ratio luaconcurrent vs each peer, then each target with PASS/FAIL.
# Table columns: median wall, fastest..slowest run, rate from the median,
# median CPU (user+sys of the tool and its children, GNU time %U+%S), peak RSS
# (GNU time %M: the largest single process of the tree), verified runs.
# The luaconcurrent side is scripts/bench/wN.lua, run by build/luaconcurrent.
# W5-W7 have no external peer: their rows are luaconcurrent configurations
# (and W5's plain-Lua references), interleaved the same way, each in its own
# process; their scripts time only run_all (or the reference loop) with the
# core's monotonic clock and print elapsed=, and the tables show the median of
# that inner time beside the process's own wall time.
#
# Environment:
#   BENCH_RUNS=5            repetitions per workload
#   BENCH_ONLY="W1 W2 W3 W4 W5 W6 W7" workloads to run
#   BENCH_STRICT=1          exit 1 when a target fails (0: report only)
#   LC_BIN=build/luaconcurrent
#   BENCH_W3DIR             where xargs/parallel put W3's captured output
#                           (default /dev/shm when writable, else the temp dir)
#
# Needs: bash (wall clock via $EPOCHREALTIME), GNU time (/usr/bin/time),
# xargs, GNU parallel, coreutils timeout. `make bench` installs parallel and time.

if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u
export LC_ALL=C

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
BDIR=$ROOT/scripts/bench
LC=${LC_BIN:-$ROOT/build/luaconcurrent}
RUNS=${BENCH_RUNS:-5}
ONLY=" ${BENCH_ONLY:-W1 W2 W3 W4 W5 W6 W7} "
STRICT=${BENCH_STRICT:-1}
export PARALLEL_SHELL=/bin/bash   # parallel's --timeout misses jobs under dash
PAR="parallel --will-cite"

for t in /usr/bin/time xargs parallel timeout awk; do
	command -v "$t" >/dev/null 2>&1 || { echo "bench: missing tool: $t (run make bench)" >&2; exit 2; }
done
case $RUNS in ''|*[!0-9]*|0) echo "bench: BENCH_RUNS must be a positive integer" >&2; exit 2;; esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lcbench.XXXXXX") || exit 2
if [ -n "${BENCH_W3DIR:-}" ]; then W3DIR=$BENCH_W3DIR
elif [ -d /dev/shm ] && [ -w /dev/shm ]; then W3DIR=$(mktemp -d /dev/shm/lcbench.XXXXXX)
else W3DIR=$WORK/w3; fi
mkdir -p "$W3DIR" "$WORK/res"
MARKERS=""
cleanup() {
	local m p
	for m in $MARKERS; do  # leftover sleeps of this run only (unique marker)
		for p in $(marked "$m"); do kill -KILL "$p" 2>/dev/null; done
	done
	rm -rf "$WORK"
	case $W3DIR in "$WORK"/*) ;; *) rm -rf "$W3DIR" ;; esac
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

HAVE_LC=1
if [ ! -x "$LC" ]; then
	HAVE_LC=0
	echo "bench: $LC not found or not executable; luaconcurrent rows will be n/a" >&2
fi
# Where the binary came from, then a private copy of it: every run uses the
# same binary even if the checkout is rebuilt while the bench runs.
LC_SRC=$LC
LC_GIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
git -C "$ROOT" diff --quiet HEAD -- src lua 2>/dev/null || LC_GIT="$LC_GIT + uncommitted changes in src/ lua/"
if [ $HAVE_LC = 1 ]; then
	cp "$LC" "$WORK/luaconcurrent" && LC=$WORK/luaconcurrent
fi

# ---------------------------------------------------------------- helpers

# run ID TOOL LIMIT INPUT OUTPUT cmd...   (one timed repetition)
# Appends "wall_s rss_kib rc" to $WORK/res/ID.TOOL; sets WALL, RSS, RC.
run() {
	local id=$1 tool=$2 limit=$3 input=$4 output=$5 t0 t1
	shift 5
	: >"$WORK/rss"
	t0=$EPOCHREALTIME
	timeout -k 5 "$limit" /usr/bin/time -o "$WORK/rss" -f '%M %U %S' "$@" \
		<"$input" >"$output" 2>>"$WORK/$id.$tool.err"
	RC=$?
	t1=$EPOCHREALTIME
	WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
	set -- $(tail -n 1 "$WORK/rss" 2>/dev/null)
	RSS=${1:-} CPU=$(awk -v u="${2:-}" -v s="${3:-}" 'BEGIN { printf "%.3f", (u == "" ? -1 : u + s) }')
	case $RSS in ''|*[!0-9]*) RSS=-1 CPU=-1 ;; esac
	[ "$RC" -eq 124 ] || [ "$RC" -eq 137 ] && echo "bench: $id $tool: killed after the ${limit} s guard" >>"$WORK/$id.$tool.err"
	echo "$WALL $RSS $RC $CPU" >>"$WORK/res/$id.$tool"
}

# mark ID TOOL STATUS : record verification of the last repetition (ok|bad:why)
mark() { echo "$3" >>"$WORK/res/$1.$2.ok"; }

# agg ID TOOL FIELD -> median wall | max rss | number of bad runs
agg() {
	local f=$WORK/res/$1.$2
	[ -s "$f" ] || { echo "n/a"; return; }
	case $3 in
	wall) awk '{ print $1 }' "$f" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) printf "%.4f", v[(NR + 1) / 2]; else printf "%.4f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }' ;;
	min) sort -g "$f" | awk 'NR == 1 { printf "%.3f", $1 }' ;;
	max) sort -g "$f" | awk 'END { printf "%.3f", $1 }' ;;
	cpu) awk '{ print $4 }' "$f" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }' ;;
	rss) awk 'BEGIN { m = -1 } $2 > m { m = $2 } END { print m }' "$f" ;;
	bad) if [ -f "$f.ok" ]; then grep -vc '^ok$' "$f.ok"; else echo 0; fi ;;
	esac
}

fmt() { awk -v x="$1" -v f="$2" 'BEGIN { if (x == "n/a" || x == "") print "n/a"; else printf f, x }'; }
calc() { awk "BEGIN { $1 }"; }  # calc 'print expr' ; n/a propagates badly, callers guard

LINES_OUT=""   # summary lines
FAILS=0
target() {  # target NAME PASS|FAIL DETAIL
	local line
	line=$(printf '  %-4s %-58s %s' "$2" "$1" "$3")
	echo "$line"
	LINES_OUT="$LINES_OUT$line
"
	[ "$2" = PASS ] || FAILS=$((FAILS + 1))
}

# lc_check ID : record whether the luaconcurrent repetition succeeded
lc_check() {
	local id=$1
	if [ "$RC" -eq 0 ]; then mark "$id" lc ok
	else
		mark "$id" lc "bad:rc=$RC"
	fi
}

# table ID UNIT_LABEL RATE_EXPR  (RATE_EXPR: awk expr of w = median wall)
table() {
	local id=$1 label=$2 expr=$3 tool name w r rss bad note
	printf '  %-14s %8s %15s %10s %7s %8s  %s\n' tool "wall(s)" "min..max" "$label" "cpu(s)" "maxRSS" "runs ok"
	for tool in lc xargs parallel; do
		case $tool in lc) name=luaconcurrent ;; xargs) name="xargs -P" ;; parallel) name="GNU parallel" ;; esac
		w=$(agg "$id" $tool wall)
		if [ "$w" = n/a ]; then
			printf '  %-14s %8s\n' "$name" n/a
			continue
		fi
		r=$(calc "w = $w; printf \"%.1f\", $expr")
		rss=$(agg "$id" $tool rss)
		rss=$(calc "printf \"%.1fM\", $rss / 1024")
		bad=$(agg "$id" $tool bad)
		note=$((RUNS - bad))/$RUNS
		printf '  %-14s %8.3f %15s %10s %7s %8s  %s\n' "$name" "$w" "$(agg "$id" $tool min)..$(agg "$id" $tool max)" \
			"$r" "$(agg "$id" $tool cpu)" "$rss" "$note"
	done
	if [ -s "$WORK/res/$id.lc.int" ]; then
		printf '  (luaconcurrent run.time_run median %.3f s: time inside run_all)\n' \
			"$(sort -g "$WORK/res/$id.lc.int" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
	fi
}

# show_err ID TOOL : print the tail of a tool's stderr log when it has runs that failed
show_err() {
	local f=$WORK/$1.$2.err
	[ -f "$WORK/res/$1.$2.ok" ] || return 0
	if [ "$(agg "$1" "$2" bad)" != 0 ]; then
		echo "  -- $2 failures: $(grep -v '^ok$' "$WORK/res/$1.$2.ok" | sort | uniq -c | tr '\n' ' ')"
		[ -s "$f" ] && tail -n 8 "$f" | sed 's/^/     | /'
	fi
}

lc_run() {  # lc_run ID LIMIT script args...  (luaconcurrent repetition + checks)
	local id=$1 limit=$2 t
	shift 2
	if [ $HAVE_LC = 0 ]; then return; fi
	run "$id" lc "$limit" /dev/null "$WORK/$id.lc.out" "$LC" "$@"
	lc_check "$id"
	t=$(sed -n 's/^time_run=//p' "$WORK/$id.lc.out" | tail -n 1)
	[ -n "$t" ] && echo "$t" >>"$WORK/res/$id.lc.int"
	[ "$RC" -eq 0 ] || tail -n 3 "$WORK/$id.lc.err" | sed 's/^/     lc| /'
}

progress() { printf '  run %d/%d:' "$1" "$RUNS"; }
say() { printf ' %s %ss' "$1" "$WALL"; }

ratio() {  # ratio A B -> A/B with 2 decimals, or n/a
	case "$1$2" in *n/a*) echo n/a; return ;; esac
	calc "printf \"%.2f\", $1 / $2"
}
x() { case $1 in n/a) echo n/a ;; *) echo "${1}x" ;; esac; }   # 1.23 -> 1.23x
s() { case $1 in n/a) echo n/a ;; *) echo "${1} s" ;; esac; }  # 0.25 -> 0.25 s
rate() { case $2 in n/a) echo n/a ;; *) calc "printf \"%.0f/s\", $1 / $2" ;; esac; }  # rate N WALL

pass_if() {  # pass_if AWK_CONDITION -> PASS|FAIL (FAIL on n/a)
	case "$1" in *n/a*) echo FAIL; return ;; esac
	calc "print (($1) ? \"PASS\" : \"FAIL\")"
}

lc_valid() {  # lc_valid ID -> 1 if luaconcurrent ran and every repetition verified
	[ $HAVE_LC = 1 ] && [ "$(agg "$1" lc wall)" != n/a ] && [ "$(agg "$1" lc bad)" = 0 ] && echo 1 || echo 0
}

# ---------------------------------------------------------------- header

echo "luaconcurrent benchmark — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: nproc=$(nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), kernel $(uname -r), $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
echo "tools:   luaconcurrent $( [ $HAVE_LC = 1 ] && echo "$LC_SRC (git $LC_GIT; built $(date -u -r "$LC_SRC" '+%H:%M:%S UTC'), run from a copy)" || echo "n/a"),"
echo "         $(xargs --version | head -n 1), $(parallel --version | head -n 1), GNU time $(dpkg-query -W -f '${Version}' time 2>/dev/null || echo '?')"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min; other work on the machine skews the numbers)"
echo "runs:    $RUNS per tool per workload, interleaved; wall = median; PARALLEL_SHELL=$PARALLEL_SHELL"
echo

# warm-up (untimed): page cache, parallel's first-run setup
seq 20 >"$WORK/warm"
xargs -P 2 -n 1 /bin/true <"$WORK/warm" >/dev/null 2>&1
$PAR -j 2 /bin/true <"$WORK/warm" >/dev/null 2>&1
[ $HAVE_LC = 1 ] && "$LC" "$BDIR/w1.lua" 2 20 </dev/null >/dev/null 2>&1

# ---------------------------------------------------------------- W1

if [ "${ONLY#* W1 }" != "$ONLY" ]; then
	seq 5000 >"$WORK/w1.in"
	for c in 2 8; do
		id=w1c$c
		echo "W1  5000 x /bin/true, concurrency $c (lc captures stdout+stderr; xargs captures nothing; parallel groups output)"
		for r in $(seq "$RUNS"); do
			progress "$r"
			lc_run "$id" 300 "$BDIR/w1.lua" "$c" 5000; [ $HAVE_LC = 1 ] && say lc
			run "$id" xargs 300 "$WORK/w1.in" /dev/null xargs -P "$c" -n 1 /bin/true
			[ "$RC" -eq 0 ] && mark "$id" xargs ok || mark "$id" xargs "bad:rc=$RC"; say xargs
			run "$id" parallel 300 "$WORK/w1.in" /dev/null $PAR -j "$c" /bin/true
			[ "$RC" -eq 0 ] && mark "$id" parallel ok || mark "$id" parallel "bad:rc=$RC"; say parallel
			echo
		done
		table "$id" "tasks/s" "5000 / w"
		for t in lc xargs parallel; do show_err "$id" $t; done
		wl=$(agg "$id" lc wall); wx=$(agg "$id" xargs wall); wp=$(agg "$id" parallel wall)
		rx=$(ratio "$wx" "$wl"); rp=$(ratio "$wp" "$wl")
		v=$(lc_valid "$id")
		res=$(pass_if "$v && $rx >= 1.3"); target "W1 c=$c: lc >= 1.3x xargs -P throughput" "$res" \
			"$(x "$rx") (lc $(rate 5000 "$wl"), xargs $(rate 5000 "$wx"))"
		res=$(pass_if "$v && $rp >= 5"); target "W1 c=$c: lc >= 5x GNU parallel throughput" "$res" \
			"$(x "$rp") (lc $(rate 5000 "$wl"), parallel $(rate 5000 "$wp"))"
		echo
	done
fi

# ---------------------------------------------------------------- W2

if [ "${ONLY#* W2 }" != "$ONLY" ]; then
	id=w2
	yes 0.5 | head -n 500 >"$WORK/w2.in"
	echo "W2  500 x 'sleep 0.5', concurrency 250 (ideal wall 1.0 s)"
	for r in $(seq "$RUNS"); do
		progress "$r"
		lc_run "$id" 120 "$BDIR/w2.lua" 500 250 0.5; [ $HAVE_LC = 1 ] && say lc
		run "$id" xargs 120 "$WORK/w2.in" /dev/null xargs -P 250 -n 1 /bin/sleep
		[ "$RC" -eq 0 ] && mark "$id" xargs ok || mark "$id" xargs "bad:rc=$RC"; say xargs
		run "$id" parallel 120 "$WORK/w2.in" /dev/null $PAR -j 250 /bin/sleep
		[ "$RC" -eq 0 ] && mark "$id" parallel ok || mark "$id" parallel "bad:rc=$RC"; say parallel
		echo
	done
	table "$id" "tasks/s" "500 / w"
	for t in lc xargs parallel; do show_err "$id" $t; done
	wl=$(agg "$id" lc wall); wx=$(agg "$id" xargs wall); wp=$(agg "$id" parallel wall)
	v=$(lc_valid "$id")
	echo "  ratios (peer wall / lc wall): xargs $(x "$(ratio "$wx" "$wl")"), parallel $(x "$(ratio "$wp" "$wl")")"
	res=$(pass_if "$v && $wl <= $wx"); target "W2: lc wall <= xargs -P 250 wall" "$res" "lc $(s "$wl") vs xargs $(s "$wx")"
	echo
fi

# ---------------------------------------------------------------- W3

if [ "${ONLY#* W3 }" != "$ONLY" ]; then
	id=w3
	BYTES=200000000
	seq 4 >"$WORK/w3.in"
	echo "W3  4 x 200 MB to stdout ('head -c $BYTES /dev/zero'), concurrency 4, all captured"
	echo "    lc: in memory; xargs: each task's stdout to its own file; parallel: --files (its temp files), in $W3DIR"
	for r in $(seq "$RUNS"); do
		progress "$r"
		lc_run "$id" 120 "$BDIR/w3.lua" 4 "$BYTES" 4; [ $HAVE_LC = 1 ] && say lc
		rm -f "$W3DIR"/x.*
		run "$id" xargs 120 "$WORK/w3.in" /dev/null \
			xargs -P 4 -I{} sh -c 'exec head -c "$1" /dev/zero >"$2"' sh "$BYTES" "$W3DIR/x.{}"
		why=ok; [ "$RC" -eq 0 ] || why="bad:rc=$RC"
		for i in 1 2 3 4; do
			[ "$(stat -c %s "$W3DIR/x.$i" 2>/dev/null)" = "$BYTES" ] || why="bad:short-output"
		done
		mark "$id" xargs "$why"; say xargs
		rm -f "$W3DIR"/x.*
		mkdir -p "$W3DIR/p"
		run "$id" parallel 120 "$WORK/w3.in" "$WORK/w3.files" \
			$PAR -j 4 -N0 --files --tmpdir "$W3DIR/p" head -c "$BYTES" /dev/zero
		why=ok; [ "$RC" -eq 0 ] || why="bad:rc=$RC"
		[ "$(grep -c . "$WORK/w3.files")" = 4 ] || why="bad:files=$(grep -c . "$WORK/w3.files")"
		while read -r f; do
			[ "$(stat -c %s "$f" 2>/dev/null)" = "$BYTES" ] || why="bad:short-output"
		done <"$WORK/w3.files"
		mark "$id" parallel "$why"; say parallel
		rm -rf "$W3DIR/p"
		echo
	done
	table "$id" "MB/s" "4 * $BYTES / 1e6 / w"
	for t in lc xargs parallel; do show_err "$id" $t; done
	wl=$(agg "$id" lc wall); wx=$(agg "$id" xargs wall); wp=$(agg "$id" parallel wall)
	v=$(lc_valid "$id")
	echo "  ratios (lc throughput / peer): xargs $(x "$(ratio "$wx" "$wl")"), parallel $(x "$(ratio "$wp" "$wl")")"
	res=FAIL; [ "$v" = 1 ] && res=PASS
	target "W3: no deadlock, every output exactly $BYTES bytes" "$res" "$((RUNS - $(agg "$id" lc bad)))/$RUNS runs ok"
	# RSS bound: captured (4 x 200 MB) + largest single output (200 MB) + 32 MiB
	lim=$(calc "printf \"%d\", (4 * $BYTES + $BYTES + 32 * 1048576) / 1024")
	rl=$(agg "$id" lc rss)
	res=$(pass_if "$v && $rl > 0 && $rl <= $lim")
	target "W3: lc peak RSS <= captured + largest + 32 MiB" "$res" \
		"$(calc "printf \"%.1f MiB (max of runs) vs limit %.1f MiB\", $rl / 1024, $lim / 1024")"
	mb=n/a; [ "$wl" != n/a ] && mb=$(calc "printf \"%.0f\", 4 * $BYTES / 1e6 / $wl")
	res=$(pass_if "$v && $mb >= 700"); target "W3: lc captures >= 700 MB/s" "$res" "$mb MB/s"
	echo
fi

# ---------------------------------------------------------------- W4

# marked MARKER -> pids of live processes whose command line holds MARKER
# (read from /proc; the pattern "1[0].xxx" keeps grep from matching itself)
marked() {
	local f st
	for f in $(grep -l -- "1[0]${1#10}" /proc/[0-9]*/cmdline 2>/dev/null); do
		f=${f#/proc/}; f=${f%/cmdline}
		st=$(awk '{ print $3 }' "/proc/$f/stat" 2>/dev/null) || continue
		[ -n "$st" ] && [ "$st" != Z ] && echo "$f"
	done | sort -u
}
# leftovers MARKER -> how many live processes still carry MARKER
leftovers() { marked "$1" | grep -c .; }
# leak_check ID TOOL MARKER : count leftovers right after the run and 1 s later, kill them
leak_check() {
	local n0 n1 p
	n0=$(leftovers "$3")
	if [ "$n0" -gt 0 ]; then sleep 1; n1=$(leftovers "$3"); else n1=0; fi
	echo "$n0 $n1" >>"$WORK/res/$1.$2.leak"
	for p in $(marked "$3"); do kill -KILL "$p" 2>/dev/null; done
	LEAK=$n0
}

if [ "${ONLY#* W4 }" != "$ONLY" ]; then
	for mode in sleep grand; do
		if [ $mode = sleep ]; then
			id=w4a
			echo "W4a 50 x 'sleep 10', timeout 0.2 s, concurrency 50 (xargs: coreutils 'timeout 0.2'; parallel: --timeout 0.2)"
		else
			id=w4b
			echo "W4b 50 x sh -c 'sleep 10 & sleep 10; wait' (grandchildren), timeout 0.2 s, concurrency 50"
		fi
		for r in $(seq "$RUNS"); do
			progress "$r"
			# a unique duration per tool and repetition: leftovers are attributable
			m=10.$(printf '%09d' $((RANDOM * 32768 + RANDOM)))
			MARKERS="$MARKERS $m"
			if [ $HAVE_LC = 1 ]; then
				lc_run "$id" 60 "$BDIR/w4.lua" $mode "$m" 50 0.2 50
				leak_check "$id" lc "$m"; say lc; [ "$LEAK" = 0 ] || printf '(%s left)' "$LEAK"
			fi
			yes "$m" | head -n 50 >"$WORK/w4.in"
			# xargs exits 123 when invocations fail (timeout exits 124): expected
			if [ $mode = sleep ]; then
				run "$id" xargs 60 "$WORK/w4.in" /dev/null xargs -P 50 -n 1 timeout 0.2 /bin/sleep
			else
				run "$id" xargs 60 "$WORK/w4.in" /dev/null \
					xargs -P 50 -n 1 timeout 0.2 /bin/sh -c 'sleep "$0" & sleep "$0"; wait'
			fi
			[ "$RC" -eq 123 ] && mark "$id" xargs ok || mark "$id" xargs "bad:rc=$RC"
			leak_check "$id" xargs "$m"; say xargs; [ "$LEAK" = 0 ] || printf '(%s left)' "$LEAK"
			m=10.$(printf '%09d' $((RANDOM * 32768 + RANDOM)))
			MARKERS="$MARKERS $m"
			yes "$m" | head -n 50 >"$WORK/w4.in"
			# parallel exits with the number of failed jobs: 50 expected
			if [ $mode = sleep ]; then
				run "$id" parallel 60 "$WORK/w4.in" /dev/null $PAR -j 50 --timeout 0.2 /bin/sleep
			else
				run "$id" parallel 60 "$WORK/w4.in" /dev/null \
					$PAR -j 50 --timeout 0.2 -q /bin/sh -c 'sleep "$0" & sleep "$0"; wait'
			fi
			[ "$RC" -eq 50 ] && mark "$id" parallel ok || mark "$id" parallel "bad:rc=$RC"
			leak_check "$id" parallel "$m"; say parallel; [ "$LEAK" = 0 ] || printf '(%s left)' "$LEAK"
			echo
		done
		table "$id" "tasks/s" "50 / w"
		for t in lc xargs parallel; do show_err "$id" $t; done
		for t in lc xargs parallel; do
			[ -s "$WORK/res/$id.$t.leak" ] || continue
			printf '  leftover processes (sleep or sh with the marker), %-8s right after exit: %s   1 s later: %s (sum over runs)\n' "$t" \
				"$(awk '{ s += $1 } END { print s }' "$WORK/res/$id.$t.leak")" \
				"$(awk '{ s += $2 } END { print s }' "$WORK/res/$id.$t.leak")"
		done
		wl=$(agg "$id" lc wall); wx=$(agg "$id" xargs wall); wp=$(agg "$id" parallel wall)
		v=$(lc_valid "$id")
		[ "$wp" != n/a ] && [ "$(calc "print ($wp > 2)")" = 1 ] &&
			echo "  note: GNU parallel's --timeout did not end these jobs in time: it returned after ${wp} s (the sleeps ran out)"
		echo "  ratios (peer wall / lc wall): xargs $(x "$(ratio "$wx" "$wl")"), parallel $(x "$(ratio "$wp" "$wl")")"
		res=$(pass_if "$v && $wl <= 0.26"); target "$(echo $id | tr a-z A-Z): lc wall <= 0.26 s" "$res" "lc $(s "$wl") (xargs $(s "$wx"))"
		lk=n/a; [ -s "$WORK/res/$id.lc.leak" ] && lk=$(awk '{ s += $1 } END { print s }' "$WORK/res/$id.lc.leak")
		res=$(pass_if "$v && $lk == 0"); target "$(echo $id | tr a-z A-Z): no sleep left running after lc exits" "$res" "$lk left (all runs)"
		echo
	done
fi

# ---------------------------------------------------------------- function tasks (W5-W7)

# med FILE -> median of the first column (mean of the middle two when even), or n/a
med() {
	[ -s "$1" ] || { echo n/a; return; }
	awk '{ print $1 }' "$1" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) printf "%.4f", v[(NR + 1) / 2]; else printf "%.4f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# fn_run ID TOOL LIMIT script args...  (one repetition of a script that prints
# elapsed=SECONDS: its inner time goes to ID.TOOL.in, build= to ID.TOOL.build)
fn_run() {
	local id=$1 tool=$2 limit=$3 t b
	shift 3
	[ $HAVE_LC = 1 ] || return 0
	run "$id" "$tool" "$limit" /dev/null "$WORK/$id.$tool.out" "$LC" "$@"
	t=$(sed -n 's/^elapsed=//p' "$WORK/$id.$tool.out" | tail -n 1)
	b=$(sed -n 's/^build=//p' "$WORK/$id.$tool.out" | tail -n 1)
	if [ "$RC" -eq 0 ] && [ -n "$t" ]; then
		mark "$id" "$tool" ok
		echo "$t" >>"$WORK/res/$id.$tool.in"
		[ -n "$b" ] && echo "$b" >>"$WORK/res/$id.$tool.build"
		printf ' %s %.3fs' "$tool" "$t"
	else
		mark "$id" "$tool" "bad:rc=$RC"
		printf ' %s FAILED(rc=%s)\n' "$tool" "$RC"
		tail -n 3 "$WORK/$id.$tool.err" | sed "s/^/     $tool| /"
	fi
}

# fn_valid ID TOOL -> 1 if the row ran and every repetition verified
fn_valid() {
	[ $HAVE_LC = 1 ] && [ "$(med "$WORK/res/$1.$2.in")" != n/a ] && [ "$(agg "$1" "$2" bad)" = 0 ] && echo 1 || echo 0
}

# itable ID RATE_LABEL RATE_EXPR TOOL=NAME...  (RATE_EXPR: awk expr of m = median inner time)
itable() {
	local id=$1 label=$2 expr=$3 spec tool name m f rss
	shift 3
	printf '  %-32s %8s %15s %10s %8s %7s %8s  %s\n' row "inner(s)" "min..max" "$label" "wall(s)" "cpu(s)" "maxRSS" "runs ok"
	for spec in "$@"; do
		tool=${spec%%=*} name=${spec#*=} f=$WORK/res/$id.$tool.in
		m=$(med "$f")
		if [ "$m" = n/a ]; then
			printf '  %-32s %8s %15s %10s %8s %7s %8s  %s\n' "$name" n/a "" "" "" "" "" "0/$RUNS"
			continue
		fi
		rss=$(calc "printf \"%.1fM\", $(agg "$id" "$tool" rss) / 1024")
		printf '  %-32s %8.4f %15s %10s %8.3f %7s %8s  %s\n' "$name" "$m" \
			"$(sort -g "$f" | awk 'NR == 1 { a = $1 } END { printf "%.3f..%.3f", a, $1 }')" \
			"$(calc "m = $m; v = $expr; printf (v >= 100 ? \"%.0f\" : \"%.2f\"), v")" "$(agg "$id" "$tool" wall)" \
			"$(agg "$id" "$tool" cpu)" "$rss" "$((RUNS - $(agg "$id" "$tool" bad)))/$RUNS"
	done
}

if [ "${ONLY#* W5 }" != "$ONLY" ]; then
	id=w5 N=100000
	echo "W5  $N trivial function tasks, function(key) return true, key * 2 end; results kept"
	echo "    inner = run_all only (lc; building tasks and runner not timed) or the loop only (references),"
	echo "    core monotonic clock; wall = the whole process; each row its own process of the same luaconcurrent binary"
	for r in $(seq "$RUNS"); do
		progress "$r"
		for m in async4 async0 mp2 refco refloop; do fn_run "$id" $m 120 "$BDIR/w5.lua" $m $N; done
		echo
	done
	itable "$id" "tasks/s" "$N / m" \
		"async4=ProcRunAsyncio num_workers=4" "async0=ProcRunAsyncio num_workers=0" \
		"mp2=ProcRunMp num_workers=2" "refco=ref (a) coroutine per task" "refloop=ref (b) bare loop, no results"
	for m in async4 async0 mp2 refco refloop; do show_err "$id" $m; done
	ico=$(med "$WORK/res/$id.refco.in") ilo=$(med "$WORK/res/$id.refloop.in")
	b=$(med "$WORK/res/$id.async4.build")
	[ "$b" != n/a ] && echo "  (runner construction, outside the timed part: median $b s for ProcRunAsyncio num_workers=4)"
	vco=$(fn_valid "$id" refco)
	for m in async4 async0; do
		im=$(med "$WORK/res/$id.$m.in") v=$(fn_valid "$id" $m) nw=${m#async}
		echo "  ProcRunAsyncio num_workers=$nw vs references (rate ratio): ref (a) $(x "$(ratio "$ico" "$im")"), ref (b) $(x "$(ratio "$ilo" "$im")")"
		res=$(pass_if "$v && $N / $im >= 250000")
		target "W5: ProcRunAsyncio nw=$nw >= 250000 tasks/s" "$res" "$(rate $N "$im")"
		r=$(ratio "$ico" "$im")
		res=$(pass_if "$v && $vco && $r >= 0.8")
		target "W5: ProcRunAsyncio nw=$nw >= 0.8x ref (a) coroutine loop" "$res" \
			"$(x "$r") (lc $(rate $N "$im"), ref (a) $(rate $N "$ico"))"
	done
	im=$(med "$WORK/res/$id.mp2.in") v=$(fn_valid "$id" mp2)
	res=$(pass_if "$v && $N / $im >= 200000")
	target "W5: ProcRunMp 2 workers >= 200000 tasks/s" "$res" "$(rate $N "$im") ($(x "$(ratio "$ico" "$im")") ref (a))"
	echo
fi

if [ "${ONLY#* W6 }" != "$ONLY" ]; then
	id=w6 N=16 LOOPS=n/a CAL=n/a
	if [ $HAVE_LC = 1 ]; then
		"$LC" "$BDIR/w6.lua" calibrate 0.25 >"$WORK/w6.cal" 2>"$WORK/w6.cal.err"
		LOOPS=$(sed -n 's/^loops=//p' "$WORK/w6.cal") CAL=$(sed -n 's/^secs=//p' "$WORK/w6.cal")
		[ -n "$LOOPS" ] || { LOOPS=n/a; tail -n 3 "$WORK/w6.cal.err" | sed 's/^/     cal| /'; }
	fi
	echo "W6  $N CPU-bound function tasks (pure-Lua loop), ProcRunMp num_workers 1 vs 2"
	echo "    calibrated once (plain Lua state of the same binary, no hook): loops=$LOOPS, one pass ${CAL} s; load now $(cut -d' ' -f1-3 /proc/loadavg)"
	if [ "$LOOPS" != n/a ]; then
		for r in $(seq "$RUNS"); do
			progress "$r"
			fn_run "$id" mp1 300 "$BDIR/w6.lua" 1 "$LOOPS" $N
			fn_run "$id" mp2 300 "$BDIR/w6.lua" 2 "$LOOPS" $N
			echo
		done
	fi
	itable "$id" "tasks/s" "$N / m" "mp1=ProcRunMp num_workers=1" "mp2=ProcRunMp num_workers=2"
	for m in mp1 mp2; do show_err "$id" $m; done
	i1=$(med "$WORK/res/$id.mp1.in") i2=$(med "$WORK/res/$id.mp2.in")
	v=$(fn_valid "$id" mp1); [ "$v" = 1 ] && v=$(fn_valid "$id" mp2)
	if [ "$i1" != n/a ] && [ "$CAL" != n/a ]; then
		echo "  one task on a worker: $(calc "printf \"%.3f\", $i1 / $N") s (1 worker, inner / $N) vs $CAL s calibrated in the plain state: $(x "$(ratio "$(calc "print $i1 / $N")" "$CAL")")"
	fi
	w2=$(agg "$id" mp2 wall) c2=$(agg "$id" mp2 cpu)
	if [ "$w2" != n/a ]; then
		echo "  CPUs the 2-worker run got: $(calc "printf \"%.2f\", $c2 / $w2") (median cpu / median wall; 2.00 = both workers ran all along)"
		[ "$(calc "print ($c2 / $w2 < 1.6)")" = 1 ] &&
			echo "  note: the 2-worker run did not get two CPUs (load $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs): the speed-up is bounded by the machine, not measured"
	fi
	r=$(ratio "$i1" "$i2")
	res=$(pass_if "$v && $r >= 1.8")
	target "W6: ProcRunMp 2 workers >= 1.8x faster than 1 worker" "$res" "$(x "$r") (1 worker $(s "$i1"), 2 workers $(s "$i2"))"
	echo
fi

if [ "${ONLY#* W7 }" != "$ONLY" ]; then
	id=w7 N=10000
	echo "W7  $N function tasks each lc.sleep(0.1), ProcRunAsyncio num_workers=0 (ideal inner 0.1 s)"
	for r in $(seq "$RUNS"); do
		progress "$r"
		fn_run "$id" async0 60 "$BDIR/w7.lua" $N 0.1
		echo
	done
	itable "$id" "tasks/s" "$N / m" "async0=ProcRunAsyncio num_workers=0"
	show_err "$id" async0
	i=$(med "$WORK/res/$id.async0.in") v=$(fn_valid "$id" async0)
	res=$(pass_if "$v && $i <= 0.4")
	target "W7: run_all wall <= 0.4 s" "$res" "$(s "$i") (process wall $(s "$(agg "$id" async0 wall)"))"
	echo
fi

# ---------------------------------------------------------------- summary

echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Summary ($RUNS runs each; luaconcurrent $( [ $HAVE_LC = 1 ] && echo present || echo MISSING)):"
printf '%s' "$LINES_OUT"
total=$(printf '%s' "$LINES_OUT" | grep -c .)
echo "$((total - FAILS)) passed, $FAILS failed"
[ "$STRICT" = 1 ] && [ "$FAILS" -gt 0 ] && exit 1
exit 0
