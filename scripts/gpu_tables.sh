#!/usr/bin/env bash
# One GPU, one command: the CIFAR-10 (JPEG copy) ResNet-20 and Fashion-MNIST VGG-BN method tables of
# scripts/reproduce_methods.py (3 seeds, the CPU schedules unchanged), as parallel processes sharing the one GPU.
# The ResNet-56 2.11x protocol is its own command, scripts/gpu_resnet56.py (WITH_R56=1 runs it here too).
#
# Training and test-set evaluation run on the GPU (the Trainer picks CUDA and hands the model back to the CPU);
# the pruning steps (sensitivity analysis, LASSO/ThiNet calibration, Torch-Pruning's steps, the MACs counter) run
# on the CPU, one process per (rows, seed) so the machine's cores share them. Every finished (row, seed) is
# written at once (resumable: run it again to fill what a time limit cut off), then the pages are rendered.
#
# Measured on one H200 with 16 cores (2026-12-04, docs/RESULTS.md): these small networks leave the GPU mostly
# idle and every process is CPU-bound (ResNet-20 trained at 8 s per epoch alone with 4 threads, 28-59 s per epoch
# beside 20 other processes), so the cores set the pace: 450 s finished the Fashion-MNIST table and 11 base epochs
# of ResNet-20, not the CIFAR-10 rows. Budget about 30 minutes for everything.
#
# Usage:  bash scripts/gpu_tables.sh            (PY=python3 by default)
# Environment: PY (the Python with torch), PRUNEKIT_DATA (folder of cifar10-jpeg.tar.gz), PRUNEKIT_FASHION_MNIST,
#   WITH_R56, R56_ARGS (extra gpu_resnet56.py flags; default a shortened schedule), LOG_DIR (default runs/gpu_logs).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=1  # many processes share the cores: one thread each unless a step asks for more
LOG=${LOG_DIR:-runs/gpu_logs}
R56_ARGS=${R56_ARGS:---base-epochs 30 --finetune-epochs 10 --sparsity-epochs 3}
mkdir -p "$LOG"
SEEDS="0 1 2"

# Decode the archives once, before the processes that read the cache start.
$PY -c "from prunekit.data import load_dataset; load_dataset('cifar10-jpeg'); load_dataset('fashion-mnist')" \
  || { echo "datasets not found (set PRUNEKIT_DATA / PRUNEKIT_FASHION_MNIST)"; exit 2; }

rows() {  # SET BASE PART "ROWS" SEED THREADS: one process of reproduce_methods.py
  $PY scripts/reproduce_methods.py "$1" --bases "$2" --part "$3" --rows "$4" --seeds "$5" --threads "$6" \
    > "$LOG/$2.$3.log" 2>&1
}

# ResNet-56 protocol (WITH_R56=1): its base network, then one process per row.
[ "${WITH_R56:-0}" = 1 ] && (
  # shellcheck disable=SC2086
  $PY scripts/gpu_resnet56.py $R56_ARGS --base-only > "$LOG/r56.base.log" 2>&1 || exit
  i=0
  for r in "l1" "slimming" "fpgm" "Torch-Pruning l1" "Torch-Pruning group-norm" "Torch-Pruning slimming"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    $PY scripts/gpu_resnet56.py $R56_ARGS --rows "$r" --part "r$i" --threads 2 > "$LOG/r56.r$i.log" 2>&1 &
  done
  wait
) &

# CIFAR-10 ResNet-20: the base network (15 epochs), then 5 processes per seed.
(
  # a finished committed base is kept; an unfinished one (or none) is trained, resuming where it stopped
  done_base=$($PY -c "import json; print(not json.load(open('docs/results/base/cifar10_resnet20.json')).get('partial'))" \
    2>/dev/null)
  if [ "$done_base" != True ]; then
    $PY scripts/train_base.py cifar10_resnet20 --resume --threads 4 > "$LOG/cifar10_resnet20.base.log" 2>&1 || exit
  fi
  for s in $SEEDS; do
    rows cifar10 cifar10_resnet20 "l1_s$s" "l1" "$s" 2 &
    rows cifar10 cifar10_resnet20 "scratch_s$s" "uniform width from scratch" "$s" 1 &
    rows cifar10 cifar10_resnet20 "a_s$s" "slimming,lasso,thinet,fpgm" "$s" 1 &
    rows cifar10 cifar10_resnet20 "b_s$s" "taylor,random,Torch-Pruning l1" "$s" 1 &
    rows cifar10 cifar10_resnet20 "tp_s$s" "Torch-Pruning group-norm,Torch-Pruning slimming" "$s" 1 &
  done
  wait
) &

# Fashion-MNIST VGG-BN (base committed): 3 processes per seed.
for s in $SEEDS; do
  rows fashion_mnist fashion_mnist_vgg_bn "a_s$s" "l1,slimming,lasso,thinet,fpgm,taylor" "$s" 1 &
  rows fashion_mnist fashion_mnist_vgg_bn "b_s$s" "random,uniform width from scratch" "$s" 1 &
  rows fashion_mnist fashion_mnist_vgg_bn "tp_s$s" "Torch-Pruning l1,Torch-Pruning group-norm,Torch-Pruning slimming" "$s" 1 &
done
wait

# The pages, from every part's results.
$PY scripts/reproduce_methods.py cifar10 --render
$PY scripts/reproduce_methods.py fashion_mnist --render
# shellcheck disable=SC2086
[ "${WITH_R56:-0}" = 1 ] && $PY scripts/gpu_resnet56.py $R56_ARGS --render
grep -h "failed\|Error" "$LOG"/*.log | head -20
echo "gpu_tables.sh: done"
