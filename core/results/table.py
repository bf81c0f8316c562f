"""Kept results as rows to read: tracks × stems worst first with a per-second SDR sparkline, a
noise evaluation's per-class figures and misclassified clips; and the text `nkd results` prints.
The TUI's results screen and the listening page read the same rows."""

from __future__ import annotations

from typing import Any

from core.results.kept import Results

SPARKS = "▁▂▃▄▅▆▇█"
SPARK_LOW, SPARK_HIGH = -10.0, 20.0  # dB the sparkline's lowest and highest bars stand for


def sparkline(values: list[float | None], width: int | None = None) -> str:
    """One character per second (or per group of seconds when `width` is smaller), on a fixed
    scale (SPARK_LOW..SPARK_HIGH dB) so tracks compare; a second without a defined SDR (a
    silent reference) is a space."""
    if width is not None and width > 0 and len(values) > width:
        step = len(values) / width
        groups = [values[int(i * step):int((i + 1) * step) or None] for i in range(width)]
        values = [min((v for v in g if v is not None), default=None) for g in groups]
    out = []
    for v in values:
        if v is None:
            out.append(" ")
            continue
        level = (v - SPARK_LOW) / (SPARK_HIGH - SPARK_LOW)
        out.append(SPARKS[max(0, min(len(SPARKS) - 1, int(level * len(SPARKS))))])
    return "".join(out)


def separation_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per track and stem, worst SDR first (undefined last)."""
    rows = []
    for track in doc.get("tracks", []):
        kept = track.get("kept") or {}
        for stem in doc.get("stems", []):
            rows.append({"track": track["name"], "stem": stem,
                         "sdr": (track.get("sdr") or {}).get(stem),
                         "sdr_global": (track.get("sdr_global") or {}).get(stem),
                         "frames": (track.get("frames") or {}).get(stem) or [],
                         "kept": kept.get("why") if kept.get("signals") else None})
    return sorted(rows, key=lambda r: (r["sdr"] is None, r["sdr"] if r["sdr"] is not None
                                       else 0.0))


def signals_of(doc: dict[str, Any], track: str, stem: str | None) -> dict[str, dict[str, str]]:
    """The kept mixture, reference and estimate of one track and stem (or a noise clip's
    signal), by role; empty when that track kept none."""
    for item in [*doc.get("tracks", []), *doc.get("misclassified", [])]:
        if item.get("name", item.get("clip")) != track:
            continue
        signals = (item.get("kept") or {}).get("signals") or {}
        if stem is None:
            return dict(signals)
        return {role: signals[key] for role, key in (("mixture", "mixture"),
                                                     ("reference", f"{stem}/reference"),
                                                     ("estimate", f"{stem}/estimate"))
                if key in signals}
    return {}


def num_text(value: float | None, fmt: str = "{:.2f}") -> str:
    """A kept figure as the results table, screen and page print it; `-` when undefined."""
    return "-" if value is None else fmt.format(value)


def lines(results: Results, width: int = 60) -> list[str]:
    """What `nkd results` prints of one split."""
    doc = results.doc
    out = [f"{results.split}: {doc['kind']} results in {results.folder}"]
    if doc["kind"] == "separation":
        out.append(f"  {'track':<24} {'stem':<8} {'SDR':>7} {'global':>7}  per second (SDR "
                   f"{SPARK_LOW:g}..{SPARK_HIGH:g} dB)   kept")
        for r in separation_rows(doc):
            out.append(f"  {r['track'][:24]:<24} {r['stem'][:8]:<8} {num_text(r['sdr']):>7} "
                       f"{num_text(r['sdr_global']):>7}  {sparkline(r['frames'], 30):<30}  "
                       f"{r['kept'] or ''}")
        out.append("  SDR: BSS Eval v4, the median over 1 s frames; global: the challenges' "
                   "whole-track SDR")
        return out
    names = doc["classes"]
    out.append(f"  {doc['clips']} clips; confusion (rows true, columns predicted):")
    w = max(6, *(len(n[:12]) for n in names))
    out.append("  " + " " * w + " " + " ".join(f"{n[:6]:>6}" for n in names) +
               "  precision  recall")
    for n, row, p, r in zip(names, doc["confusion"], doc["precision"], doc["recall"],
                            strict=True):
        out.append(f"  {n[:12]:<{w}} " + " ".join(f"{v:>6}" for v in row) +
                   f"  {num_text(p, '{:.3f}'):>9}  {num_text(r, '{:.3f}'):>6}")
    wrong = doc.get("misclassified") or []
    out.append(f"  most confidently misclassified ({len(wrong)}):" if wrong
               else "  no clip misclassified")
    for item in wrong:
        kept = " (kept)" if (item.get("kept") or {}).get("signals") else ""
        out.append(f"    {item['clip'][:width]}  {item['true']} → {item['predicted']} "
                   f"{item['confidence']:.2f}{kept}")
    return out
