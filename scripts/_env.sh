# Shared by scripts/course.sh and scripts/test.sh: make (once) and enter the virtual
# environment. Torch goes in first, from a range that the CPU wheel satisfies, so that
# installing the project does not pull a multi-GB CUDA build on a CPU-only machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NVP_EDU_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
STAMP="$VENV/.nvp-edu-$1-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    echo "==> installing torch, then the project ($1)"
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet "torch>=2.2,<2.14"
    if [ "$1" = test ]; then
        python -m pip install --quiet -e "$ROOT[test]"
    else
        python -m pip install --quiet -e "$ROOT"
    fi
    touch "$STAMP"
fi
cd "$ROOT"
