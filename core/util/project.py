"""Where nkd itself is: the folder that holds the `core` package (what `python -m core.worker`
needs on its path, and the repository whose code a recipe's run records)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
