#!/usr/bin/env bash
# Build the course website into build/site/ from the committed notebooks (never executed):
# notebooks, curriculum map, API pages, search, MathJax served locally. Installs the tools
# on first use (PyPI, and MathJax from npm). Arguments go to website/build.py:
#   bash scripts/site.sh --serve      # then browse http://127.0.0.1:8000
# NVP_EDU_REPO_URL=https://github.com/<user>/<repo> sets where its Binder/Colab/source links point.
source "$(dirname "$0")/_env.sh" site
exec python website/build.py "$@"
