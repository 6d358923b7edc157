#!/usr/bin/env bash
# Create .venv-gbstats: GrowthBook's stats engine (gbstats pins numpy<2 and pandas<2, so it cannot
# share .venv). tests/test_stats.py runs this script first and compares adgen.experiments.stats with gbstats;
# it fails when the venv cannot be built (ADGEN_SKIP_GBSTATS=1 skips the comparison knowingly).
# Idempotent: does nothing when the venv already imports gbstats. Takes ~20 s with a warm pip cache.
# Usage: bash tests/gbstats_env.sh   (PYTHON=python3.11 by default; GBSTATS_VENV to move it)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${GBSTATS_VENV:-$root/.venv-gbstats}"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if "$venv/bin/python" -c "import gbstats" 2>/dev/null; then
    exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "gbstats==0.8.0"
"$venv/bin/python" -c "import gbstats.frequentist.tests, gbstats.bayesian.tests, gbstats.utils"
echo "gbstats venv ready: $venv"
