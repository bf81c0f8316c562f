"""`nkd diff RUN_A RUN_B`: what differs between two runs, as text: their resolved settings
(defaults included, each with where it came from), their code (the diff between the two commits,
then each run's own uncommitted changes, as unified diffs), each data source's fingerprint, the
installed packages and the worker's machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from core.runs import provenance
from core.runs.differences import code_id, data_id, environment_id, facets
from core.store.apply import settings_of

COMMITS_CAP = 1 << 20  # bytes of the diff between two commits printed


def _value(value: Any, origin: str) -> str:
    shown = value if isinstance(value, str) else json.dumps(value)
    return shown if origin in ("experiment", "") else f"{shown} ({origin})"


def settings_lines(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    sa, sb = settings_of(a), settings_of(b)
    out = []
    for key in sorted(set(sa) | set(sb)):
        va, vb = sa.get(key), sb.get(key)
        if (va or (None,))[0] == (vb or (None,))[0]:
            continue
        left = _value(*va) if va else "(not set)"
        right = _value(*vb) if vb else "(not set)"
        out.append(f"  {key}: {left} → {right}")
    return out


def _commits_diff(repo: str, a: str, b: str) -> list[str]:
    try:
        done = subprocess.run(["git", "-C", repo, "diff", "--no-color", "--no-ext-diff", a, b],
                              capture_output=True, timeout=provenance.GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"  the diff between the commits could not be read ({exc})"]
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["git failed"]
        return [f"  the diff between the commits could not be read ({why[0]})"]
    text = done.stdout[:COMMITS_CAP].decode("utf-8", "replace")
    cut = [f"  … cut at {COMMITS_CAP:,} bytes"] if len(done.stdout) > COMMITS_CAP else []
    return [f"commits {a[:10]}..{b[:10]} in {repo}:", *text.splitlines(), *cut]


def _uncommitted(run: dict[str, Any], label: str) -> list[str]:
    try:
        text = (Path(run["run_dir"]) / "code.diff").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [f"uncommitted changes of {label}: none recorded"]
    return [f"uncommitted changes of {label} ({run['id']}):", *text.splitlines()]


def code_lines(a: dict[str, Any], b: dict[str, Any], pa: dict[str, Any] | None,
               pb: dict[str, Any] | None) -> list[str]:
    if code_id(pa) == code_id(pb):
        return []
    out = [f"  A {code_id(pa)}", f"  B {code_id(pb)}"]
    ca, cb = (pa or {}).get("code") or {}, (pb or {}).get("code") or {}
    if ca.get("commit") and cb.get("commit") and ca["commit"] != cb["commit"]:
        if ca.get("repository") == cb.get("repository"):
            out += _commits_diff(ca["repository"], ca["commit"], cb["commit"])
        else:
            out.append(f"  different repositories: {ca.get('repository')} and "
                       f"{cb.get('repository')}")
    if ca.get("diff_sha256") != cb.get("diff_sha256"):
        for run, code, label in ((a, ca, "A"), (b, cb, "B")):
            if code.get("diff_sha256"):
                out += _uncommitted(run, label)
                if code.get("diff_cut"):
                    out.append(f"  … {label}'s uncommitted diff was cut when it was recorded")
            else:
                out.append(f"uncommitted changes of {label}: none")
    return out


def data_lines(pa: dict[str, Any] | None, pb: dict[str, Any] | None) -> list[str]:
    da, db = (pa or {}).get("data") or {}, (pb or {}).get("data") or {}
    out = []
    for key in sorted(set(da) | set(db)):
        ea, eb = da.get(key), db.get(key)
        if data_id(ea) == data_id(eb) and (ea or {}).get("root") == (eb or {}).get("root"):
            continue
        out.append(f"  {key}: {data_id(ea)} → {data_id(eb)}")
        for e, label in ((ea, "A"), (eb, "B")):
            if e:
                out.append(f"    {label} {e.get('root')}, {e.get('bytes', 0):,} bytes")
    return out


def _packages(run: dict[str, Any]) -> dict[str, str]:
    try:
        lines = (Path(run["run_dir"]) / "packages.txt").read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    return dict(line.split("==", 1) for line in lines if "==" in line)


def environment_lines(a: dict[str, Any], b: dict[str, Any], pa: dict[str, Any] | None,
                      pb: dict[str, Any] | None) -> list[str]:
    out = []
    if environment_id(pa) != environment_id(pb):
        out += [f"  A {environment_id(pa)}", f"  B {environment_id(pb)}"]
        ka, kb = _packages(a), _packages(b)
        for name in sorted(set(ka) | set(kb), key=str.lower):
            if ka.get(name) != kb.get(name):
                out.append(f"    {name}: {ka.get(name, '-')} → {kb.get(name, '-')}")
    ta, tb = facets(pa).get("machine"), facets(pb).get("machine")
    if ta and tb and ta != tb:
        out += [f"  machine A {ta}", f"  machine B {tb}"]
    return out


def diff_lines(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The whole report: a header, then each section that differs (or a line saying it is the
    same); runs recorded before provenance say so."""
    pa = provenance.read(Path(a["run_dir"] or ""))
    pb = provenance.read(Path(b["run_dir"] or ""))
    out = [f"A {a['id']} ({a['experiment']})", f"B {b['id']} ({b['experiment']})"]
    for label, prov in (("A", pa), ("B", pb)):
        if prov is None:
            out.append(f"{label} has no provenance record (recorded before nkd kept one, or "
                       f"its provenance.json is gone); only its settings are compared")
    sections = [("settings", settings_lines(a, b)), ("code", code_lines(a, b, pa, pb)),
                ("data", data_lines(pa, pb)), ("environment", environment_lines(a, b, pa, pb))]
    for name, lines in sections:
        if name != "settings" and (pa is None or pb is None):
            continue
        out.append("")
        out += [f"{name} differs:", *lines] if lines else [f"{name}: the same"]
    return out
