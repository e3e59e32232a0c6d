#!/usr/bin/env bash
# parsum benchmark: generates the trees under /tmp, runs parsum and its
# peers side by side (warm cache, interleaved runs), prints medians and
# ratios, and measures peak RSS with /usr/bin/time -v.
#
#   bench/parsum/run.sh            # all scenarios
#   RUNS=5 bench/parsum/run.sh     # fewer runs
#   SKIP_MILLION=1 bench/parsum/run.sh
#
# Needs: python3, b3sum, rhash, /usr/bin/time (apt-get install b3sum rhash
# time). Builds parsum in release mode first.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-10}
BASE=${BENCH_DIR:-/tmp/parsum-bench}
SMALL=$BASE/small   # 20 000 x 4 KiB
LARGE=$BASE/large   # 200 x 8 MiB
MILLION=$BASE/million # 1 000 000 entries (empty files) for peak RSS

for tool in python3 b3sum rhash /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: missing $tool" >&2; exit 1; }
done

cargo build --release -p parsum >&2
PARSUM=$PWD/target/release/parsum

gen_small() {
  [ -f "$SMALL/.done" ] && return
  echo "bench: generating $SMALL (20000 x 4 KiB)" >&2
  rm -rf "$SMALL"; mkdir -p "$SMALL"
  # 100 directories of 200 files, random content.
  python3 - "$SMALL" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    p = os.path.join(root, f"d{d:03}")
    os.mkdir(p)
    for f in range(200):
        with open(os.path.join(p, f"f{f:03}"), "wb") as fh:
            fh.write(os.urandom(4096))
PY
  touch "$SMALL/.done"
}

gen_large() {
  [ -f "$LARGE/.done" ] && return
  echo "bench: generating $LARGE (200 x 8 MiB)" >&2
  rm -rf "$LARGE"; mkdir -p "$LARGE"
  for i in $(seq -w 0 199); do head -c $((8 << 20)) /dev/urandom > "$LARGE/f$i"; done
  touch "$LARGE/.done"
}

gen_million() {
  [ -f "$MILLION/.done" ] && return
  echo "bench: generating $MILLION (1000 dirs x 1000 empty files)" >&2
  rm -rf "$MILLION"; mkdir -p "$MILLION"
  python3 - "$MILLION" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(1000):
    p = os.path.join(root, f"d{d:04}")
    os.mkdir(p)
    for f in range(999):
        open(os.path.join(p, f"f{f:04}"), "wb").close()
PY
  touch "$MILLION/.done"
}

# run TITLE DIR CMD... : times the commands in DIR, interleaved (run 1 of
# every command, then run 2, ...) so that load from other processes on a
# shared machine hits all of them alike; prints medians and ratios.
run() {
  local title=$1 dir=$2; shift 2
  echo
  echo "## $title"
  echo
  (cd "$dir" && python3 - "$RUNS" "$@" <<'PY'
import statistics, subprocess, sys, time
runs, cmds = int(sys.argv[1]), sys.argv[2:]
def once(c):
    t = time.perf_counter()
    subprocess.run(c, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t
for c in cmds:          # warm-up: page cache and binaries
    once(c); once(c)
times = {c: [] for c in cmds}
for _ in range(runs):
    for c in cmds:
        times[c].append(once(c))
base = statistics.median(times[cmds[0]])
print("| command | median (s) | min (s) | max (s) | parsum / this |")
print("|---|---:|---:|---:|---:|")
for c in cmds:
    t = times[c]
    print(f"| `{c}` | {statistics.median(t):.3f} | {min(t):.3f} | {max(t):.3f} | {base / statistics.median(t):.2f} |")
PY
  )
}

peak_rss() { # peak_rss DIR CMD : prints max RSS in MiB
  local dir=$1; shift
  (cd "$dir" && /usr/bin/time -v "$@" >/dev/null 2>"$BASE/time.txt") || true
  awk -F': ' '/Maximum resident set size/ {printf "%.1f MiB\n", $2/1024}' "$BASE/time.txt"
}

gen_small
gen_large

echo "# parsum benchmark"
echo
echo "$(nproc) cores, $(uname -r), warm page cache, $RUNS interleaved runs each after 2 warm-ups."
echo "Ratios are parsum's median divided by each command's (< 1: parsum is faster)."
echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared)."

P="$PARSUM --no-progress"
run "20 000 x 4 KiB, BLAKE3" "$SMALL" \
  "$P ." \
  "sh -c 'find . -type f -print0 | xargs -0 -P2 -n500 b3sum'"
run "20 000 x 4 KiB, SHA-256" "$SMALL" \
  "$P -a sha256 ." \
  "rhash -r --sha256 ."
run "200 x 8 MiB, BLAKE3" "$LARGE" \
  "$P ." \
  "sh -c 'b3sum *'"
run "200 x 8 MiB, SHA-256" "$LARGE" \
  "$P -a sha256 ." \
  "sh -c 'find . -type f -print0 | xargs -0 -P2 -n10 rhash --sha256'"

echo
echo "## Peak RSS"
echo
echo "| tree | command | peak RSS |"
echo "|---|---|---:|"
echo "| 20 000 x 4 KiB | parsum | $(peak_rss "$SMALL" $P .) |"
echo "| 200 x 8 MiB | parsum | $(peak_rss "$LARGE" $P .) |"
if [ -z "${SKIP_MILLION:-}" ]; then
  gen_million
  start=$(date +%s.%N)
  rss=$(peak_rss "$MILLION" $P .)
  end=$(date +%s.%N)
  echo "| 1 000 000 entries (1000 dirs x 999 empty files) | parsum | $rss (one run, $(python3 -c "print(f'{$end-$start:.1f}')") s) |"
fi

echo
echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)."
