"""Super net mechanics: Gumbel masks, gradients to θ in both modes, one candidate per layer in hard mode."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from search.gumbel import hard_mask, soft_mask
from search.loss import fbnet_loss
from search.space import get_space
from search.supernet import SuperNet


def _costs(net: SuperNet) -> list[list[float]]:
    return [[1.0 + i for i in range(len(net.candidates(l)))] for l in range(net.num_layers)]


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_theta_receives_gradients(tiny_space: Path, mode: str) -> None:
    net = SuperNet(get_space(str(tiny_space)), mode=mode)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    ce = torch.nn.functional.cross_entropy(net(x), y)
    loss = fbnet_loss(ce, net.expected_cost(_costs(net), fixed=2.0) * 3.0)
    loss.backward()
    for layer, theta in enumerate(net.arch_parameters()):
        assert theta.grad is not None, f"layer {layer}: no gradient"
        assert torch.all(torch.isfinite(theta.grad))
        assert float(theta.grad.abs().sum()) > 0, f"layer {layer}: zero gradient"


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_theta_pass_gives_every_layer_a_cross_entropy_gradient(tiny_space: Path, mode: str) -> None:
    """Without any cost term, the θ step's CE reaches θ of every layer, not float noise (BN cancels a lone path)."""
    net = SuperNet(get_space(str(tiny_space)), mode=mode)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    with net.theta_pass():
        torch.nn.functional.cross_entropy(net(x), y).backward()
    assert all(float(t.grad.abs().max()) > 1e-4 for t in net.arch_parameters())


def test_a_straight_through_hard_step_gives_theta_next_to_nothing_through_batchnorm(tiny_space: Path) -> None:
    """Why hard mode's θ step runs soft: one path times a mask entry of value 1 feeds a BatchNorm that cancels it."""
    net = SuperNet(get_space(str(tiny_space)), mode="hard")
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    with net.theta_pass("straight-through"):
        torch.nn.functional.cross_entropy(net(x), y).backward()
    # Layer 1 changes the shape (stride 2): its output meets a BatchNorm first thing.
    assert float(net.arch_parameters()[1].grad.abs().max()) < 1e-5


def _count_calls(net: SuperNet) -> Counter:
    calls: Counter = Counter()
    for layer, mixed in enumerate(net.mixed):
        for i, op in enumerate(mixed.ops):
            op.register_forward_hook(lambda *_a, key=(layer, i): calls.update([key]))
    return calls


def test_hard_mode_runs_exactly_one_candidate_per_layer_per_step(tiny_space: Path) -> None:
    net = SuperNet(get_space(str(tiny_space)), mode="hard")
    calls = _count_calls(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    seen: set = set()
    for _ in range(12):
        calls.clear()
        loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 1, 28, 28)), torch.randint(0, 10, (4,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        for layer in range(net.num_layers):
            per_layer = {i: n for (l, i), n in calls.items() if l == layer}
            assert sum(per_layer.values()) == 1, f"layer {layer} ran {per_layer}"
            assert list(per_layer) == [net.last_indices[layer]]
            seen.add((layer, net.last_indices[layer]))
    assert len(seen) > net.num_layers  # the sampled candidate changes from step to step


def test_soft_mode_runs_every_candidate(tiny_space: Path) -> None:
    net = SuperNet(get_space(str(tiny_space)), mode="soft")
    calls = _count_calls(net)
    net(torch.randn(2, 1, 28, 28))
    assert sorted(calls) == [(l, i) for l in range(net.num_layers) for i in range(3)]
    assert set(calls.values()) == {1}


def test_hard_mask_is_one_hot_and_samples_softmax_theta() -> None:
    torch.manual_seed(0)
    theta = torch.tensor([1.0, 0.0, -1.0], requires_grad=True)
    counts = torch.zeros(3)
    for _ in range(4000):
        mask, index = hard_mask(theta, tau=0.7)
        assert torch.allclose(mask.detach(), torch.nn.functional.one_hot(torch.tensor(index), 3).float())
        counts[index] += 1
    expected = torch.softmax(theta.detach(), 0)
    assert torch.allclose(counts / 4000, expected, atol=0.03)  # argmax(θ + g) ~ softmax(θ), whatever τ


def test_soft_mask_sharpens_as_temperature_falls() -> None:
    torch.manual_seed(1)
    theta = torch.tensor([0.5, 0.0, 0.0])
    noise = -torch.log(-torch.log(torch.rand(3)))
    hot, cold = soft_mask(theta, 5.0, noise), soft_mask(theta, 0.05, noise)
    assert float(hot.max()) < 0.5 < float(cold.max())
    assert torch.allclose(hot.sum(), torch.tensor(1.0)) and torch.allclose(cold.sum(), torch.tensor(1.0))


def test_eval_mode_is_deterministic_and_fixed_choices_run_one_path(tiny_space: Path) -> None:
    net = SuperNet(get_space(str(tiny_space)), mode="hard").eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(net(x), net(x))
    assert net.last_indices == [int(torch.argmax(t)) for t in net.arch_parameters()]
    with net.fixed_choices(["skip", "ir_k3_e3", "skip"]):
        net(x)
        assert net.last_indices == [2, 1, 2]
    with pytest.raises(ValueError, match="not a candidate"):
        with net.fixed_choices(["skip", "maxpool_k3", "skip"]):
            pass


def test_expected_cost_uses_the_masks_of_the_last_forward(tiny_space: Path) -> None:
    net = SuperNet(get_space(str(tiny_space)), mode="hard")
    costs = _costs(net)
    # Before any forward: softmax(θ) = uniform → mean cost 2 per layer.
    assert float(net.expected_cost(costs, fixed=1.0).detach()) == pytest.approx(1.0 + 2.0 * net.num_layers)
    net(torch.randn(2, 1, 28, 28))
    sampled = 1.0 + sum(1.0 + i for i in net.last_indices)
    assert float(net.expected_cost(costs, fixed=1.0).detach()) == pytest.approx(sampled, rel=1e-5)


def test_builtin_fmnist_space_builds_in_both_modes() -> None:
    space = get_space("fbnet-fmnist")
    net = SuperNet(space, mode="hard")
    assert net.num_layers == space.num_layers
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_bn_recalibration_is_for_one_path_and_is_undone(tiny_space: Path) -> None:
    from search.data import load_dataset
    from search.evaluate import recalibrated_bn

    net = SuperNet(get_space(str(tiny_space)), mode="hard")
    for _ in range(3):  # running statistics now mix random paths
        net(torch.randn(16, 1, 28, 28) * 3 + 1)
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    ds = load_dataset("fashion-mnist", "train", subset=64)
    bn = net.mixed[1].ops[1].pw[1]  # layer 1, ir_k3_e3: its first BatchNorm
    with net.fixed_choices(["skip", "ir_k3_e3", "skip"]), recalibrated_bn(net, ds, torch.arange(64), 32, torch.device("cpu")):
        inside = bn.running_mean.clone()
        # The statistics are those of this path on these images: recompute them by hand.
        x, _ = ds.batch(torch.arange(64))
        with torch.no_grad():
            h = net.mixed[0].ops[2](net.stem.eval()(x))  # stem (eval BN: no stat updates), layer 0 skip
            conv_out = net.mixed[1].ops[1].pw[0](h)
        net.stem.train()
        # (the stem ran with batch statistics of 32 images during calibration, here with their average)
        assert torch.allclose(inside, conv_out.mean(dim=(0, 2, 3)), atol=2e-3)
    after = {k: v for k, v in net.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.allclose(inside, before["mixed.1.ops.1.pw.1.running_mean"])
