#!/usr/bin/env bash
# parsum --update benchmark (issue 12, part 3): a first --update of a
# 200 000-file tree (no STATE) against a second one of the same, unchanged
# tree, which should cost a walk plus stats. Prints a hyperfine table and
# peak RSS, then deletes the tree.
#
#   bench/parsum/integrity.sh          # 5 runs per row
#   RUNS=10 bench/parsum/integrity.sh
#
# The first run is timed twice: with the files' data in the page cache
# (warm: reading costs only the copy and the hash), and with it dropped
# (`evict`: POSIX_FADV_DONTNEED on this tree's files only, so the data
# comes from the disk as in a nightly run; inodes and directories stay
# cached, and no other process's cache is touched).
#
# Needs: python3, hyperfine, /usr/bin/time. Builds parsum in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-5}
BASE=${BENCH_DIR:-/tmp/parsum-integrity-bench}
TREE=$BASE/tree
STATE=$BASE/STATE

for tool in python3 hyperfine /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: missing $tool" >&2; exit 1; }
done

cargo build --release -p parsum >&2
PARSUM=${CARGO_TARGET_DIR:-$PWD/target}/release/parsum

cleanup() { rm -rf "$BASE"; }
trap cleanup EXIT

echo "bench: generating $TREE (200 000 files of 1-4 KiB in 2000 directories)" >&2
rm -rf "$BASE"; mkdir -p "$TREE"
python3 - "$TREE" <<'PY'
import os, random, sys
random.seed(12)
root = sys.argv[1]
for a in range(20):
    for b in range(100):
        d = f"{root}/d{a:02}/s{b:03}"
        os.makedirs(d)
        for c in range(100):
            with open(f"{d}/f{c:03}.dat", "wb") as f:
                f.write(os.urandom(random.randint(1024, 4096)))
PY
cat > "$BASE/evict.py" <<'PY'
import os, sys
for dirpath, _, files in os.walk(sys.argv[1]):
    for f in files:
        fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
du -sh "$TREE" >&2

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "before: $(uptime)"
UPD="$PARSUM --no-progress --update $STATE $TREE"
hyperfine --runs "$RUNS" --warmup 1 --export-markdown "$BASE/table.md" \
  -n "first --update, data in page cache" --prepare "rm -f $STATE" "$UPD" \
  -n "first --update, data evicted" --prepare "rm -f $STATE; python3 $BASE/evict.py $TREE" "$UPD" \
  -n "second --update, unchanged tree" --prepare "test -f $STATE || $UPD" "$UPD" \
  -n "walk + stat floor: find -printf size mtime inode" --prepare true "find $TREE -type f -printf '%s %T@ %i %p\n'"
echo "after: $(uptime)"
cat "$BASE/table.md"
for what in first second; do
  [ "$what" = first ] && rm -f "$STATE"
  /usr/bin/time -f "peak RSS, $what --update: %M KB (%e s)" $UPD >/dev/null 2>"$BASE/time.txt" || true
  tail -1 "$BASE/time.txt"
  grep '^parsum: update' "$BASE/time.txt" || true
done
ls -l "$STATE" | awk '{print "STATE size: " $5 " bytes"}'
