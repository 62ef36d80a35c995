#!/usr/bin/env bash
# Open the course in JupyterLab (installs everything on first use), at its first notebook,
# or at the notebook given first (`bash scripts/course.sh notebooks/04_masks.ipynb`, as the
# website's pages say). Other arguments go to `jupyter lab`.
source "$(dirname "$0")/_env.sh" course
first="$(ls notebooks/[0-9]*.ipynb 2>/dev/null | head -n 1 || true)"
if [[ "${1:-}" == *.ipynb ]]; then
    [ -f "$1" ] || { echo "error: no notebook $1 (expected notebooks/NN_name.ipynb)" >&2; exit 1; }
    first="$1"
    shift
fi
exec jupyter lab "${first:-notebooks}" "$@"
