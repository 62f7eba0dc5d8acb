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
source "$here/venv.sh"

status=0
"$CHART_PYTHON" "$here/test_chart.py" || status=1
"$CHART_PYTHON" "$here/../openreports/test_openreports.py" || status=1
exit "$status"
