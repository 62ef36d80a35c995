# Shared by scripts/course.sh, scripts/test.sh and scripts/site.sh: make (once) and enter
# the virtual environment. Torch goes in first, chosen on purpose (see torch_index below),
# so that installing the project afterwards keeps it ("Requirement already satisfied").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NVP_EDU_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch>=2.2,<2.14"
CPU_INDEX="https://download.pytorch.org/whl/cpu"

# Which package index torch comes from. pip on Linux takes PyPI's torch, which is the CUDA
# build (several GB with its NVIDIA libraries) whether or not the machine has a GPU. So:
#   NVP_EDU_TORCH_INDEX set     -> that index (e.g. https://download.pytorch.org/whl/cu126);
#   Linux without nvidia-smi    -> PyTorch's CPU-only index (a few hundred MB), if it answers;
#   anything else               -> pip's default for the platform (macOS and Windows wheels
#                                  from PyPI are CPU/MPS builds; with an NVIDIA GPU, CUDA).
# An offline mirror or a wheel already on disk (pip's find-links) serves the last case too.
torch_index() {
    if [ -n "${NVP_EDU_TORCH_INDEX:-}" ]; then
        echo "$NVP_EDU_TORCH_INDEX"
    elif [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 \
        && "$PYTHON" -c "import urllib.request as u; u.urlopen('$CPU_INDEX/', timeout=5)" \
            >/dev/null 2>&1; then
        echo "$CPU_INDEX"
    fi
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
STAMP="$VENV/.nvp-edu-$1-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    python -m pip install --quiet --upgrade pip
    index="$(torch_index)"
    if [ -n "$index" ]; then
        echo "==> installing torch from $index, then the project ($1)"
        python -m pip install --quiet --index-url "$index" "$TORCH_SPEC"
    else
        echo "==> installing torch (pip's default build for this machine), then the project ($1)"
        python -m pip install --quiet "$TORCH_SPEC"
    fi
    case "$1" in
        test) extras="[test,site]" ;;  # the suite builds the website too (tests/test_site.py)
        site) extras="[site]" ;;
        *) extras="" ;;
    esac
    python -m pip install --quiet -e "$ROOT$extras"
    python -c "import torch; print('==> torch', torch.__version__, '| CUDA build:', torch.version.cuda is not None)"
    touch "$STAMP"
fi
cd "$ROOT"
