#!/bin/bash
# Runs every Go test (make test-go). zfs-fuse, the host tier's ZFS, deadlocks
# now and then under parallel load (an upstream bug: every FUSE request, then
# its CLI socket, waits forever). The test rig then restarts the daemon and
# appends a line to $WEDGES. Only when tests failed AND the daemon was
# restarted during the run are the failed tests run once more, package by
# package, with nothing beside them; the run passes only if all of them pass
# then. Any other failure fails the run as it is.
set -uo pipefail
GO=${GO:-go}
TIMEOUT=${TEST_TIMEOUT:-45m}
WEDGES=${WEDGES:-/run/flocker-rig/zfs-fuse.wedges}

count_wedges() { if [ -f "$WEDGES" ]; then wc -l < "$WEDGES"; else echo 0; fi; }

log=$(mktemp /tmp/flocker-go-test.XXXXXX)
trap 'rm -f "$log"' EXIT
before=$(count_wedges)
"$GO" test -count=1 -timeout "$TIMEOUT" ./... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] && exit 0
after=$(count_wedges)
if [ "$after" -le "$before" ]; then
  exit "$rc"
fi
echo
echo "go-test: tests failed and zfs-fuse was restarted $((after - before)) time(s) during the run:"
tail -n "$((after - before))" "$WEDGES" | sed 's/^/go-test:   /'
if grep -qE '^FAIL.*\[(build|setup) failed\]' "$log"; then
  echo "go-test: a package did not build: no rerun"
  exit "$rc"
fi

# Failed packages with their failed top-level tests ("pkg<TAB>A|B"; no names:
# the whole package). go test prints each package's output in one piece,
# ending with its ok/FAIL line; a timeout panic names the running tests.
mapfile -t reruns < <(awk '
  /^--- FAIL: / { n = $3; if (!(n in seen)) { seen[n] = 1; names = names (names ? "|" : "") n } ; next }
  /^panic: test timed out/ { timedout = 1; next }
  timedout && /^\t\tTest[^ ]* \(/ { n = $1; if (!(n in seen)) { seen[n] = 1; names = names (names ? "|" : "") n } ; next }
  /^ok  \t/ || /^FAIL\t/ || /^\?   \t/ {
    if ($1 == "FAIL" && $2 != "") print $2 "\t" names
    names = ""; timedout = 0; delete seen
  }
' "$log")
if [ "${#reruns[@]}" -eq 0 ]; then
  echo "go-test: no failed package found in the output: no rerun"
  exit "$rc"
fi
status=0
for entry in "${reruns[@]}"; do
  pkg=${entry%%$'\t'*}
  names=${entry#*$'\t'}
  if [ -n "$names" ]; then
    echo "go-test: rerun of $pkg: $names"
    "$GO" test -count=1 -timeout "$TIMEOUT" -run "^($names)\$" "$pkg" || status=1
  else
    echo "go-test: rerun of all of $pkg"
    "$GO" test -count=1 -timeout "$TIMEOUT" "$pkg" || status=1
  fi
done
if [ "$status" -eq 0 ]; then
  echo "go-test: PASS after rerunning the tests that failed around a zfs-fuse restart (listed above)"
fi
exit "$status"
