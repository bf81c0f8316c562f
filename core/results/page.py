"""The listening page of one or more runs' kept results: per split, the results table, the
spectrogram images (drawn with matplotlib from the kept `.npy` files) and an audio player for
each kept mixture, reference and estimate. `nkd listen` serves it; `nkd report` writes it as a
self-contained folder. One builder for both: the page's HTML and the files it names."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from core.results.kept import Results, read_spectrogram
from core.results.spectrogram import RANGE_DB
from core.results.table import num_text, separation_rows

# a page opened with ?check=1 checks itself (the browser test): every audio element loads its
# source until it can play through (decoded), every image decodes; the verdict goes into #check
CHECK = """<script>
if (location.search.includes("check")) {
  const audios = [...document.querySelectorAll("audio")], images = [...document.images];
  const loaded = a => new Promise((ok, bad) => {
    a.addEventListener("canplaythrough", ok, {once: true});
    a.addEventListener("error", () => bad(a.error), {once: true});
    a.preload = "auto"; a.load();
  });
  Promise.allSettled([...audios.map(loaded), ...images.map(i => i.decode())]).then(rs => {
    const bad = rs.filter(r => r.status !== "fulfilled").length;
    document.getElementById("check").textContent =
      `checked ${audios.length} audio ${images.length} images ${bad} failed`;
  });
}
</script>"""
STYLE = """<style>
body { font-family: sans-serif; margin: 1em 2em; background: #fafafa; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { border: 1px solid #ccc; padding: 2px 6px; font-size: 13px; text-align: right; }
td.l, th.l { text-align: left; }
figure { display: inline-block; margin: 0 8px 8px 0; }
figcaption { font-size: 12px; }
audio { width: 320px; display: block; }
</style>"""


@dataclass
class Page:
    html: str = ""
    # url path -> ("audio", the kept file) or ("png", the kept spectrogram to draw)
    files: dict[str, tuple[str, Path]] = field(default_factory=dict)


def png(spectrogram: Path) -> bytes:
    """A kept spectrogram as a PNG image (matplotlib, no window)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    spec = read_spectrogram(spectrogram)
    fig = Figure(figsize=(4.0, 1.6), dpi=80)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(spec.astype(np.float32) / 255 * RANGE_DB - RANGE_DB, origin="lower",
              aspect="auto", cmap="inferno", vmin=-RANGE_DB, vmax=0, interpolation="nearest")
    ax.set_axis_off()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _e(value: Any) -> str:
    return html.escape(str(value))


def build(runs: list[tuple[str, list[Results]]]) -> Page:
    """The page for runs (id, kept results), in the given order (a blend or fine-tune next to
    its parent)."""
    page = Page()
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>nkd results: "
             f"{_e(', '.join(r for r, _ in runs))}</title>{STYLE}</head><body>",
             "<h1>nkd results</h1><p id='check'></p>"]
    for n, (run_id, results) in enumerate(runs):
        parts.append(f"<h2>{_e(run_id)}</h2>")
        for res in results:
            base = f"r{n}/{res.folder.name}"
            parts.append(f"<h3>{_e(res.split)} ({_e(res.kind)})</h3>")
            if res.kind == "separation":
                parts += _separation(page, res, base)
            else:
                parts += _noise(page, res, base)
    parts += [CHECK, "</body></html>"]
    page.html = "\n".join(parts)
    return page


def _media(page: Page, res: Results, base: str, entry: dict[str, str], caption: str) -> str:
    audio_url = f"{base}/{entry['audio']}"
    image_url = f"{base}/{entry['spectrogram'][:-4]}.png"
    page.files[audio_url] = ("audio", res.path(entry["audio"]))
    page.files[image_url] = ("png", res.path(entry["spectrogram"]))
    return (f"<figure><img src='{_e(quote(image_url))}' alt='' width='320' height='128'>"
            f"<figcaption>{_e(caption)}</figcaption>"
            f"<audio controls preload='none' src='{_e(quote(audio_url))}'></audio></figure>")


def _separation(page: Page, res: Results, base: str) -> list[str]:
    doc = res.doc
    out = ["<table><tr><th class='l'>track</th><th class='l'>stem</th><th>SDR</th>"
           "<th>global SDR</th><th class='l'>kept</th></tr>"]
    for r in separation_rows(doc):
        out.append(f"<tr><td class='l'>{_e(r['track'])}</td><td class='l'>{_e(r['stem'])}</td>"
                   f"<td>{num_text(r['sdr'])}</td><td>{num_text(r['sdr_global'])}</td>"
                   f"<td class='l'>{_e(r['kept'] or '')}</td></tr>")
    out.append("</table><p>SDR: BSS Eval v4, the median over 1 s frames. Global SDR: the "
               "MDX/SDX challenges' whole-track figure. Spectrograms: dB below the mixture's "
               f"loudest band, {RANGE_DB:g} dB range.</p>")
    for track in doc.get("tracks", []):
        kept = track.get("kept") or {}
        signals = kept.get("signals") or {}
        if not signals:
            continue
        out.append(f"<h4>{_e(track['name'])} ({_e(kept.get('why'))}; "
                   f"{kept.get('start', 0):.1f}–{kept.get('end', 0):.1f} s)</h4>")
        out.append(_media(page, res, base, signals["mixture"], "mixture"))
        for stem in doc.get("stems", []):
            out.append("<div>")
            sdr = (track.get("sdr") or {}).get(stem)
            for role in ("reference", "estimate"):
                entry = signals.get(f"{stem}/{role}")
                if entry:
                    extra = f", SDR {num_text(sdr)} dB" if role == "estimate" else ""
                    out.append(_media(page, res, base, entry, f"{stem} {role}{extra}"))
            out.append("</div>")
    return out


def _noise(page: Page, res: Results, base: str) -> list[str]:
    doc = res.doc
    names, matrix = doc["classes"], doc["confusion"]
    top = max([max(r) for r in matrix] or [1]) or 1
    out = ["<table><tr><th class='l'>true \\ predicted</th>"
           + "".join(f"<th>{_e(n)}</th>" for n in names)
           + "<th>precision</th><th>recall</th></tr>"]
    for name, row, p, r in zip(names, matrix, doc["precision"], doc["recall"], strict=True):
        cells = "".join(f"<td style='background:rgba(230,90,30,{v / top:.2f})'>{v}</td>"
                        for v in row)
        out.append(f"<tr><td class='l'>{_e(name)}</td>{cells}<td>{num_text(p)}</td>"
                   f"<td>{num_text(r)}</td></tr>")
    out.append("</table><h4>most confidently misclassified</h4><ul>")
    for item in doc.get("misclassified") or []:
        line = (f"{_e(item['clip'])}: {_e(item['true'])} → {_e(item['predicted'])} "
                f"({item['confidence']:.2f})")
        signals = (item.get("kept") or {}).get("signals") or {}
        media = _media(page, res, base, signals["clip"], "clip") if "clip" in signals else ""
        out.append(f"<li>{line}{media}</li>")
    out.append("</ul>")
    return out
