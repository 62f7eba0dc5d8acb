#!/usr/bin/env bash
# Checks the Helm chart offline: lint, render per certificate mode, Kubernetes schema validation,
# webhook settings, values.schema.json refusals, the alerts (promtool) and dashboard
# (tests/chart/test_chart.py); then, in the same venv, `audit --output openreports` against the
# vendored OpenReports CRDs (tests/openreports/test_openreports.py).
#
# Uses a venv at $CHART_VENV (default ~/.cache/spw-chart-venv) with the pinned packages of
# requirements.txt; it is (re)built when missing or when requirements.txt changes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${CHART_VENV:-$HOME/.cache/spw-chart-venv}"
python="${PYTHON:-python3}"
requirements="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    echo "chart tests: preparing venv $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$requirements"
    echo "$want" > "$stamp"
fi

status=0
"$venv/bin/python" "$here/test_chart.py" || status=1
"$venv/bin/python" "$here/../openreports/test_openreports.py" || status=1
exit "$status"
