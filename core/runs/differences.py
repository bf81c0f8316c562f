"""What made two runs differ, read from their provenance records: the code (commit and
uncommitted changes), each data source's fingerprint, the environment and the worker's machine.

`facets` turns one record into the comparable values `nkd compare` shows as rows; `differs`
says in words what changed from one record to another (`nkd rerun`, the lineage marks).
"""

from __future__ import annotations

from typing import Any

from core.runs.provenance import machine_text

NOT_RECORDED = "not recorded"


def code_id(prov: dict[str, Any] | None) -> str:
    """The code a run ran, as one comparable value: `commit` or `commit+diff` (the first
    characters of each hash); why not, where there was no repository."""
    if not prov:
        return NOT_RECORDED
    code = prov.get("code") or {}
    if not code.get("repository"):
        return f"({code.get('why') or NOT_RECORDED})"
    commit = (code.get("commit") or "no commit")[:10]
    if code.get("dirty") is None:
        return f"{commit}+?"
    return f"{commit}+{code['diff_sha256'][:8]}" if code.get("diff_sha256") else commit


def data_id(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    if entry.get("missing"):
        return "missing"
    n = entry["files"]
    return f"{entry['fingerprint'][:10]} ({n:,} file{'' if n == 1 else 's'})"


def environment_id(prov: dict[str, Any] | None) -> str:
    env = (prov or {}).get("environment") or {}
    if not env:
        return NOT_RECORDED
    return (f"py {env.get('python')} torch {env.get('torch') or '-'} "
            f"pkgs {env.get('packages_sha256', '?')[:8]}")


def facets(prov: dict[str, Any] | None) -> dict[str, str]:
    """One record's comparable values: code, data per source, environment, machine."""
    out = {"code": code_id(prov)}
    for key, entry in ((prov or {}).get("data") or {}).items():
        out[key] = data_id(entry)  # data, val_data, ...: the data source's key
    out["environment"] = environment_id(prov)
    if (prov or {}).get("machine"):
        out["machine"] = machine_text(prov["machine"])  # type: ignore[index]
    return out


def rows(provs: list[dict[str, Any] | None]) -> list[tuple[str, list[str | None], bool]]:
    """(facet, value per run, whether they differ), differences first; nothing when no run
    has a record (runs from before provenance was recorded)."""
    if not any(provs):
        return []
    each = [facets(p) if p else {} for p in provs]
    names = list(dict.fromkeys(k for f in each for k in f))
    out = []
    for name in names:
        values = [f.get(name) for f in each]
        out.append((name, values, any(v != values[0] for v in values[1:])))
    order = {"code": 0, "environment": 2, "machine": 3}
    out.sort(key=lambda r: (not r[2], order.get(r[0], 1), r[0]))
    return out


def differs(old: dict[str, Any] | None, new: dict[str, Any] | None,
            aspects: tuple[str, ...] = ("code", "data")) -> list[str]:
    """What changed from `old` to `new`, one phrase per aspect that did: `code differs
    (a1b2c3d4e5 → f6a7..., uncommitted changes)`, `data 'data' differs (1,204 → 1,205 files)`.
    Nothing when either has no record: nothing is known to differ."""
    if not old or not new:
        return []
    out = []
    if "code" in aspects and code_id(old) != code_id(new):
        out.append(f"code differs ({code_id(old)} → {code_id(new)})")
    if "data" in aspects:
        a, b = old.get("data") or {}, new.get("data") or {}
        for key in sorted(set(a) | set(b)):
            was, now = a.get(key), b.get(key)
            if was is None or now is None:
                out.append(f"data '{key}' {'added' if was is None else 'not read'}")
            elif data_id(was) != data_id(now) or was.get("root") != now.get("root"):
                out.append(f"data '{key}' differs ({_data_change(was, now)})")
    if "environment" in aspects and environment_id(old) != environment_id(new):
        out.append(f"environment differs ({environment_id(old)} → {environment_id(new)})")
    return out


def _data_change(was: dict[str, Any], now: dict[str, Any]) -> str:
    if was.get("root") != now.get("root"):
        return f"{was.get('root')} → {now.get('root')}"
    if was.get("missing") or now.get("missing"):
        return f"{data_id(was)} → {data_id(now)}"
    if was["files"] != now["files"]:
        return f"{was['files']:,} → {now['files']:,} file{'' if now['files'] == 1 else 's'}"
    if was["bytes"] != now["bytes"]:
        return f"{was['bytes']:,} → {now['bytes']:,} bytes"
    return "same file count and size; names or modification times changed"


def lineage_marks(parent: dict[str, Any] | None, child: dict[str, Any] | None) -> list[str]:
    """How a fine-tune, blend or evaluation was made unlike its parent: `code differs` when the
    code does, `data differs` when it read a folder, or a state of one, that its parent did not
    (an evaluation on the parent's own test split is not marked). Nothing when either has no
    record."""
    if not parent or not child:
        return []
    out = []
    if code_id(parent) != code_id(child):
        out.append("code differs")
    known = {(e.get("root"), data_id(e)) for e in (parent.get("data") or {}).values()}
    if any((e.get("root"), data_id(e)) not in known for e in (child.get("data") or {}).values()):
        out.append("data differs")
    return out
