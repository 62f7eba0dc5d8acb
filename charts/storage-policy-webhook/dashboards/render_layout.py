#!/usr/bin/env python3
"""Draws the layout of storage-policy-webhook.json (panel positions, titles, types and queries)
as charts/storage-policy-webhook/dashboard-layout.png, for the chart README. No Grafana needed:
the picture comes from the JSON's gridPos, so it shows where each panel sits, not live data.

Run after changing the dashboard: python3 charts/storage-policy-webhook/dashboards/render_layout.py
(needs matplotlib from PyPI: pip install matplotlib).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "storage-policy-webhook.json"
OUT = HERE.parent / "dashboard-layout.png"
COLORS = {"stat": "#dbeafe", "timeseries": "#dcfce7"}


def short(expr: str) -> str:
    """A query without the variable selectors and the common prefix, for the picture."""
    s = expr.replace('{job=~"$job",namespace=~"$namespace"}', "")
    s = s.replace('{job=~"$job",namespace=~"$namespace",', "{")
    s = s.replace("storage_policy_webhook_", "").replace("[$__rate_interval]", "")
    return s


def main() -> None:
    d = json.loads(DASHBOARD.read_text())
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in d["panels"])
    unit = 0.62
    fig, ax = plt.subplots(figsize=(24 * unit, rows * unit * 0.55 + 0.9))
    ax.set_xlim(0, 24)
    ax.set_ylim(rows, -1.6)
    ax.axis("off")
    ax.text(0, -0.8, f"{d['title']} — layout (variables: "
            + ", ".join(v["name"] for v in d["templating"]["list"]) + ")",
            fontsize=13, fontweight="bold", va="center")
    for p in d["panels"]:
        g = p["gridPos"]
        x, y, w, h = g["x"] + 0.1, g["y"] + 0.1, g["w"] - 0.2, g["h"] - 0.2
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.15",
                                    facecolor=COLORS.get(p["type"], "#f3f4f6"), edgecolor="#6b7280", linewidth=1))
        ax.text(x + 0.25, y + 0.55, p["title"], fontsize=9.5, fontweight="bold", va="center")
        ax.text(x + w - 0.2, y + h - 0.35, p["type"], fontsize=7.5, color="#6b7280", va="center", ha="right")
        width = max(20, int(w * 7.2))
        lines: list[str] = []
        for t in p["targets"]:
            lines += textwrap.wrap(short(t["expr"]), width=width, subsequent_indent="  ")
        room = int((h - 1.0) / 0.5)
        if len(lines) > room:
            lines = lines[: max(room - 1, 0)] + ["…"]
        for i, line in enumerate(lines):
            ax.text(x + 0.25, y + 1.2 + i * 0.5, line, fontsize=6.5, family="monospace", color="#374151",
                    va="center")
    fig.savefig(OUT, dpi=110, bbox_inches="tight")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
