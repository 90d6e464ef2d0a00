#!/usr/bin/env bash
# The numbers in docs/DIFFERENTIABLE.md (but the gradient check: gradcheck.py), as parallel
# jobs of 2 torch threads each: about 9 minutes on a 16-core machine, hours on 2 cores.
# Usage, from the repository root:  PYTHONPATH=src examples/differentiable/run_all.sh OUT_DIR
set -u
out=${1:?usage: run_all.sh OUT_DIR}
limit=${LIMIT:-520}  # seconds per job; a digits job's log has every epoch even if cut
mkdir -p "$out"
py=${PYTHON:-python3}
d=examples/differentiable
run() { name=$1; shift; timeout "$limit" "$py" "$@" > "$out/$name.log" 2>&1 & }
run sweep "$d/sweep.py" --widths 0 --out "$out/sweep.md" \
  --sharpness 1 0.03125 0.0263 0.0221 0.0186 0.015625 0.0078125 0.0009765625
run sweep_w "$d/sweep.py" --widths 0.001 0.01 --sharpness 1 0.03125 --out "$out/sweep_w.md"
for n in 1 2 4; do
  for head in unimodal softmax; do
    run "n${n}_$head" "$d/digits.py" --digits $n --epochs 30 --batch 16 --threads 2 \
      --head $head --json "$out/n${n}_$head.json"
  done
done
wait
