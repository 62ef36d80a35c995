#!/usr/bin/env bash
# Run the whole test suite: unit tests, every notebook in fast mode (nbval), the
# browser walkthrough, the docstring examples. Installs everything on first use. Extra arguments go to pytest.
source "$(dirname "$0")/_env.sh" test
export NVP_EDU_FAST=1
set +e
# notebooks/ is collected when present (a fresh clone of a branch without notebooks has none).
paths=(tests nvp_edu)
[ -d notebooks ] && paths+=(notebooks)
python -m pytest "${paths[@]}" --doctest-modules --nbval-lax --nbval-current-env --nbval-cell-timeout=600 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests (exit 5): the suite is missing, failing on purpose" >&2
    exit 1
fi
exit "$rc"
