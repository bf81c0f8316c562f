"""The lineage screen (a run's checkpoint family: roots, fine-tunes, blends with weights,
evaluations, each with its key metric) and the blend dialog opened from two marked nodes."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Label, Static, Tree
from textual.widgets.tree import TreeNode

from core.errors import NkdError
from core.registry import Registry
from core.runs.lineage import Node
from nkd_tui.messages import LineageRead, ReportsWorkerErrors


class LineageTree(Tree):
    BINDINGS = [Binding("space", "screen.mark", "Mark", show=False)]


class LineageScreen(ReportsWorkerErrors, Screen[None]):
    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back", id="lineage.back"),
        Binding("space", "mark", "Mark for blend", id="lineage.mark"),
        Binding("b", "blend", "Blend marked", id="lineage.blend"),
    ]

    def __init__(self, registry: Registry, db_path: Path, run_id: str) -> None:
        super().__init__()
        self.registry = registry
        self.db_path = db_path
        self.run_id = run_id
        self.marked: list[str] = []
        # every tree item of a run (a blend appears under each source): item, text, repeated
        self._items: dict[str, list[tuple[TreeNode, str, bool, tuple[str, ...]]]] = {}

    def compose(self) -> ComposeResult:
        yield Static(
            f"lineage of {self.run_id} · space marks · b blends the marked · esc back",
            id="lineage-title",
        )
        yield LineageTree("lineage", id="lineage-tree")
        yield Footer()

    def on_mount(self) -> None:
        tree = self.query_one(LineageTree)
        tree.show_root = False
        tree.guide_depth = 3
        self._load()

    @work(thread=True, name="lineage", exit_on_error=False)
    def _load(self) -> None:
        from core.runs.lineage import tree
        from core.store import Store

        store = Store(self.db_path)
        try:
            roots = tree(store, self.run_id)
        finally:
            store.close()
        self.post_message(LineageRead(roots))

    def on_lineage_read(self, message: LineageRead) -> None:
        self._show(message.roots)

    def _show(self, roots: list[Node]) -> None:
        tree = self.query_one(LineageTree)
        tree.clear()
        self._items.clear()
        target: TreeNode | None = None

        def add(parent: TreeNode, node: Node) -> None:
            nonlocal target
            text = (f"{node.via} → " if node.via else "") + node.label
            label = self._label(node.run_id, text, node.repeated, node.marks)
            if node.children:
                item = parent.add(label, data=node.run_id, expand=True)
            else:
                item = parent.add_leaf(label, data=node.run_id)
            self._items.setdefault(node.run_id, []).append(
                (item, text, node.repeated, node.marks))
            if node.run_id == self.run_id and target is None:
                target = item
            for child in node.children:
                add(item, child)

        for root in roots:
            add(tree.root, root)
        tree.focus()
        if target is not None:
            self.call_after_refresh(tree.move_cursor, target)

    def _label(self, run_id: str, text: str, repeated: bool,
               marks: tuple[str, ...] = ()) -> Text:
        label = Text("● " if run_id in self.marked else "")
        label.append(text, style="bold" if run_id == self.run_id else "")
        if marks:  # made unlike its parent: its code or its data differ
            label.append(f"  [{', '.join(marks)}]", style="yellow")
        if repeated:
            label.append("  (also above)", style="dim")
        return label

    def action_mark(self) -> None:
        node = self.query_one(LineageTree).cursor_node
        if node is None or node.data is None:
            return
        run_id = node.data
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        for item, text, repeated, marks in self._items.get(run_id, []):
            item.set_label(self._label(run_id, text, repeated, marks))

    def action_blend(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two or more nodes with space, then press b", severity="warning")
            return
        self.app.push_screen(BlendScreen(self.registry, self.db_path, list(self.marked)))


class BlendScreen(ModalScreen[None]):
    """Weights and a name for a blend of the marked runs; launches the blend and its evaluation."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="blend.cancel"),
        Binding("ctrl+s", "launch", "Blend", id="blend.launch"),
    ]

    def __init__(self, registry: Registry, db_path: Path, sources: list[str]) -> None:
        super().__init__()
        self.registry = registry
        self.db_path = db_path
        self.sources = sources

    def compose(self) -> ComposeResult:
        equal = round(1 / len(self.sources), 4)
        weights = [equal] * (len(self.sources) - 1)
        weights.append(round(1 - sum(weights), 4))
        with Vertical(id="dialog"):
            yield Label(Text("Blend checkpoints", style="bold"))
            yield Static("\n".join(f"  {i + 1}. {s}" for i, s in enumerate(self.sources)))
            yield Label("weights, in that order, summing to 1")
            yield Input(",".join(f"{w:g}" for w in weights), id="weights")
            yield Label("name of the blend's runs (empty: made from the sources)")
            yield Input("", id="name")
            yield Static("", id="error")
            with Horizontal(id="buttons"):
                # the launch dialog's order: the action first, then cancel
                yield Button("Blend (ctrl+s)", id="launch", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()
        else:
            self.action_cancel()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_launch()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_launch(self) -> None:
        from core.runs.blends import blend_experiment, parse_weights
        from core.runs.launch import launch_experiment
        from core.store import Store

        store = Store(self.db_path)
        try:
            weights = parse_weights(self.query_one("#weights", Input).value, len(self.sources))
            name = self.query_one("#name", Input).value.strip() or None
            exp = blend_experiment(self.registry, store, self.sources, weights, name)
            launched = launch_experiment(self.registry, exp, store=store)
        except NkdError as exc:
            self.query_one("#error", Static).update(Text(str(exc), style="bold red"))
            return
        finally:
            store.close()
        self.app.notify(f"{launched.run_id}: blending and evaluating")
        self.dismiss(None)
