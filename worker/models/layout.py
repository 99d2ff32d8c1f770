"""Turn a family declaration and a built module into parameter-name sets, unfreezing groups and probe layers.

Every parameter lands in exactly one unit; a parameter no unit claims is a gap in the family's declaration
and fails the build, so a new architecture cannot silently leave weights out of freezing or the probe.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from worker.models.built import ProbeLayer
from worker.models.families import Family


@dataclass(frozen=True)
class Layout:
    embed: frozenset[str]
    patch: frozenset[str]
    head: frozenset[str]
    unfreeze_groups: list[tuple[str, ...]]
    probe_layers: list[ProbeLayer]


@dataclass(frozen=True)
class _Unit:
    name: str
    kind: str
    paths: tuple[str, ...]
    group: int  # position from the input; units of one block share it


def _under(name: str, paths: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in paths)


def _units(family: Family, module: nn.Module) -> list[_Unit]:
    """Units in input-to-head order, the freeze-embed set first and the head last."""
    units = [_Unit("embed", "embed", family.embed, 0), _Unit("tokens", "other", family.tokens, 0)]
    blocks = family.blocks(module)
    for depth, block in enumerate(blocks, start=1):
        units += [_Unit(name, kind, paths, depth) for name, kind, paths in block]
    last = len(blocks) + 1
    units += [_Unit(name, kind, paths, last) for name, kind, paths in family.final]
    units.append(_Unit("head", "head", family.head, last + 1))
    return units


def _claim(order: list[_Unit], names: list[str]) -> dict[str, _Unit]:
    """Each parameter's unit: the first in `order` whose paths hold it."""
    owner: dict[str, _Unit] = {}
    for unit in order:
        for n in names:
            if n not in owner and _under(n, unit.paths):
                owner[n] = unit
    return owner


def _probe_layers(family: Family, units: list[_Unit], names: list[str]) -> list[ProbeLayer]:
    """The paper's Figure 2 layers: the patch or stem convolution alone is the embedding; the rest of the freeze
    set goes to the blocks that declare it (ConvNeXt's and BiT's stage 0) or to one `embed_norm` row (the norm
    after the embedding), which, like the tokens row, is neither the embedding nor a middle layer."""
    conv = _Unit("embed", "embed", family.embed_conv, 0)
    rest = _Unit("embed_norm", "norm", family.embed, 0)
    head = units[-1]
    owner = _claim([conv, head, *units[1:-1], rest], names)
    probe_units = [conv, rest, *units[1:-1], head]
    members = {u: tuple(n for n in names if owner[n] is u) for u in probe_units}
    if not members[conv]:
        raise ValueError(
            f"model family {family.name!r}: no parameter under its embedding convolution {list(family.embed_conv)}"
        )
    kept = [u for u in probe_units if members[u]]
    depth_of = {g: i for i, g in enumerate(sorted({u.group for u in kept}))}
    return [ProbeLayer(u.name, u.kind, depth_of[u.group], members[u]) for u in kept]


def layout(family: Family, module: nn.Module) -> Layout:
    names = [n for n, _ in module.named_parameters()]
    units = _units(family, module)
    # The embedding and the head claim first: their declarations are authoritative even where a block's
    # path also matches (ConvNeXt's stage 0 is both "a stage" and part of the embedding).
    owner = _claim([units[0], units[-1], *units[1:-1]], names)
    unclaimed = [n for n in names if n not in owner]
    if unclaimed:
        raise ValueError(f"model family {family.name!r} does not declare where parameters belong: {unclaimed[:8]}")

    members = {u: tuple(n for n in names if owner[n] is u) for u in units}
    for required in (units[0], units[-1]):
        if not members[required]:
            raise ValueError(
                f"model family {family.name!r}: no parameter under its {required.name} paths {list(required.paths)}"
            )
    patch = frozenset(n for n in members[units[0]] if _under(n, family.patch))
    if not patch:
        raise ValueError(f"model family {family.name!r}: patch paths {list(family.patch)} hold no embedding parameter")

    kept = [u for u in units if members[u]]
    depth_of = {g: i for i, g in enumerate(sorted({u.group for u in kept}))}  # dense depths after empty units drop
    groups: dict[int, list[str]] = {}
    for u in kept:
        groups.setdefault(depth_of[u.group], []).extend(members[u])
    order = {n: i for i, n in enumerate(names)}
    return Layout(
        embed=frozenset(members[units[0]]),
        patch=patch,
        head=frozenset(members[units[-1]]),
        unfreeze_groups=[tuple(sorted(groups[d], key=order.__getitem__)) for d in sorted(groups)],
        probe_layers=_probe_layers(family, units, names),
    )
