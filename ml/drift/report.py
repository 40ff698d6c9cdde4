"""The drift report: an HTML page with reference-vs-current plots of the flagged features (the
empirical CDFs of numeric ones, whose largest gap is the KS statistic; the shares of categories)
and the table of every score."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from ml import storage
from ml.drift.statistics import P_GRID


def _plot(name: str, ref: dict, cur: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    try:
        if ref.get("kind") == "numeric" and ref.get("quantiles") and cur.get("quantiles"):
            ax.plot(ref["quantiles"], P_GRID, drawstyle="steps-post", label="reference")
            ax.plot(cur["quantiles"], P_GRID, drawstyle="steps-post", label="current")
            ax.set_xlabel(name)
            ax.set_ylabel("share ≤ x")
        elif ref.get("values") is not None and cur.get("values") is not None:
            keys = [k for k, _ in ref.get("top_k", [])][:12]
            keys += [k for k, _ in sorted(cur["values"].items(), key=lambda kv: -kv[1]) if k not in keys][:4]
            p = np.array([ref["values"].get(k, 0) for k in keys], float)
            q = np.array([cur["values"].get(k, 0) for k in keys], float)
            x = np.arange(len(keys))
            ax.bar(x - 0.2, p / max(ref["count"], 1), 0.4, label="reference")
            ax.bar(x + 0.2, q / max(cur["count"], 1), 0.4, label="current")
            ax.set_xticks(x, keys, rotation=45, fontsize=7)
        ax.set_title(name)
        ax.legend(fontsize=7)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
    finally:
        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _stats_of(stats: dict, name: str) -> dict | None:
    return stats["features"].get(name) or stats.get("label")


def write_report(result: dict, ref_stats: dict, cur_stats: dict, path) -> str:
    """Write the page to `path` (a path or a URI of the storage backend); return it."""
    run_id = html.escape(str(result.get("run_id", "")))
    flagged = list(dict.fromkeys(result["drifted"] + result["leakage"]))
    parts = [f"<html><head><meta charset='utf-8'><title>drift report {run_id}</title>"
             "<style>body{font-family:sans-serif}td,th{padding:2px 8px}.b{background:#fdd}</style></head><body>",
             f"<h1>Drift report</h1><p>run {run_id}, {result['rows']} rows; "
             f"verdict: <b>{'OK' if result['ok'] else 'DRIFT'}</b>; drifted: {html.escape(', '.join(flagged) or 'none')}"
             f"; drifted share {result['drifted_share']:.1%}; blocks training: "
             f"{html.escape(', '.join(result.get('blocked', [])) or 'no')}</p>"]
    for name in flagged:
        ref, cur = _stats_of(ref_stats, name), _stats_of(cur_stats, name)
        if ref and cur and not ref.get("missing") and not cur.get("missing"):
            parts.append(f"<h3>{html.escape(name)}</h3><img src='data:image/png;base64,{_plot(name, ref, cur)}'>")
    parts.append("<h2>Scores</h2><table><tr><th>feature</th><th>slice</th><th>metric</th><th>value</th>"
                 "<th>threshold</th><th>breached</th></tr>")
    for s in sorted(result["scores"], key=lambda s: (not s["breached"], s["feature"], s["slice"])):
        threshold = "" if s["threshold"] is None else f"{s['threshold']:.4g}"
        parts.append(f"<tr class='{'b' if s['breached'] else ''}'><td>{html.escape(s['feature'])}</td>"
                     f"<td>{html.escape(s['slice'])}</td><td>{s['metric']}</td><td>{s['value']:.4g}</td>"
                     f"<td>{threshold}</td><td>{'YES' if s['breached'] else ''}</td></tr>")
    parts.append("</table></body></html>")
    storage.write_text(str(path), "\n".join(parts))
    return str(path)
