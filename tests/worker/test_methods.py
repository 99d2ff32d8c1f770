"""Phases, freezing, LR schedules and gradual unfreezing of the catalog's methods."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from tests.worker.fake_built import batch, make_built, train_step
from worker import catalog
from worker.methods import (
    GradualUnfreezer,
    Phase,
    apply_trainable,
    build_optimizer,
    build_scheduler,
    frozen_param_count,
    plan_phases,
    trainable_param_count,
)

EMBED = {"patch.weight", "ln_pre.weight", "ln_pre.bias"}
HEAD = {"head.weight", "head.bias"}


def _trainable(built) -> set[str]:
    return {n for n, p in built.module.named_parameters() if p.requires_grad}


def _all(built) -> set[str]:
    return {n for n, _ in built.module.named_parameters()}


GRADIENT_METHODS = [k for k in catalog.list_methods() if not catalog.get_method(k).is_linear_probe]


@pytest.mark.parametrize("key", GRADIENT_METHODS)
def test_phases_cover_the_epochs_once(key: str) -> None:
    phases = plan_phases(catalog.get_method(key), 8, 1e-3)
    assert phases[0].start_epoch == 0 and phases[-1].end_epoch == 8
    for a, b in zip(phases, phases[1:], strict=False):
        assert a.end_epoch == b.start_epoch
    assert phases[-1].name == "finetune"


def test_plain_methods_have_one_phase_at_the_grid_lr() -> None:
    assert plan_phases(catalog.get_method("sgd"), 5, 3e-4) == [Phase("finetune", 0, 5, 3e-4, "all", "cosine")]
    (p,) = plan_phases(catalog.get_method("sgd_freeze_embed"), 5, 3e-4)
    assert p.trainable == "all_but_embed"
    (p,) = plan_phases(catalog.get_method("sgd_freeze_patch_only"), 5, 3e-4)
    assert p.trainable == "all_but_patch"
    with pytest.raises(ValueError, match="'linear_probe' is a logistic regression on frozen features"):
        plan_phases(catalog.get_method("linear_probe"), 5, 3e-4)
    (p,) = plan_phases(catalog.get_method("gradual_unfreeze"), 5, 3e-4)
    assert (p.schedule, p.trainable) == ("gradual_unfreeze", "all_but_embed")


@pytest.mark.parametrize(
    ("key", "ft_trainable"), [("lp_ft_sgd", "all"), ("lp_ft_adamw", "all"), ("lp_ft_sgd_freeze_embed", "all_but_embed")]
)
def test_lp_ft_fine_tunes_for_every_epoch_at_a_tenth_of_the_grid_lr(key: str, ft_trainable: str) -> None:
    """The probe is a logistic regression fitted before the first epoch, so no epoch is spent on it (Appendix B)."""
    (ft,) = plan_phases(catalog.get_method(key), 3, 1e-3)  # Camelyon's 3 epochs, all of them fine-tuning
    assert (ft.name, ft.start_epoch, ft.end_epoch, ft.trainable, ft.schedule) == (
        "finetune",
        0,
        3,
        ft_trainable,
        "cosine",
    )
    assert ft.lr == pytest.approx(1e-4)


def test_plan_phases_rejects_bad_input() -> None:
    sgd = catalog.get_method("sgd")
    with pytest.raises(ValueError, match="epochs"):
        plan_phases(sgd, 0, 1e-3)
    with pytest.raises(ValueError, match="learning rate must be"):
        plan_phases(sgd, 3, -1.0)
    with pytest.raises(ValueError, match="learning rate must be"):
        plan_phases(sgd, 3, math.nan)
    with pytest.raises(ValueError, match="unknown freeze 'stem'; accepted: none, embed"):
        plan_phases(dataclasses.replace(sgd, freeze="stem"), 3, 1e-3)
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        plan_phases(dataclasses.replace(sgd, schedule="step"), 3, 1e-3)


@pytest.mark.parametrize(
    ("trainable", "frozen"),
    [("all", set()), ("all_but_embed", EMBED), ("all_but_patch", {"patch.weight"}), ("head", None)],
)
def test_apply_trainable_freezes_exactly_the_declared_layers(trainable: str, frozen: set[str] | None) -> None:
    built = make_built()
    apply_trainable(built, Phase("finetune", 0, 1, 1e-3, trainable, "cosine"))
    expected_frozen = (_all(built) - HEAD) if frozen is None else frozen
    assert _all(built) - _trainable(built) == expected_frozen
    x, y = batch()
    torch.nn.functional.cross_entropy(built.module(x), y).backward()
    for name, p in built.module.named_parameters():
        assert (p.grad is None) == (name in expected_frozen), name
    n_frozen = sum(p.numel() for n, p in built.module.named_parameters() if n in expected_frozen)
    assert frozen_param_count(built.module) == n_frozen
    assert trainable_param_count(built.module) == sum(p.numel() for p in built.module.parameters()) - n_frozen


def test_apply_trainable_unfreezes_again_for_the_next_phase() -> None:
    built = make_built()
    apply_trainable(built, Phase("finetune", 0, 1, 1e-3, "head", "cosine"))
    assert _trainable(built) == HEAD
    apply_trainable(built, Phase("finetune", 1, 2, 1e-3, "all", "cosine"))
    assert _trainable(built) == _all(built)


def test_freezing_needs_the_model_to_declare_the_layer() -> None:
    built = make_built(patch_only_param_names=frozenset(), family="vit")
    with pytest.raises(ValueError, match="declares no patch-conv parameters"):
        apply_trainable(built, Phase("finetune", 0, 1, 1e-3, "all_but_patch", "cosine"))
    built = make_built(embed_param_names=frozenset({"stem.conv.weight"}))
    with pytest.raises(ValueError, match="not parameters"):
        apply_trainable(built, Phase("finetune", 0, 1, 1e-3, "all_but_embed", "cosine"))
    with pytest.raises(ValueError, match="unknown trainable set 'backbone'"):
        apply_trainable(make_built(), Phase("finetune", 0, 1, 1e-3, "backbone", "cosine"))


def _sgd_scheduler(phase: Phase, steps_per_epoch: int, embed_lr_mult: float = 1.0):
    built = make_built()
    apply_trainable(built, phase)
    method = dataclasses.replace(catalog.get_method("sgd"), embed_lr_mult=embed_lr_mult)
    opt = build_optimizer(built, method, phase)
    return built, opt, build_scheduler(opt, phase, steps_per_epoch)


def test_cosine_runs_from_the_base_lr_to_zero_per_step_with_no_warmup() -> None:
    phase = Phase("finetune", 0, 2, 0.1, "all", "cosine")
    _, opt, sched = _sgd_scheduler(phase, steps_per_epoch=5, embed_lr_mult=0.2)
    lrs = {g["name"]: [] for g in opt.param_groups}
    for _ in range(11):
        for g in opt.param_groups:
            lrs[g["name"]].append(g["lr"])
        sched.step()
    main, embed = lrs["main"], lrs["embed"]
    assert main[0] == pytest.approx(0.1)
    assert main[5] == pytest.approx(0.05)  # half way: cos(pi/2) = 0
    assert main[10] == pytest.approx(0.0, abs=1e-12)
    assert main[1] == pytest.approx(0.05 * (1 + math.cos(math.pi / 10)))
    assert all(a > b for a, b in zip(main, main[1:], strict=False))
    assert embed == pytest.approx([0.2 * v for v in main])


def test_gradual_unfreeze_lr_is_constant_within_an_epoch_and_follows_exp_373() -> None:
    phase = Phase("finetune", 0, 4, 1e-3, "all_but_embed", "gradual_unfreeze")
    _, opt, sched = _sgd_scheduler(phase, steps_per_epoch=3)
    for epoch in range(4):
        expected = 1e-3 * math.exp(3.73 * (1 - epoch / 3))
        for _ in range(3):
            assert opt.param_groups[0]["lr"] == pytest.approx(expected)
            sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # the last epoch ends at the base LR
    _, opt, _ = _sgd_scheduler(Phase("finetune", 0, 1, 1e-3, "all_but_embed", "gradual_unfreeze"), 3)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # a one-epoch phase runs at the base LR


@pytest.mark.parametrize("schedule", ["cosine", "gradual_unfreeze"])
def test_scheduler_state_round_trip_resumes_the_same_lrs(schedule: str) -> None:
    phase = Phase("finetune", 0, 3, 0.01, "all_but_embed", schedule)
    _, opt, sched = _sgd_scheduler(phase, steps_per_epoch=4, embed_lr_mult=0.2)
    for _ in range(5):
        sched.step()
    saved = sched.state_dict()
    _, opt2, sched2 = _sgd_scheduler(phase, steps_per_epoch=4, embed_lr_mult=0.2)
    assert sched2.get_last_lr() != sched.get_last_lr()
    sched2.load_state_dict(saved)
    for _ in range(4):
        assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())
        sched.step()
        sched2.step()
    with pytest.raises(ValueError, match="steps_per_epoch=4, but this phase has steps_per_epoch=6"):
        _sgd_scheduler(phase, steps_per_epoch=6)[2].load_state_dict(saved)


def test_build_scheduler_rejects_bad_input() -> None:
    phase = Phase("finetune", 0, 2, 0.1, "all", "cosine")
    _, opt, _ = _sgd_scheduler(phase, 1)
    with pytest.raises(ValueError, match="steps_per_epoch must be an integer >= 1"):
        build_scheduler(opt, phase, 0)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        build_scheduler(opt, dataclasses.replace(phase, schedule="linear"), 2)
    plain = torch.optim.SGD(make_built().module.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="base_lr"):
        build_scheduler(plain, phase, 2)


def test_gradual_unfreezer_opens_from_the_head_down_and_never_the_embedding() -> None:
    built = make_built()
    phase = plan_phases(catalog.get_method("gradual_unfreeze"), 5, 1e-3)[0]
    apply_trainable(built, phase)
    unfreezer = GradualUnfreezer(built, phase)
    seen = []
    for t in range(5):
        unfreezer.on_epoch_start(t)
        seen.append(_trainable(built))
    blocks0, blocks2 = {"blocks.0.weight", "blocks.0.bias"}, {"blocks.2.weight", "blocks.2.bias"}
    # 4 groups once the embedding is left out (pos, block 0, block 2, head): 1 + t*3//4 open at epoch t
    assert seen == [HEAD, HEAD, HEAD | blocks2, HEAD | blocks2 | blocks0, HEAD | blocks2 | blocks0 | {"pos"}]
    assert seen[-1] == _all(built) - EMBED
    with pytest.raises(ValueError, match="epoch_in_phase must be in 0..4"):
        unfreezer.on_epoch_start(5)


def test_gradual_unfreezer_with_one_epoch_trains_all_but_the_embedding() -> None:
    built = make_built()
    phase = plan_phases(catalog.get_method("gradual_unfreeze"), 1, 1e-3)[0]
    GradualUnfreezer(built, phase).on_epoch_start(0)
    assert _trainable(built) == _all(built) - EMBED


def test_gradual_unfreezer_rejects_groups_that_miss_parameters() -> None:
    built = make_built(unfreeze_groups=[("blocks.0.weight",), ("head.weight", "head.bias")])
    phase = plan_phases(catalog.get_method("gradual_unfreeze"), 3, 1e-3)[0]
    with pytest.raises(ValueError, match="leave out parameters"):
        GradualUnfreezer(built, phase)


def test_gradual_unfreezing_trains_only_the_open_groups() -> None:
    built = make_built()
    phase = plan_phases(catalog.get_method("gradual_unfreeze"), 3, 1e-3)[0]
    apply_trainable(built, phase)
    unfreezer = GradualUnfreezer(built, phase)
    opt = build_optimizer(built, catalog.get_method("gradual_unfreeze"), phase)
    build_scheduler(opt, phase, 1)
    before = {n: p.detach().clone() for n, p in built.module.named_parameters()}
    unfreezer.on_epoch_start(0)
    train_step(built, opt)
    changed = {n for n, p in built.module.named_parameters() if not torch.equal(p, before[n])}
    assert changed == HEAD
    unfreezer.on_epoch_start(2)
    train_step(built, opt, seed=2)
    changed = {n for n, p in built.module.named_parameters() if not torch.equal(p, before[n])}
    assert changed == _all(built) - EMBED


def test_methods_run_on_the_real_tiny_vit_when_present() -> None:
    models = pytest.importorskip("worker.models")
    built = models.create_model("tiny_vit", 3, pretrained=False)
    for key in GRADIENT_METHODS:
        method = catalog.get_method(key)
        if not method.applies_to(built.family):
            continue
        for phase in plan_phases(method, 3, method.lr_grid[2]):
            apply_trainable(built, phase)
            if phase.schedule == "gradual_unfreeze":
                GradualUnfreezer(built, phase).on_epoch_start(phase.epochs - 1)
            opt = build_optimizer(built, method, phase)
            build_scheduler(opt, phase, 2)
            assert trainable_param_count(built.module) > 0, key
