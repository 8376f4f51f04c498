#!/usr/bin/env bash
# GOP-parallel encoding and decoding (canfvc_codec/parallel.py): speed of --jobs 2 against
# --jobs 1, byte-identity of --jobs 1 / --jobs 2 / --chunk-source path / --ray auto and of
# decode --jobs 2, and the memory of long encodes. Results: bench/results/parallel/.
#   bench/parallel.sh [identity|decode|speed|fixed|memory]...   (default: all, in that order)
# PYTHON and SMALL_MODEL may be set; every run is niced and its wall time and peak memory of the
# whole process tree recorded by canfvc_codec/lab/tree_peak_rss.py (one JSON line per run in runs.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
SMALL_MODEL=${SMALL_MODEL:-$HOME/.cache/canfvc/train-small/canfvc-small.pt}
CLIPS=${CLIPS:-$HOME/.cache/canfvc/clips}
OUT=bench/results/parallel
WORK=${WORK:-$(mktemp -d)}
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$OUT"
canfvc() { nice -n 10 "$PYTHON" -m canfvc_codec "$@"; }
measured() {  # measured LABEL canfvc-args...: one JSON line in runs.jsonl, with canfvc's summary
  local label=$1; shift
  echo "== $label: canfvc $*" >&2
  nice -n 10 "$PYTHON" -m canfvc_codec.lab.tree_peak_rss -- "$PYTHON" -m canfvc_codec "$@" 2> "$WORK/$label.err"
  LABEL=$label "$PYTHON" - "$WORK/$label.err" >> "$OUT/runs.jsonl" <<'PY'
import json, os, sys
lines = open(sys.argv[1]).read().replace("\r", "\n").splitlines()
record = json.loads(lines[-1])
record["label"] = os.environ["LABEL"]
record["summary"] = next((line for line in lines if line.startswith("canfvc: ")), None)
print(json.dumps(record))
PY
  tail -n 1 "$OUT/runs.jsonl" >&2
}
types() { canfvc info "$1" --json | "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print(''.join(f['type'] for f in d['frames']), d['totals']['bytes'])"; }
same() { if cmp -s "$1" "$2"; then echo "identical: $1 $2"; else echo "DIFFERENT: $1 $2"; fi; }

speed() {  # the default model on bikes' dev frames, GOP 16
  local clip="$CLIPS/bikes.mp4" range=(--start 186 --frames "${SPEED_FRAMES:-32}")
  measured lite_jobs1 encode "$clip" "${range[@]}" --gop 16 -o "$WORK/lite1.cvc" -y
  measured lite_jobs2 encode "$clip" "${range[@]}" --gop 16 -o "$WORK/lite2.cvc" -y --jobs 2
  { echo "lite jobs 1: $(types "$WORK/lite1.cvc")"; echo "lite jobs 2: $(types "$WORK/lite2.cvc")"
    same "$WORK/lite1.cvc" "$WORK/lite2.cvc"; } | tee -a "$OUT/speed.txt"
}

identity() {  # the compact model on bikes' dev frames, GOP 8: four chunks
  local clip="$CLIPS/bikes.mp4" range=(--start 186 --frames 32) common=(--gop 8 --model "$SMALL_MODEL")
  # One thread per process: the streams of one and of two workers are comparable byte for byte.
  measured small_jobs1_t1 encode "$clip" "${range[@]}" "${common[@]}" --threads 1 -o "$WORK/s1.cvc" -y --recon "$WORK/s1.yuv"
  measured small_jobs2 encode "$clip" "${range[@]}" "${common[@]}" --threads 1 -o "$WORK/s2.cvc" -y --jobs 2 --recon "$WORK/s2.yuv"
  measured small_jobs2_path encode "$clip" "${range[@]}" "${common[@]}" --threads 1 -o "$WORK/s2p.cvc" -y --jobs 2 --chunk-source path
  measured small_ray encode "$clip" "${range[@]}" "${common[@]}" --threads 1 -o "$WORK/sr.cvc" -y --ray auto --jobs 2
  { echo "small, adaptive intra: $(types "$WORK/s1.cvc")"
    same "$WORK/s1.cvc" "$WORK/s2.cvc"; same "$WORK/s1.cvc" "$WORK/s2p.cvc"; same "$WORK/s1.cvc" "$WORK/sr.cvc"
    same "$WORK/s1.yuv" "$WORK/s2.yuv"; } | tee -a "$OUT/identity.txt"
}

decode() {  # identity's stream decoded by one process and by two workers
  measured small_decode_jobs1_t1 decode "$WORK/s1.cvc" -o "$WORK/d1.yuv" -y --threads 1 --model "$SMALL_MODEL"
  measured small_decode_jobs2 decode "$WORK/s1.cvc" -o "$WORK/d2.yuv" -y --threads 1 --jobs 2 --model "$SMALL_MODEL"
  { same "$WORK/d1.yuv" "$WORK/d2.yuv"; same "$WORK/s1.yuv" "$WORK/d1.yuv"; } | tee -a "$OUT/identity.txt"
}

fixed() {  # default threads: one process on both cores against two on one each, with and without adaptive I-frames
  local clip="$CLIPS/bikes.mp4" range=(--start 186 --frames 32) common=(--gop 8 --model "$SMALL_MODEL")
  measured small_jobs1 encode "$clip" "${range[@]}" "${common[@]}" -o "$WORK/s1d.cvc" -y
  measured small_fixed_jobs1 encode "$clip" "${range[@]}" "${common[@]}" --no-adaptive-intra -o "$WORK/f1.cvc" -y
  measured small_fixed_jobs2 encode "$clip" "${range[@]}" "${common[@]}" --no-adaptive-intra -o "$WORK/f2.cvc" -y --jobs 2
  { echo "small, fixed types: $(types "$WORK/f1.cvc")"; same "$WORK/s1.cvc" "$WORK/s1d.cvc"
    same "$WORK/f1.cvc" "$WORK/f2.cvc"; } | tee -a "$OUT/fixed.txt"
}

memory() {  # 100 against 300 frames of vtest at 192x144, compact model, GOP 8, --jobs 2
  local ffmpeg; ffmpeg=$("$PYTHON" -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())")
  "$ffmpeg" -v error -y -i "$CLIPS/vtest.avi" -vf scale=192:144:flags=area -frames:v 300 -pix_fmt yuv420p "$WORK/vtest300.y4m"
  for frames in 100 300; do
    measured "memory_${frames}_jobs2" encode "$WORK/vtest300.y4m" --frames "$frames" --gop 8 --model "$SMALL_MODEL" -o "$WORK/m$frames.cvc" -y --jobs 2
  done
  echo "vtest 300 frames: $(types "$WORK/m300.cvc")" | tee -a "$OUT/memory.txt"
}

for part in "${@:-identity decode speed fixed memory}"; do for p in $part; do "$p"; done; done
echo "work files: $WORK" >&2
