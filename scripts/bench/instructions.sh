#!/bin/sh
# Instructions per task of W5's paths, counted by valgrind's callgrind:
# steady on a machine whose timings drift, where whole-run timings are not.
#   scripts/bench/instructions.sh [MODE...]   (default: refco async0 mp2)
# A MODE's figure is (I(25 000 tasks) - I(5 000)) / 20 000 for the whole
# process minus the same for building its task list and runner, so it is
# what run_all costs a task (refco: its loop). Thread modes: the run's own
# thread only ("main thread"), the workers' share apart. Needs valgrind.
set -eu
here=$(dirname "$0")
lc="$here/../../build/luaconcurrent"
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# ir MODE N -> instructions of the process's first thread
ir() {
  rm -f "$out"/cg*
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/cg" \
    "$lc" "$here/w5ir.lua" "$1" "$2" >/dev/null 2>&1
  f="$out/cg-01"; [ -f "$f" ] || f="$out/cg"
  sed -n 's/^summary: \([0-9]*\).*/\1/p' "$f" | head -1
}
per_task() { echo $(( ($(ir "$1" 25000) - $(ir "$1" 5000)) / 20000 )); }

for mode in ${@:-refco async0 mp2}; do
  case $mode in
    refco) base=null ;;
    *) base=${mode}build ;;
  esac
  echo "$mode: $(( $(per_task "$mode") - $(per_task "$base") )) instructions a task (run's thread)"
done
