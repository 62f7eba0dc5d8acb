# Sourced: makes the venv of the pinned packages in tests/chart/requirements.txt (PyYAML,
# kubernetes-validate, helm-python-sdk) at $CHART_VENV (default ~/.cache/spw-chart-venv),
# rebuilt when missing or when requirements.txt changes; sets CHART_PYTHON.
_venv_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_venv="${CHART_VENV:-$HOME/.cache/spw-chart-venv}"
_requirements="$_venv_here/requirements.txt"
_want="$(sha256sum "$_requirements" | cut -d' ' -f1)"
if [[ ! -x "$_venv/bin/python" || "$(cat "$_venv/.requirements.sha256" 2>/dev/null || true)" != "$_want" ]]; then
    echo "preparing venv $_venv" >&2
    rm -rf "$_venv"
    "${PYTHON:-python3}" -m venv "$_venv"
    "$_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$_requirements"
    echo "$_want" > "$_venv/.requirements.sha256"
fi
CHART_PYTHON="$_venv/bin/python"
