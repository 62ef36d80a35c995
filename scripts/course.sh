#!/usr/bin/env bash
# Open the course in JupyterLab (installs everything on first use), at its first notebook.
source "$(dirname "$0")/_env.sh" course
first="$(ls notebooks/[0-9]*.ipynb 2>/dev/null | head -n 1 || true)"
exec jupyter lab "${first:-notebooks}" "$@"
