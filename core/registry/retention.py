"""What the registry key `keep_checkpoints` says: which checkpoints a built-in training run keeps
as it goes.

    keep_checkpoints = ["best", "last"]            # the default: today's two files per part
    keep_checkpoints = ["best:3", "last"]          # and the three best epochs, each in its own file
    keep_checkpoints = ["best", "every:10"]        # and epochs 10, 20, 30, ... (no last file)

`best` is the best epoch's weights (`best_<prefix>_<part>.pth`), which the run's test split,
`nkd eval` and every reference read, so every policy keeps it; `best:K` also keeps the K best
epochs as `<prefix>_<part>_epochNNN.pth`, deleting one as it drops out of the K; `last` is the
latest weights (`<prefix>_<part>.pth`, rewritten every `checkpoint_every` epochs); `every:N`
keeps epochs N, 2N, ... for good.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

DEFAULT = ["best", "last"]
FORM = ('a list of "best" or "best:K" (the K best epochs), "last", "every:N" (epochs N, 2N, ...), '
        'with "best" or "best:K" in it')
_ITEM = re.compile(r"(best|last|every)(?::([1-9]\d{0,5}))?")


class Keep(NamedTuple):
    top: int = 1  # the K best epochs kept; 1 is the best file alone
    last: bool = True
    every: int = 0  # epochs N, 2N, ... kept for good (0: none)

    def epoch_files(self) -> bool:
        """Whether some epochs are kept in files of their own."""
        return self.top > 1 or self.every > 0

    def text(self) -> str:
        words = ["best" if self.top == 1 else f"best:{self.top}"]
        words += ["last"] * self.last + [f"every:{self.every}"] * bool(self.every)
        return ",".join(words)


def parse_keep(value: Any) -> Keep | None:
    """The policy of a `keep_checkpoints` value; None when it is not of the key's form."""
    if not isinstance(value, list) or not value:
        return None
    top, last, every = 0, False, 0
    for item in value:
        found = _ITEM.fullmatch(item) if isinstance(item, str) else None
        if found is None:
            return None
        word, n = found.group(1), found.group(2)
        if word == "best":
            top = max(top, int(n or 1))
        elif word == "last" and n is None:
            last = True
        elif word == "every" and n is not None:
            every = int(n)
        else:
            return None
    return Keep(top, last, every) if top else None


__all__ = ["DEFAULT", "FORM", "Keep", "parse_keep"]
