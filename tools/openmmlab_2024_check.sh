#!/usr/bin/env bash
# kt on OpenMMLab's last own releases (mmengine 0.10.7, mmpretrain 1.2.0, mmcv-lite 2.2.0),
# the way docs/dependencies.md tells their users to install it: those three and kt's other
# dependencies, then kt with --no-deps on top. Runs the model, engine and checkpoint-loading
# tests and one tiny `kt train` + `kt export` in its own venv (default .venv-openmmlab-2024).
# Usage: bash tools/openmmlab_2024_check.sh [VENV [BASE_VENV]]
# BASE_VENV: a venv whose packages VENV reads after its own (one .pth line), so that a machine
# holds one CUDA build of torch (5.5 GB) rather than two. What this script installs, the
# OpenMMLab releases first, is found first; what BASE_VENV already satisfies is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-openmmlab-2024}
base_venv=${2:-}
# kt's own dependencies and test extras from pyproject.toml, less the maintained onedl-* line.
requirements=$(python3 - <<'PY'
import tomllib
project = tomllib.load(open('pyproject.toml', 'rb'))['project']
wanted = project['dependencies'] + project['optional-dependencies']['test']
print('\n'.join(r for r in wanted if not r.startswith('onedl-')))
PY
)
python3 -m venv "$venv"
if [[ -n "$base_venv" ]]; then
    site_packages() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))'; }
    site_packages "$base_venv" > "$(site_packages "$venv")/kt_base_venv.pth"
fi
# mmengine 0.10.7 imports pkg_resources, which setuptools 81+ no longer ships.
"$venv/bin/pip" install -q 'mmengine==0.10.7' 'mmpretrain==1.2.0' 'mmcv-lite==2.2.0' \
    'setuptools<81' $requirements
"$venv/bin/pip" install -q --no-deps -e .
"$venv/bin/pip" list 2>/dev/null | grep -i -E '^(mmengine|mmpretrain|mmcv)'
"$venv/bin/python" -m pytest -q tests/test_models tests/test_engine \
    tests/test_checkpoint_loading.py
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
"$venv/bin/kt" train --dataset demo --data-root "$run/demo" --backbone resnet18_tiny \
    --img-size 32 --epochs 1 --n 2 --work-dir "$run/work" > "$run/train.log"
tail -n 8 "$run/train.log"
"$venv/bin/kt" export "$run/work" --format onnx --out "$run/ensemble.onnx"
