"""The instances an engine knows: states in memory by uid, and uids by (workflow, scope, id)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dynwf.engine._model import InstanceState

Key = tuple[str, str, str]  # workflow, scope, id


@dataclass(slots=True)
class InstanceTable:
    """Every instance's uid by its key (from the journal), and the states loaded so far."""

    states: dict[str, InstanceState] = field(default_factory=dict)
    index: dict[Key, str] = field(default_factory=dict)

    def add(self, st: InstanceState) -> None:
        self.states[st.uid] = st
        self.index[(st.workflow, st.scope, st.id)] = st.uid

    def forget(self, st: InstanceState) -> None:
        self.states.pop(st.uid, None)
        if self.index.get((st.workflow, st.scope, st.id)) == st.uid:
            del self.index[(st.workflow, st.scope, st.id)]

    def clear(self) -> None:
        self.states.clear()
        self.index.clear()

    def scopes_with(self, workflow: str, id: str) -> list[str]:
        """Every tenant scope of ``workflow`` holding an instance ``id`` (a scan)."""
        return sorted(s for (w, s, i) in self.index if i == id and w == workflow)
