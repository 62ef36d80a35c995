#!/usr/bin/env bash
# Open the course in JupyterLab (installs everything on first use).
source "$(dirname "$0")/_env.sh" course
exec jupyter lab notebooks/01_change_of_variables.ipynb "$@"
