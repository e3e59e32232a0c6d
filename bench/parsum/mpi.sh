#!/usr/bin/env bash
# parsum over MPI: what can be measured on one 2-core machine (issue 13).
# - balance: files and bytes hashed per rank on a skewed tree (one directory
#   of 20 000 files, 200 directories of 10, 4 files of 32 MiB), -np 2 and 4;
# - overhead: the plain binary, the MPI binary without a launcher, and
#   `mpirun -np 1`, bound to one core (Open MPI's default for 1-2 ranks)
#   and not (and mpirun's own start-up on an empty tree);
# - rank 0's peak RSS as the number of files grows (10k, 40k, 160k, 640k).
# Every mpirun output is compared with the plain binary's first.
#
#   bench/parsum/mpi.sh     (needs python3, hyperfine, /usr/bin/time, Open MPI;
#                            builds both binaries in release mode)
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=${BENCH_DIR:-/tmp/parsum-mpi-bench}
RUNS=${RUNS:-10}
for tool in python3 hyperfine /usr/bin/time mpirun; do
  command -v "$tool" >/dev/null || { echo "bench: missing $tool" >&2; exit 1; }
done
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked -p parsum >&2
cp "$target/release/parsum" "$BASE.plain" 2>/dev/null || { mkdir -p "$(dirname "$BASE")"; cp "$target/release/parsum" "$BASE.plain"; }
cargo build --release --locked -p parsum --features mpi >&2
cp "$target/release/parsum" "$BASE.mpi"
PLAIN=$BASE.plain MPI=$BASE.mpi
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
mkdir -p "$BASE"

python3 - "$BASE" <<'PY'
import os, sys
base = sys.argv[1]
skew = os.path.join(base, "skew")
if not os.path.exists(os.path.join(skew, ".done")):
    blk = os.urandom(4096)
    os.makedirs(os.path.join(skew, "big"), exist_ok=True)
    for i in range(20000):
        open(os.path.join(skew, "big", f"f{i:05}"), "wb").write(blk[: (i * 131) % 4096])
    for d in range(200):
        p = os.path.join(skew, f"small{d:03}")
        os.makedirs(p, exist_ok=True)
        for j in range(10):
            open(os.path.join(p, f"g{j}"), "wb").write(blk[: (d * j * 17) % 4096])
    for k in range(4):
        with open(os.path.join(skew, f"huge{k}"), "wb") as f:
            for _ in range(32 * 256):
                f.write(blk)
    open(os.path.join(skew, ".done"), "w").close()
for n in (10000, 40000, 160000, 640000):
    root = os.path.join(base, f"n{n}")
    if os.path.exists(os.path.join(root, ".done")):
        continue
    for i in range(n):
        d = os.path.join(root, f"d{i // 1000:03}")
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        open(os.path.join(d, f"file-with-a-longish-name-{i:07}"), "w").write("x")
    open(os.path.join(root, ".done"), "w").close()
PY
mkdir -p "$BASE/empty"

same() { # np dir: mpirun output == plain output
  (cd "$2" && "$PLAIN" --no-progress --no-summary .) > "$BASE/plain.out"
  (cd "$2" && "${MPIRUN[@]}" -np "$1" "$MPI" --no-progress --no-summary .) > "$BASE/mpi.out"
  cmp -s "$BASE/plain.out" "$BASE/mpi.out" || { echo "bench: OUTPUT DIFFERS (-np $1, $2)" >&2; exit 1; }
}

echo "# parsum over MPI on $(nproc) cores, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)"
echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared)."
echo
echo "## Balance: skewed tree ($(find "$BASE/skew" -type f | wc -l) files, $(du -sh "$BASE/skew" | cut -f1))"
for np in 2 4; do
  same "$np" "$BASE/skew"
  echo
  echo "-np $np (output identical to the plain binary):"
  echo
  echo "| rank | files | bytes | directories listed | shares stolen | requests |"
  echo "|---:|---:|---:|---:|---:|---:|"
  (cd "$BASE/skew" && "${MPIRUN[@]}" -np "$np" "$MPI" --no-progress -v . 2>&1 >/dev/null) \
    | sed -n 's/^parsum: rank \([0-9]*\) of [0-9]* ([0-9]* CPU(s)): \([0-9]*\) file(s), \([0-9]*\) byte(s) hashed; \([0-9]*\) director(ies) listed; \([0-9]*\) share(s) stolen in \([0-9]*\) request(s).*/| \1 | \2 | \3 | \4 | \5 | \6 |/p' \
    | sort -t'|' -k2 -n
done

echo
echo "## Overhead: one rank against the plain binary (skewed tree, BLAKE3)"
echo
same 1 "$BASE/skew"
hyperfine -N --warmup 2 --runs "$RUNS" -u millisecond --style none --export-markdown "$BASE/overhead.md" \
  -n plain "$PLAIN --no-progress --no-summary $BASE/skew -o $BASE/o1" \
  -n "mpi build, no launcher" "$MPI --no-progress --no-summary $BASE/skew -o $BASE/o2" \
  -n "mpirun -np 1 (bound to a core)" "${MPIRUN[*]} -np 1 $MPI --no-progress --no-summary $BASE/skew -o $BASE/o3" \
  -n "mpirun --bind-to none -np 1" "${MPIRUN[*]} --bind-to none -np 1 $MPI --no-progress --no-summary $BASE/skew -o $BASE/o4" \
  -n "mpirun --bind-to none -np 1, empty tree" "${MPIRUN[*]} --bind-to none -np 1 $MPI --no-progress --no-summary $BASE/empty" \
  -n "plain, 160 000 files" "$PLAIN --no-progress --no-summary $BASE/n160000 -o $BASE/o5" \
  -n "mpirun --bind-to none -np 1, 160 000 files" "${MPIRUN[*]} --bind-to none -np 1 $MPI --no-progress --no-summary $BASE/n160000 -o $BASE/o6" \
  >/dev/null
cat "$BASE/overhead.md"

echo
echo "## Peak RSS (KiB) as the files grow: plain binary vs each rank of -np 4"
echo
echo "| files | plain | rank 0 | rank 1 | rank 2 | rank 3 |"
echo "|---:|---:|---:|---:|---:|---:|"
cat > "$BASE/rss.sh" <<'EOF'
#!/bin/sh
exec /usr/bin/time -f "rss ${OMPI_COMM_WORLD_RANK:-plain} %M" "$@"
EOF
chmod +x "$BASE/rss.sh"
for n in 10000 40000 160000 640000; do
  plain=$("$BASE/rss.sh" "$PLAIN" --no-progress --no-summary "$BASE/n$n" 2>&1 >/dev/null | sed -n 's/^rss plain //p')
  ranks=$("${MPIRUN[@]}" -np 4 "$BASE/rss.sh" "$MPI" --no-progress --no-summary "$BASE/n$n" 2>&1 >/dev/null \
    | sed -n 's/^rss \([0-3]\) /\1 /p' | sort -n | cut -d' ' -f2 | paste -sd'|')
  echo "| $n | $plain | ${ranks//|/ | } |"
done
