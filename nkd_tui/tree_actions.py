"""The main screen's left side as the app drives it: the experiments tree filled (and narrowed by
`/`), each leaf's status symbol and best score, and the right pane emptied for the experiment the
tree's cursor moves to. A mixin of NkdApp; the message handlers stay on the app."""

from __future__ import annotations

from textual.widgets import Input, Static, Tree
from textual.widgets.tree import TreeNode

from core.store import ACTIVE
from nkd_tui.experiment_tree import tree_groups
from nkd_tui.format import STATUS_SYMBOL, fmt_bytes, middle
from nkd_tui.log_pane import LogPane
from nkd_tui.run_table import RunTable


class TreeActions:
    """The tree's contents and the filter; `self` is the NkdApp."""

    def _fill_tree(self, text: str) -> TreeNode | None:
        """The experiments whose names contain `text` (all for ""), or that have runs whose
        tags or note match it (`#best`: tagged best), by group in the registry's order; returns
        the first leaf. The run table then lists only the matching runs."""
        tree = self.query_one(Tree)
        tree.clear()
        first_leaf: TreeNode | None = None
        self.poller.search = text
        by_runs = set()
        if text:
            from core.runs.annotate import experiments_matching

            by_runs = experiments_matching(self.poller.store, text)
        for group, names in tree_groups(self.registry.groups(), self._adhoc):
            shown = [n for n in names if text.lower() in n.lower() or n in by_runs]
            if not shown:
                continue
            branch = tree.root.add(group, expand=True, data=None)
            for name in shown:
                leaf = branch.add_leaf(name, data=name)
                first_leaf = first_leaf or leaf
        if self._latest is not None:
            self._update_tree(self._latest)
        return first_leaf

    def _refill_tree(self) -> None:
        self._fill_tree(self.poller.search)
        tree = self.query_one(Tree)
        for leaf in (leaf for branch in tree.root.children for leaf in branch.children):
            if leaf.data == self.experiment:
                self.call_after_refresh(tree.move_cursor, leaf)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.display = True  # now, not at the next restyle: a hidden box cannot take focus
        self.set_focus(box)  # at once: the keys typed right after `/` go to the box

    def _update_tree(
        self, latest: dict[str, str],
        summaries: dict[str, tuple[int, float | None]] | None = None,
    ) -> None:
        """Each experiment: its latest run's status, or `▶N` while N of its runs are live (an
        older run may be running while a newer one finished), its best score so far, and its
        size on disk where the name still fits beside it."""
        self._latest = latest
        self._summaries = summaries = summaries if summaries is not None else self._summaries
        tree = self.query_one(Tree)
        # the width left beside the guide, and the scrollbar once the tree is taller than shown
        budget = max(8, tree.size.width - 2 - (2 if tree.show_vertical_scrollbar else 0))
        for branch in tree.root.children:
            for leaf in branch.children:
                status = latest.get(leaf.data)
                live, best = summaries.get(leaf.data, (0, None))
                size = self._sizes.get(leaf.data, 0)
                symbol = f"▶{live}" if live > 1 or (live and status not in ACTIVE) \
                    else STATUS_SYMBOL.get(status or "", " ")
                score = f" {best:.3g}" if best is not None else ""
                room = budget - len(score) - len(symbol) - 1
                if size and len(leaf.data) + 1 + len(fmt_bytes(size)) <= room:
                    score += f" {fmt_bytes(size)}"
                name = middle(leaf.data, max(5, budget - len(score) - len(symbol) - 1))
                label = name if status is None else f"{symbol} {name}{score}"
                if str(leaf.label) != label:
                    leaf.set_label(label)

    def _show_workspace(self, free: int | None) -> None:
        """The line under the tree: every run's size on disk, and the free space on the disk of
        the checkpoints (`runs` left out where the line would not fit)."""
        total = sum(self._sizes.values())
        text = fmt_bytes(total) + (f" · {fmt_bytes(free)} free" if free is not None else "")
        box = self.query_one("#workspace", Static)
        if len(text) + 5 <= box.size.width - 1:  # its padding
            text = "runs " + text
        if str(box.content) != text:
            box.update(text)

    def _show_experiment(self, name: str | None) -> None:
        """The right pane emptied for `name` (None: no experiment matches the filter); the
        next poll fills it."""
        self.experiment = name
        self.run_id = None
        self.query_one(RunTable).reset()
        if self.chart is not None:
            self.chart.follow(None)
        if name is not None:
            self._show_about(name)
        else:
            self.query_one("#about", Static).update("")
        self._log_text = ""
        self.query_one(LogPane).show("")
