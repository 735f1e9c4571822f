#!/bin/sh
# bounded.sh SECONDS command...: run a test command under a time limit, so a
# hang fails the run loudly instead of stalling it (and CI) for good.
# Past the limit the command gets SIGTERM, and SIGKILL 10 s later
# (--foreground: it stays in the terminal's process group, so Ctrl-C still
# reaches it); the run
# then fails with a message naming the test that was running (written by
# spec/current_test.lua, busted's helper, through LC_TEST_CURRENT).
limit=$1
shift
LC_TEST_CURRENT=$(mktemp "${TMPDIR:-/tmp}/lc-current-test.XXXXXX") || exit 2
export LC_TEST_CURRENT
timeout --foreground -k 10 "$limit" "$@"
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
	echo >&2
	echo "FAILED: $* did not finish within $limit s (a hang?)." >&2
	if [ -s "$LC_TEST_CURRENT" ]; then
		echo "  The test running then: $(cat "$LC_TEST_CURRENT")" >&2
	fi
	rc=124
fi
rm -f "$LC_TEST_CURRENT"
exit "$rc"
