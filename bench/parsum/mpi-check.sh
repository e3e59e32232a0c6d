#!/usr/bin/env bash
# parsum -c over MPI: what can be measured on one 2-core machine (issue 13,
# second round).
# - balance: manifest lines, files and bytes verified per rank (-v) at
#   -np 2 and 4, for a manifest of 40 000 small files and one of 40 000
#   small files followed by 16 files of 16 MiB (ranges are even in bytes
#   of the manifest, not in bytes to read);
# - overhead: the plain binary's -c against mpirun -np 1, 2 and 4, and
#   mpirun's start-up (a one-line manifest).
# Every mpirun output is compared with the plain binary's first.
#
#   bench/parsum/mpi-check.sh   (needs python3, hyperfine, Open MPI; builds
#                                both binaries in release mode)
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=${BENCH_DIR:-/tmp/parsum-mpi-check-bench}
RUNS=${RUNS:-5}
for tool in python3 hyperfine mpirun; do
  command -v "$tool" >/dev/null || { echo "bench: missing $tool" >&2; exit 1; }
done
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$BASE"
cargo build --release --locked -p parsum >&2
cp "$target/release/parsum" "$BASE/parsum.plain"
cargo build --release --locked -p parsum --features mpi >&2
cp "$target/release/parsum" "$BASE/parsum.mpi"
PLAIN=$BASE/parsum.plain MPI=$BASE/parsum.mpi
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none)

python3 - "$BASE" <<'PY'
import os, sys
base = sys.argv[1]
root = os.path.join(base, "tree")
if not os.path.exists(os.path.join(root, ".done")):
    blk = os.urandom(4096)
    for i in range(40000):
        d = os.path.join(root, "small", f"d{i // 1000:02}")
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        open(os.path.join(d, f"file-{i:05}"), "wb").write(blk[: (i * 131) % 4096])
    os.makedirs(os.path.join(root, "zbig"), exist_ok=True)
    for k in range(16):
        with open(os.path.join(root, "zbig", f"huge{k:02}"), "wb") as f:
            for _ in range(16 * 256):
                f.write(blk)
    open(os.path.join(root, ".done"), "w").close()
PY
cd "$BASE/tree"
"$PLAIN" --no-progress --no-summary small > "$BASE/small.b3"
"$PLAIN" --no-progress --no-summary small zbig > "$BASE/mixed.b3"
head -n 1 "$BASE/small.b3" > "$BASE/one.b3"

same() { # np manifest
  "$PLAIN" --no-progress -c "$2" > "$BASE/plain.out"
  "${MPIRUN[@]}" -np "$1" "$MPI" --no-progress -c "$2" > "$BASE/mpi.out"
  cmp -s "$BASE/plain.out" "$BASE/mpi.out" || { echo "bench: OUTPUT DIFFERS (-np $1, $2)" >&2; exit 1; }
}

echo "# parsum -c over MPI on $(nproc) cores, $(date -u +%Y-%m-%d), commit $(git -C "$OLDPWD" rev-parse --short HEAD)"
echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared)."
for m in small mixed; do
  echo
  echo "## Balance: $m.b3 ($(wc -l < "$BASE/$m.b3") lines, $(du -sh "$BASE/$m.b3" | cut -f1); files $(du -sh --apparent-size $( [ $m = small ] && echo small || echo small zbig) | awk '{print $1}' | paste -sd+))"
  for np in 2 4; do
    same "$np" "$BASE/$m.b3"
    echo
    echo "-np $np (output identical to the plain binary):"
    echo
    echo "| rank | lines verified | files | bytes | seconds |"
    echo "|---:|---:|---:|---:|---:|"
    "${MPIRUN[@]}" -np "$np" "$MPI" --no-progress -v -c "$BASE/$m.b3" 2>&1 >/dev/null \
      | sed -n 's/^parsum: rank \([0-9]*\) of [0-9]* ([0-9]* CPU(s)): \([0-9]*\) manifest line(s) verified, \([0-9]*\) file(s) and \([0-9]*\) byte(s) hashed in \([0-9.]*\) s/| \1 | \2 | \3 | \4 | \5 |/p' \
      | sort -t'|' -k2 -n
  done
done

echo
echo "## Overhead: -c of small.b3 (40 000 files) and mixed.b3"
echo
same 1 "$BASE/small.b3"
hyperfine -N --warmup 1 --runs "$RUNS" -u millisecond --style none --export-markdown "$BASE/overhead.md" \
  -n "plain -c one line" "$PLAIN --no-progress -c $BASE/one.b3" \
  -n "mpirun -np 1 -c one line (start-up)" "${MPIRUN[*]} -np 1 $MPI --no-progress -c $BASE/one.b3" \
  -n "plain -c small" "$PLAIN --no-progress -c $BASE/small.b3" \
  -n "mpirun -np 1 -c small" "${MPIRUN[*]} -np 1 $MPI --no-progress -c $BASE/small.b3" \
  -n "mpirun -np 2 -c small" "${MPIRUN[*]} -np 2 $MPI --no-progress -c $BASE/small.b3" \
  -n "mpirun -np 4 -c small" "${MPIRUN[*]} -np 4 $MPI --no-progress -c $BASE/small.b3" \
  -n "plain -c mixed" "$PLAIN --no-progress -c $BASE/mixed.b3" \
  -n "mpirun -np 1 -c mixed" "${MPIRUN[*]} -np 1 $MPI --no-progress -c $BASE/mixed.b3" \
  -n "mpirun -np 2 -c mixed" "${MPIRUN[*]} -np 2 $MPI --no-progress -c $BASE/mixed.b3" \
  -n "mpirun -np 4 -c mixed" "${MPIRUN[*]} -np 4 $MPI --no-progress -c $BASE/mixed.b3" \
  >/dev/null
cat "$BASE/overhead.md"
