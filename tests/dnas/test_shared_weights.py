"""Weights shared across a layer's candidates: slices, grouped blocks, projections, and children exported whole."""

from __future__ import annotations

import pytest
import torch

from search.arch import build_network
from search.ops import build_op
from search.shared import SharedMixedOp, SharingError
from search.space import get_space
from search.supernet import SuperNet

SPACE = get_space("fbnet-fmnist")


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so a wrong slice shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def _layer(index: int) -> tuple[SharedMixedOp, list]:
    layer = SPACE.layers()[index]
    specs = [layer.spec(c) for c in layer.candidates]
    op = SharedMixedOp(layer.candidates, specs)
    _randomise_bn(op, index)
    return op.eval(), specs


def test_a_k3_candidate_is_a_standalone_k3_layer_carrying_the_centre_of_the_k5_kernel() -> None:
    op, specs = _layer(1)
    names = op.names
    k3, k5 = names.index("ir_k3_e6"), names.index("ir_k5_e6")
    plain = build_op(specs[k3]).eval()
    state = op.export_state(k3)
    assert torch.equal(state["dw.0.weight"], op.dw.detach()[:, :, 1:4, 1:4])  # the centre of the 5×5 kernel
    assert torch.equal(op.export_state(k5)["dw.0.weight"], op.dw.detach())
    plain.load_state_dict(state)
    x = torch.randn(2, *specs[k3].shape[1:])
    with torch.no_grad():
        assert torch.allclose(plain(x), op.run(x, k3), atol=1e-5)


@pytest.mark.parametrize("layer", range(SPACE.num_layers))
def test_every_candidate_of_every_layer_equals_its_plain_module(layer: int) -> None:
    """Expansion prefixes, grouped block diagonals, shared projections of the channel/stride-changing layers."""
    op, specs = _layer(layer)
    x = torch.randn(2, *specs[0].shape[1:])
    for i, spec in enumerate(specs):
        plain = build_op(spec).eval()
        plain.load_state_dict(op.export_state(i))  # strict: every key of the plain module, nothing else
        with torch.no_grad():
            assert torch.allclose(plain(x), op.run(x, i), atol=1e-5), (layer, op.names[i])


def test_candidates_share_one_weight_set() -> None:
    op, _ = _layer(1)
    n_shared = sum(p.numel() for p in op.parameters())
    separate = sum(p.numel() for s in op.specs for p in build_op(s).parameters())
    assert n_shared < separate / 3
    e1, e6 = op.names.index("ir_k3_e1"), op.names.index("ir_k3_e6")
    c = op.in_ch
    assert torch.equal(op.export_state(e1)["pw.0.weight"], op.export_state(e6)["pw.0.weight"][:c])
    g2 = op.names.index("ir_k3_e1_g2")
    w = op.export_state(g2)["pw.0.weight"]
    assert w.shape[1] == c // 2
    assert torch.equal(w[c // 2 :], op.pw.detach()[c // 2 : c, c // 2 :])  # group 2 sees the second input block


def test_a_block_that_cannot_share_is_refused() -> None:
    from hwnas.opkey import OpSpec

    with pytest.raises(SharingError, match="mb_k3"):
        SharedMixedOp(["mb_k3_m32"], [OpSpec.parse("mb_k3_s1_o16_m32@1x16x8x8")])


def test_an_exported_child_computes_what_the_super_net_computes_on_its_path() -> None:
    torch.manual_seed(0)
    net = SuperNet(SPACE, mode="hard", weights="shared")
    x = torch.randn(8, *SPACE.input_shape)
    net.train()
    for _ in range(3):  # a few steps of BN statistics under random paths
        net(x)
    net.eval()
    choices = ["ir_k5_e1_g2", "skip", "ir_k3_e3", "maxpool_k3", "ir_k5_e6", "avgpool_k3", "skip", "ir_k3_e1", "ir_k5_e3"]
    with torch.no_grad(), net.fixed_choices(choices):
        inside = net(x)
    child = net.child(choices).eval()
    assert type(child) is type(build_network(SPACE, choices))
    with torch.no_grad():
        assert torch.allclose(child(x), inside, atol=1e-5)
    # The same holds for FBNet's separate weights.
    separate = SuperNet(SPACE, mode="hard").eval()
    with torch.no_grad(), separate.fixed_choices(choices):
        assert torch.allclose(separate.child(choices).eval()(x), separate(x), atol=1e-5)


def test_bn_recalibration_changes_a_childs_statistics_and_restores_the_super_nets() -> None:
    from search.data import DatasetInfo, InMemoryImages
    from search.evaluate import recalibrated_bn

    torch.manual_seed(0)
    net = SuperNet(SPACE, mode="hard", weights="shared")
    x = torch.randn(64, *SPACE.input_shape)
    net.train()
    for _ in range(3):
        net(x)
    before = net.mixed[1].pw_bn.running_mean.clone()
    choices = ["ir_k3_e1"] * SPACE.num_layers
    images = InMemoryImages(
        torch.randint(0, 256, (64, *SPACE.input_shape), dtype=torch.uint8),
        torch.zeros(64, dtype=torch.long),
        DatasetInfo("noise", tuple(SPACE.input_shape), tuple(map(str, range(10)))),
        [0.2],
        [0.3],
    )
    with net.fixed_choices(choices), recalibrated_bn(net, images, torch.arange(64), 32, torch.device("cpu")):
        c = net.mixed[1].in_ch
        inside = net.mixed[1].pw_bn.running_mean.clone()
        assert not torch.allclose(inside[:c], before[:c])  # the child's own statistics
        net.eval()
        with torch.no_grad():
            recal = net(x)
    net.eval()
    with torch.no_grad(), net.fixed_choices(choices):
        stale = net(x)
    assert torch.equal(net.mixed[1].pw_bn.running_mean, before)  # restored for the super net
    assert not torch.allclose(recal, stale)
