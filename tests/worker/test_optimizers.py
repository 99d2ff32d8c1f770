"""Optimizers of the catalog's methods: state memory, freezing, options, LARS/LAMB/SPD update rules."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from tests.worker.fake_built import batch, make_built, train_step
from worker import catalog
from worker.methods import (
    AdamSPD,
    GradualUnfreezer,
    Phase,
    apply_trainable,
    build_optimizer,
    build_scheduler,
    optimizer_state_bytes,
    plan_phases,
)

EMBED = {"patch.weight", "ln_pre.weight", "ln_pre.bias"}
HEAD = {"head.weight", "head.bias"}


def _setup(key: str, options: dict | None = None, epochs: int = 2, lr: float = 1e-3):
    built = make_built()
    method = catalog.get_method(key)
    phase = plan_phases(method, epochs, lr)[-1]
    apply_trainable(built, phase)
    return built, method, phase, build_optimizer(built, method, phase, options)


def _state_bytes_per_param(opt: torch.optim.Optimizer) -> float:
    """Optimizer-state bytes per optimised parameter, leaving out per-tensor 0-d step counters."""
    full = sum(v.nbytes for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor) and v.dim())
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    return full / n


@pytest.mark.parametrize(
    ("key", "per_param"), [("sgd", 4.0), ("sgd_nomom", 0.0), ("sgd_freeze_embed_nomom", 0.0), ("adamw", 8.0)]
)
def test_optimizer_state_bytes_per_trained_parameter(key: str, per_param: float) -> None:
    built, _, _, opt = _setup(key)
    assert optimizer_state_bytes(opt) == 0
    train_step(built, opt)
    assert _state_bytes_per_param(opt) == per_param
    scalars = sum(
        v.nbytes for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor) and not v.dim()
    )
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert optimizer_state_bytes(opt) == per_param * n + scalars


def test_adam_spd_keeps_one_pretrained_copy_except_for_the_head() -> None:
    built, _, _, opt = _setup("adam_spd")
    train_step(built, opt)
    names = {id(p): n for n, p in built.module.named_parameters()}
    for p, state in opt.state.items():
        assert ("theta0" in state) == (names[id(p)] not in HEAD), names[id(p)]
    n_all = sum(p.numel() for p in built.module.parameters())
    n_head = sum(p.numel() for n, p in built.module.named_parameters() if n in HEAD)
    assert optimizer_state_bytes(opt) == 12 * (n_all - n_head) + 8 * n_head


@pytest.mark.parametrize("key", ["sgd_freeze_embed", "adamw_freeze_embed", "sgd_freeze_patch_only"])
def test_frozen_parameters_get_no_grad_no_state_and_do_not_move(key: str) -> None:
    built, _, phase, opt = _setup(key)
    frozen = {n for n, p in built.module.named_parameters() if not p.requires_grad}
    assert frozen and frozen.isdisjoint(HEAD)
    optimised = {id(p) for g in opt.param_groups for p in g["params"]}
    before = {n: p.detach().clone() for n, p in built.module.named_parameters()}
    x, y = batch()
    torch.nn.functional.cross_entropy(built.module(x), y).backward()
    opt.step()
    for name, p in built.module.named_parameters():
        if name in frozen:
            assert p.grad is None and id(p) not in optimised and p not in opt.state, name
            assert torch.equal(p, before[name]), name
        else:
            assert not torch.equal(p, before[name]), name


def test_gradual_unfreeze_optimises_all_but_the_embedding_and_holds_state_only_for_open_groups() -> None:
    built, method, phase, _ = _setup("gradual_unfreeze", epochs=3)
    unfreezer = GradualUnfreezer(built, phase)
    unfreezer.on_epoch_start(0)
    opt = build_optimizer(built, method, phase)
    names = {id(p): n for n, p in built.module.named_parameters()}
    assert {names[id(p)] for g in opt.param_groups for p in g["params"]} == set(names.values()) - EMBED
    train_step(built, opt)
    assert {names[id(p)] for p in opt.state} == HEAD


def test_embedding_lr_multiplier_gets_its_own_group_after_the_main_one() -> None:
    built, _, phase, opt = _setup("sgd_embed_lr_0.2", lr=1e-2)
    assert [g["name"] for g in opt.param_groups] == ["main", "embed"]
    names = {id(p): n for n, p in built.module.named_parameters()}
    assert {names[id(p)] for p in opt.param_groups[1]["params"]} == EMBED
    assert opt.param_groups[0]["base_lr"] == pytest.approx(1e-2)
    assert opt.param_groups[1]["base_lr"] == pytest.approx(2e-3)
    assert opt.param_groups[1]["lr"] == pytest.approx(2e-3)


def test_options_override_the_catalog() -> None:
    _, _, _, opt = _setup("sgd", {"momentum": 0.5, "weight_decay": 1e-4})
    assert (opt.param_groups[0]["momentum"], opt.param_groups[0]["weight_decay"]) == (0.5, 1e-4)
    _, _, _, opt = _setup("adamw", {"betas": [0.8, 0.99]})
    assert opt.param_groups[0]["betas"] == (0.8, 0.99)
    assert opt.param_groups[0]["weight_decay"] == 0.01  # the catalog's value survives


@pytest.mark.parametrize(
    ("key", "options", "message"),
    [
        ("sgd", {"momentun": 0.9}, r"unknown option 'momentun' .* valid options: momentum, nesterov"),
        ("adamw", {"momentum": 0.9}, r"valid options: betas, eps, weight_decay"),
        ("adamw", {"betas": [0.9]}, r"'betas' must be two numbers"),
        ("sgd", {"momentum": "high"}, r"'momentum' must be a finite number"),
        ("sgd", {"momentum": 1.5}, r"'momentum' must be in \[0, 1\)"),
        ("sgd", {"weight_decay": -1.0}, r"'weight_decay' must be >= 0"),
        ("lars", {"trust_coefficient": 0.0}, r"'trust_coefficient' must be > 0"),
        ("adam_spd", {"spd_lambda": math.inf}, r"'spd_lambda' must be a finite number"),
    ],
)
def test_bad_options_name_what_is_wrong(key: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _setup(key, options)


def test_unknown_optimizer_names_the_valid_ones() -> None:
    method = dataclasses.replace(catalog.get_method("sgd"), optimizer="rmsprop")
    built = make_built()
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; accepted: sgd, adamw, lars, lamb, adam_spd"):
        build_optimizer(built, method, Phase("finetune", 0, 1, 1e-3, "all", "cosine"))


def test_an_optimizer_with_nothing_to_train_is_an_error() -> None:
    built = make_built()
    for p in built.module.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter is trainable"):
        build_optimizer(built, catalog.get_method("sgd"), Phase("finetune", 0, 1, 1e-3, "all", "cosine"))


@pytest.mark.parametrize("key", [k for k in catalog.list_methods() if not catalog.get_method(k).is_linear_probe])
def test_every_catalog_method_trains_and_resumes(key: str) -> None:
    """Each phase builds, steps and round-trips its optimizer state as the trial loop does on resume."""
    method = catalog.get_method(key)
    built = make_built()
    for phase in plan_phases(method, 4, method.lr_grid[3]):
        apply_trainable(built, phase)
        unfreezer = GradualUnfreezer(built, phase) if phase.schedule == "gradual_unfreeze" else None
        opt = build_optimizer(built, method, phase)
        sched = build_scheduler(opt, phase, 2)
        if unfreezer is not None:
            unfreezer.on_epoch_start(phase.epochs - 1)
        before = {n: p.detach().clone() for n, p in built.module.named_parameters()}
        for step in range(2):
            assert math.isfinite(train_step(built, opt, seed=step))
            sched.step()
        moved = {n for n, p in built.module.named_parameters() if not torch.equal(p, before[n])}
        assert moved == {n for n, p in built.module.named_parameters() if p.requires_grad}, key
        opt2 = build_optimizer(built, method, phase)
        opt2.load_state_dict(opt.state_dict())
        assert optimizer_state_bytes(opt2) == optimizer_state_bytes(opt)
        for p in opt.state:
            for name, value in opt.state[p].items():
                assert torch.equal(torch.as_tensor(opt2.state[p][name]), torch.as_tensor(value)), (key, name)


def _single_tensor_optimizer(key: str, options: dict, lr: float, values: torch.Tensor):
    """A catalog method's optimizer, built the project's way, over one free-standing tensor."""
    p = torch.nn.Parameter(values.clone())
    built = make_built()
    built.module = torch.nn.ParameterDict({"w": p})
    built.head_param_names = frozenset({"w"})
    method = dataclasses.replace(catalog.get_method(key), options=options)
    return p, build_optimizer(built, method, Phase("finetune", 0, 1, lr, "all", "cosine"))


W0 = torch.tensor([[0.5, -1.0, 2.0], [0.3, 0.1, -0.4]])
GRADS = [torch.tensor([[0.1, 0.2, -0.3], [0.05, -0.4, 0.2]]) * s for s in (1.0, 10.0, 0.5)]  # one step above norm 1


@pytest.mark.parametrize("wd", [0.01, 0.0])
def test_lars_matches_the_published_update(wd: float) -> None:
    """You et al. 2017: v <- m v + lr * eta |w| / (|g| + wd |w|) * (g + wd w); w <- w - v (constant LR)."""
    lr, m, eta, eps = 0.5, 0.9, 0.001, 1e-8
    options = {"momentum": m, "weight_decay": wd, "trust_coefficient": eta, "eps": eps}
    p, opt = _single_tensor_optimizer("lars", options, lr, W0)
    w, v = W0.clone(), torch.zeros_like(W0)
    for g in GRADS:
        trust = eta * w.norm() / (g.norm() + wd * w.norm() + eps)
        v = m * v + lr * trust * (g + wd * w)
        w = w - v
        p.grad = g.clone()
        opt.step()
        torch.testing.assert_close(p.detach(), w)


def test_lars_trains_with_a_unit_trust_coefficient_on_the_adaptive_grid() -> None:
    built, _, _, opt = _setup("lars", {"trust_coefficient": 1.0}, lr=catalog.get_method("lars").lr_grid[3])
    before = {n: p.detach().clone() for n, p in built.module.named_parameters()}
    train_step(built, opt)
    assert all(not torch.equal(p, before[n]) for n, p in built.module.named_parameters())


@pytest.mark.parametrize("key", ["lars", "lamb"])
def test_the_catalogs_layerwise_optimizers_move_each_tensor_by_the_lr_of_its_norm(key: str) -> None:
    """Trust 1.0 puts LARS on LAMB's scale, which the paper's shared AdamW grid assumes (bench/lars_trust.py)."""
    lr = catalog.get_method(key).lr_grid[-1]
    built, _, _, opt = _setup(key, lr=lr)
    before = {n: p.detach().clone() for n, p in built.module.named_parameters()}
    train_step(built, opt)
    moved = {  # a zero tensor (a fresh bias) has no norm to scale by: both move it by lr x its plain update
        n: ((p.detach() - before[n]).norm() / before[n].norm()).item()
        for n, p in built.module.named_parameters()
        if before[n].norm() > 0
    }
    assert len(moved) >= 4 and moved == pytest.approx(dict.fromkeys(moved, lr), rel=0.02)


def test_lars_adapts_even_without_weight_decay() -> None:
    """timm skips the trust ratio when weight decay is 0 unless told otherwise; the catalog's LARS has wd 0."""
    built, _, _, opt = _setup("lars", lr=1.0)
    p = built.module.head.weight
    w = p.detach().clone()
    x, y = batch()
    torch.nn.functional.cross_entropy(built.module(x), y).backward()
    g = p.grad.clone()
    opt.step()
    eta = catalog.get_method("lars").options["trust_coefficient"]
    expected = w - 1.0 * eta * w.norm() / (g.norm() + 1e-8) * g
    torch.testing.assert_close(p.detach(), expected)


@pytest.mark.parametrize("wd", [0.01, 0.0])
def test_lamb_matches_the_published_update(wd: float) -> None:
    """You et al. 2019, Algorithm 2: Adam direction r, then w <- w - lr * |w| / |r + wd w| * (r + wd w)."""
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-6
    p, opt = _single_tensor_optimizer("lamb", {"betas": [b1, b2], "eps": eps, "weight_decay": wd}, lr, W0)
    assert opt.defaults["max_grad_norm"] is None  # the paper clips nothing; timm's default clips at 1
    w, m, v = W0.clone(), torch.zeros_like(W0), torch.zeros_like(W0)
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        r = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        u = r + wd * w
        w = w - lr * w.norm() / u.norm() * u
        p.grad = g.clone()
        opt.step()
        torch.testing.assert_close(p.detach(), w)


def _spd_pair(spd_lambda: float, values: torch.Tensor, lr: float = 0.05):
    p = torch.nn.Parameter(values.clone())
    q = torch.nn.Parameter(values.clone())
    return p, AdamSPD([p], lr=lr, spd_lambda=spd_lambda), q, torch.optim.Adam([q], lr=lr, eps=1e-8)


def test_spd_is_plain_adam_when_the_gradient_does_not_point_back() -> None:
    """c = -<g, theta - theta0> >= 0 at every step: no projection, so exactly Adam's trajectory."""
    gen = torch.Generator().manual_seed(0)
    p, spd, q, adam = _spd_pair(1.0, torch.randn(4, 5, generator=gen))
    theta0 = p.detach().clone()
    for k in range(6):
        dev = p.detach() - theta0
        g = torch.randn(4, 5, generator=gen) if k == 0 else -dev * (1 + torch.rand(4, 5, generator=gen))
        assert -(g * dev).sum() >= 0
        p.grad, q.grad = g.clone(), g.clone()
        spd.step()
        adam.step()
        torch.testing.assert_close(p.detach(), q.detach())


def test_spd_lambda_zero_is_plain_adam() -> None:
    gen = torch.Generator().manual_seed(1)
    p, spd, q, adam = _spd_pair(0.0, torch.randn(6, generator=gen))
    for _ in range(5):
        g = torch.randn(6, generator=gen)
        p.grad, q.grad = g.clone(), g.clone()
        spd.step()
        adam.step()
    torch.testing.assert_close(p.detach(), q.detach())


def test_spd_with_lambda_one_never_lets_the_deviation_grow_when_it_projects() -> None:
    gen = torch.Generator().manual_seed(2)
    p = torch.nn.Parameter(torch.randn(8, generator=gen))
    spd = AdamSPD([p], lr=0.1, spd_lambda=1.0)
    theta0 = p.detach().clone()
    projected = 0
    for k in range(40):
        # a drift away from theta0, then noisy pulls back: Adam's momentum keeps pushing outwards for a while
        g = -torch.ones(8) if k < 5 else 0.3 * (p.detach() - theta0) + 0.5 * torch.randn(8, generator=gen)
        before = p.detach().clone()
        c = -(g * (before - theta0)).sum()
        q = torch.nn.Parameter(before.clone())  # the plain Adam candidate, from the same moments
        adam = AdamSPD([q], lr=0.1, spd_lambda=0.0)
        adam.state[q] = copy.deepcopy(spd.state[p])
        p.grad, q.grad = g.clone(), g.clone()
        spd.step()
        adam.step()
        if c < 0:
            assert (p.detach() - theta0).norm() <= (before - theta0).norm() * (1 + 1e-6), k
            projected += int((q.detach() - theta0).norm() > (before - theta0).norm())
        else:
            torch.testing.assert_close(p.detach(), q.detach())
    assert projected >= 3  # Adam alone would have grown the deviation on these steps: the projection was exercised


def test_spd_matches_a_hand_written_step_with_partial_lambda() -> None:
    lam, lr, b1, b2, eps = 0.5, 0.1, 0.9, 0.999, 1e-8
    theta0 = torch.tensor([1.0, -2.0, 0.5])
    p = torch.nn.Parameter(theta0.clone())
    opt = AdamSPD([p], lr=lr, betas=(b1, b2), eps=eps, spd_lambda=lam)
    theta, m, v = theta0.clone(), torch.zeros(3), torch.zeros(3)
    for t, g in enumerate([torch.tensor([-1.0, 0.5, -0.2]), torch.tensor([0.3, -0.1, 0.4])], start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        cand = theta - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        c = -(g * (theta - theta0)).sum()
        if c < 0:
            r = ((cand - theta0).norm() - (theta - theta0).norm()) / (cand - theta0).norm()
            cand = cand - lam * r.clamp(0, 1) * (cand - theta0)
        theta = cand
        p.grad = g.clone()
        opt.step()
        torch.testing.assert_close(p.detach(), theta)
    assert c < 0  # the second step is the projected one


def test_spd_keeps_its_pretrained_copy_across_a_resume() -> None:
    built, method, phase, opt = _setup("adam_spd")
    start = {n: p.detach().clone() for n, p in built.module.named_parameters()}
    for k in range(3):
        train_step(built, opt, seed=k)
    opt2 = build_optimizer(built, method, phase)  # built from the fine-tuned weights, as on resume
    opt2.load_state_dict(opt.state_dict())
    names = {id(p): n for n, p in built.module.named_parameters()}
    for p, state in opt2.state.items():
        if "theta0" in state:
            torch.testing.assert_close(state["theta0"], start[names[id(p)]])
    assert [g["spd"] for g in opt2.param_groups] == [True, False]


def test_adam_spd_rejects_bad_hyperparameters() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="betas"):
        AdamSPD([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="spd_lambda"):
        AdamSPD([p], spd_lambda=-1.0)
