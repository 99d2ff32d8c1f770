"""Gradual unfreezing: train the head first, then open the model from the top down, one share per epoch.

The model lists its parameters in groups from the input upward (`unfreeze_groups`: embedding first, head
last). At epoch t of T the top 1 + floor(t (K - 1) / (T - 1)) of the K groups train, so the first epoch
trains the head only and the last trains every group; the embedding layer is never unfrozen.
"""

from __future__ import annotations

from worker.methods.phases import BuiltModelLike, Phase, trainable_names


def ever_trainable_names(built: BuiltModelLike, phase: Phase) -> frozenset[str]:
    """Parameters a phase trains at some point. A gradual-unfreezing phase never trains the embedding."""
    names = trainable_names(built, phase.trainable)
    if phase.schedule == "gradual_unfreeze":
        names = names - frozenset(built.embed_param_names)
    return names


class GradualUnfreezer:
    """Sets requires_grad at the start of every epoch of a gradual-unfreezing phase."""

    def __init__(self, built: BuiltModelLike, phase: Phase):
        if phase.epochs < 1:
            raise ValueError(f"phase {phase.name!r} has no epochs ({phase.start_epoch}..{phase.end_epoch})")
        self.built = built
        self.phase = phase
        allowed = ever_trainable_names(built, phase)
        listed = [n for group in built.unfreeze_groups for n in group]
        params = {n for n, _ in built.module.named_parameters()}
        unknown = sorted(set(listed) - params)
        if unknown:
            raise ValueError(f"model family {built.family!r}: unfreeze_groups name unknown parameters {unknown[:5]}")
        unlisted = sorted(allowed - set(listed))
        if unlisted:
            raise ValueError(f"model family {built.family!r}: unfreeze_groups leave out parameters {unlisted[:5]}")
        # groups from the input upward, restricted to what this phase may train; empty ones dropped
        self.groups: list[tuple[str, ...]] = [
            kept for kept in (tuple(n for n in group if n in allowed) for group in built.unfreeze_groups) if kept
        ]
        if not self.groups:
            raise ValueError(f"model family {built.family!r}: gradual unfreezing found no parameter to train")

    def groups_open(self, epoch_in_phase: int) -> int:
        """How many groups, counted from the top, train in this epoch of the phase."""
        total = self.phase.epochs
        if not 0 <= epoch_in_phase < total:
            raise ValueError(
                f"epoch_in_phase must be in 0..{total - 1} for phase {self.phase.name!r}, got {epoch_in_phase}"
            )
        k = len(self.groups)
        if total == 1:
            return k
        return 1 + (epoch_in_phase * (k - 1)) // (total - 1)

    def names_for_epoch(self, epoch_in_phase: int) -> frozenset[str]:
        n_open = self.groups_open(epoch_in_phase)
        return frozenset(n for group in self.groups[len(self.groups) - n_open :] for n in group)

    def on_epoch_start(self, epoch_in_phase: int) -> None:
        keep = self.names_for_epoch(epoch_in_phase)
        for name, p in self.built.module.named_parameters():
            p.requires_grad_(name in keep)
