#!/usr/bin/env bash
# Run the whole test suite: unit tests, every notebook in fast mode (nbval), the
# browser walkthrough, the docstring examples. Installs everything on first use. Extra arguments go to pytest.
source "$(dirname "$0")/_env.sh" test
export NVP_EDU_FAST=1
set +e
# notebooks/ is collected when present (a fresh clone of a branch without notebooks has none).
paths=(tests nvp_edu)
[ -d notebooks ] && paths+=(notebooks)
# Two pytest processes (pytest-xdist), each taking whole files: a notebook's cells stay in
# order in one kernel, and the browser walkthrough runs once. One OpenMP thread per process:
# two processes that each used torch's default (a thread per core) slowed some tests 5-10x
# on a 2-core machine. NVP_EDU_TEST_WORKERS=1 runs everything in one process (for -x, --pdb).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
workers="${NVP_EDU_TEST_WORKERS:-2}"
parallel=()
[ "$workers" != 1 ] && parallel=(-n "$workers" --dist loadfile)
python -m pytest "${paths[@]}" --doctest-modules --nbval-lax --nbval-current-env --nbval-cell-timeout=600 "${parallel[@]}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests (exit 5): the suite is missing, failing on purpose" >&2
    exit 1
fi
exit "$rc"
