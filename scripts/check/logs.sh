#!/bin/sh
# Usage: logs.sh DIR PREFIX... — fail if any sanitizer wrote a report
# (DIR/PREFIX.<pid>), from the spec host or from a process it spawned.
dir=$1; shift
found=0
for p in "$@"; do
	for f in "$dir/$p".*; do
		[ -e "$f" ] || continue
		found=1
		echo "==== $f" >&2
		cat "$f" >&2
	done
done
if [ $found -ne 0 ]; then
	echo "make check: sanitizer reports above (in $dir)" >&2
	exit 1
fi
