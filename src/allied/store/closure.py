"""Label closures: for every stored object version, every label set its release depends on.

An object's closure is its own label set together with the label sets of every object it
reaches through references (the latest version of each, held objects only; identities and
marking definitions are exempt, as the reference rule says). The rule "an object referring to
a withheld object is withheld too" then becomes a test of one row: a version may be released
to a partner exactly when every label set of its closure is allowed for that partner. Egress
can therefore filter in SQL, one page at a time, instead of walking the graph at read time.

The price is paid at write time: a new latest version of X changes the closure of everything
that reaches X, which the writer finds through the reverse reference index and recomputes
here. References can form cycles (reports of reports, notes on notes), so closures are
computed per strongly connected component.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Closure = frozenset[int]


def closures(
    label_sets: Sequence[int],
    targets: Sequence[Sequence[str]],
    latest: Mapping[str, int],
    outside: Mapping[str, Closure],
) -> list[Closure]:
    """The closure of every node: ``label_sets[i]`` is node i's own label set and
    ``targets[i]`` the ids it refers to. A target id resolves to node ``latest[id]`` if it is
    one of the nodes being computed, else to its known closure ``outside[id]``; an id in
    neither is not held and adds nothing.

    Nodes mostly refer to nodes before them (objects are written after what they point to),
    so one pass in order settles nearly all; the rest (forward references, cycles) go through
    Tarjan's algorithm.
    """
    count = len(label_sets)
    result: list[Closure | None] = [None] * count
    pending: list[int] = []
    for node in range(count):
        parts: list[Closure] = [frozenset((label_sets[node],))]
        for target in targets[node]:
            index = latest.get(target)
            if index is None:
                known = outside.get(target)
                if known is not None:
                    parts.append(known)
                continue
            found = result[index]
            if found is None:
                pending.append(node)
                break
            parts.append(found)
        else:
            result[node] = frozenset().union(*parts)
    if pending:
        _components(pending, label_sets, targets, latest, outside, result)
    settled: list[Closure] = []
    for found in result:
        if found is None:  # an empty closure would release the object to anyone
            raise RuntimeError("label closure left unsettled")
        settled.append(found)
    return settled


def _components(
    start: list[int],
    label_sets: Sequence[int],
    targets: Sequence[Sequence[str]],
    latest: Mapping[str, int],
    outside: Mapping[str, Closure],
    result: list[Closure | None],
) -> None:
    """Tarjan's strongly connected components over the unsettled nodes, without recursion.
    A component is finished only after every component it reaches, so when it is popped its
    closure is its members' label sets and everything they refer to outside it."""
    order: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()

    def successors(node: int) -> list[int]:
        return [latest[t] for t in targets[node] if t in latest and result[latest[t]] is None]

    for root in start:
        if root in order or result[root] is not None:
            continue
        work: list[tuple[int, list[int]]] = [(root, successors(root))]
        order[root] = low[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, rest = work[-1]
            if rest:
                nxt = rest.pop()
                if nxt not in order:
                    order[nxt] = low[nxt] = len(order)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, successors(nxt)))
                elif nxt in on_stack:
                    low[node] = min(low[node], order[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] != order[node]:
                continue
            members: list[int] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            inside = set(members)
            parts: list[Closure] = []
            for member in members:
                parts.append(frozenset((label_sets[member],)))
                for target in targets[member]:
                    index = latest.get(target)
                    if index is None:
                        known = outside.get(target)
                        if known is not None:
                            parts.append(known)
                    elif index not in inside:
                        settled = result[index]
                        assert settled is not None, "a reached component finishes first"
                        parts.append(settled)
            union = frozenset().union(*parts)
            for member in members:
                result[member] = union
