"""The report's int8 section: for every int8 file that failed its gate in the export
(pipeline.export.repair's record in manifest.json), the per-layer error ranking as a table, what
each repair attempt measured, which one passed; and int8_diagnosis.png (the ranking as bars,
the layers kept float in the repaired file highlighted)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.plots import pyplot, save_figure

PLOT = "int8_diagnosis.png"
SHOWN = 10     # layers per file in the table and the plot


def diagnosed(manifests: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One entry per diagnosed int8 file: {"variant", "file", "format", "record"} from
    (variant label, manifest) pairs."""
    out, seen = [], set()
    for variant, man in manifests:
        for art in man.get("failed", []) + man.get("artifacts", []):
            record = art.get("int8_repair")
            key = (variant, art["format"])
            if record and key not in seen:
                seen.add(key)
                plain = next((f["file"] for f in man.get("failed", []) if f["format"] == art["format"]),
                             art["file"])
                out.append({"variant": variant, "file": plain, "format": art["format"], "record": record})
    return out


def section(entries: list[dict[str, Any]]) -> list[str]:
    """report.md's lines."""
    if not entries:
        return []
    lines = ["", "## int8 diagnosis and repair", ""]
    for e in entries:
        rec, diag = e["record"], e["record"]["diagnosis"]
        kept = set((rec.get("result") or {}).get("float_layers") or [])
        lines += [f"`{e['file']}` ({e['variant']}) failed its gate. Its {diag['layers_total']} quantized "
                  f"layers ranked by {diag['metric']} ({diag['metric_help']}; {diag['images']} "
                  "calibration images):", "",
                  "| rank | layer | op | error | in the repaired file |", "|---:|---|---|---:|---|"]
        for i, layer in enumerate(diag["layers"][:SHOWN], 1):
            lines.append(f"| {i} | {layer['layer']} | {layer['op']} | {layer['error']:.3g} | "
                         f"{'float' if layer['layer'] in kept else 'int8'} |")
        lines.append("")
        for a in rec["attempts"]:
            agree = (f"agreement {a['top1_agreement']:.4f}" if a.get("top1_agreement") is not None
                     else a["reasons"][0])
            lines.append(f"- {a['fix']} -> `{a['file']}`: {agree}, {'PASSED' if a['passed'] else 'failed'}")
        result = rec.get("result")
        lines += ["", f"Repaired: `{result['file']}` ({result['fix']})." if result else
                  "Not repaired (int8.repair=none, or no fix passed within int8.budget).", ""]
    lines += [f"![int8 diagnosis]({PLOT})", ""]
    return lines


def plot(entries: list[dict[str, Any]], dest: Path) -> Path | None:
    """Bars of each diagnosed file's worst layers (float-kept layers in red)."""
    if not entries:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(entries), figsize=(5 * len(entries), 3.5), squeeze=False)
    for ax, e in zip(axes[0], entries):
        diag = e["record"]["diagnosis"]
        kept = set((e["record"].get("result") or {}).get("float_layers") or [])
        layers = diag["layers"][:SHOWN][::-1]
        ax.barh([f"{r['layer']} ({r['op']})" for r in layers], [r["error"] for r in layers],
                color=["tab:red" if r["layer"] in kept else "tab:blue" for r in layers])
        ax.set_xlabel(diag["metric"])
        ax.set_title(f"{e['file']} ({e['variant']})", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("int8 per-layer error, worst on top (red: kept float in the repaired file)", fontsize=9)
    return save_figure(fig, dest)
