#!/usr/bin/env bash
# A preset's whole pipeline on a borrowed GPU machine that has a CUDA PyTorch but no internet and no
# DVC (benchmarks/gpu_run.py runs the stages of dvc.yaml in one process).
#
#   benchmarks/gpu_run.sh wheels                    # here: the missing packages as wheels, into .whl/
#   benchmarks/gpu_run.sh run PRESET OUT [-S eps=8] # there: results packed into OUT/PRESET.tar.gz,
#                                                   # OUT/stage_times.md written after every stage
#   python benchmarks/gpu_run.py gather OUT/PRESET.tar.gz   # here again: metrics/ and reports/PRESET/
#
# What travels: the working tree, .whl/ (about 3 MB) and the preset's data archive (CIFAR-10's JPEG
# copy, 19 MB, at data/raw/cifar10-jpeg.tar.gz): well under 64 MiB. What comes back: two files.
set -euo pipefail
cd "$(dirname "$0")/.."
# The GPU image lacks pydantic and its needs (it has torch, numpy, scipy, statsmodels, matplotlib, pandas,
# tabulate, timm, safetensors, ...); faiss is not needed there: the kNN search runs in torch on the GPU.
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection typing-extensions)

case "${1:-}" in
wheels)
    mkdir -p .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}"
    ls -la .whl ;;
run)
    preset=${2:?usage: gpu_run.sh run PRESET OUT [-S key=value ...]} out=${3:?usage: gpu_run.sh run PRESET OUT}
    shift 3
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONUNBUFFERED=1
    mkdir -p "$out"
    exec python3 benchmarks/gpu_run.py run "$preset" --archive "$out/$preset.tar.gz" "$@" ;;
*)
    echo "usage: $0 wheels | run PRESET OUT [-S key=value ...]" >&2; exit 2 ;;
esac
