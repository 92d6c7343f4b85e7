"""The stochastic super net: every searchable layer holds all its candidates and logits θ_l.

* ``soft`` (FBNet): mask ``m_l = GumbelSoftmax(θ_l, τ)``, output ``Σ_i m_{l,i}·op_{l,i}(x)``; all
  candidates run.
* ``hard``: in the weight steps one candidate per layer is sampled (``argmax(θ + g)``) and only it
  runs (memory and time of about one child network). The θ steps run every candidate with the soft
  mask (``MixedNet.theta_pass``): a single path times a straight-through mask entry feeds a
  BatchNorm that cancels the scale, so it would give θ no accuracy gradient (``search/mixed.py``).

In ``eval()`` the net is deterministic: ``soft`` mixes with ``softmax(θ/τ)`` (no noise) and ``hard``
runs the argmax candidate of each layer. ``fixed_choices`` runs one given architecture.
The masks of the latest forward pass are kept, so ``expected_cost`` is the cost the loss sees
under the same masks that produced the logits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

import torch
from torch import nn

from search.gumbel import hard_mask, soft_mask
from search.mixed import MixedNet
from search.ops import build_op
from search.shared import SharedMixedOp

MODES: tuple[str, ...] = ("soft", "hard")
WEIGHTS: tuple[str, ...] = ("separate", "shared")  # a weight set per candidate (FBNet's), or one per layer, sliced


class MixedOp(nn.Module):
    """The candidates of one searchable layer; the super net gives it the mask to apply."""

    def __init__(self, candidates: Sequence[str], modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.names = list(candidates)
        self.ops = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, index: int | None = None) -> torch.Tensor:
        if index is not None:
            # One candidate runs. Times the straight-through mask entry (1.0 in value) so that the
            # "straight-through" θ estimator can be measured against the default soft θ pass.
            return mask[index] * self.ops[index](x)
        out = mask[0] * self.ops[0](x)
        for i in range(1, len(self.ops)):
            # out + m_i·op_i(x) in one fused kernel: one temporary less per candidate.
            out = torch.addcmul(out, mask[i], self.ops[i](x))
        return out


class SuperNet(MixedNet, nn.Module):
    """FBNet super net of a ``SearchSpace``: stem → mixed layers → head, with θ per layer."""

    def __init__(self, space, mode: str = "soft", temperature: float = 5.0, weights: str = "separate") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
        self.weights = weights
        self.space = space
        self.mode = mode
        self.temperature = float(temperature)
        self.layers_info = list(space.layers())
        fixed = list(space.fixed_specs())
        # fixed_specs(): the stem first, then the head parts (head conv, pool + classifier).
        self.stem = build_op(fixed[0])
        if weights == "shared":  # one weight set per layer, sliced by its candidates (search/shared.py)
            self.mixed = nn.ModuleList(
                SharedMixedOp(layer.candidates, [layer.spec(c) for c in layer.candidates]) for layer in self.layers_info
            )
        else:
            self.mixed = nn.ModuleList(
                MixedOp(layer.candidates, [build_op(layer.spec(c)) for c in layer.candidates]) for layer in self.layers_info
            )
        self.head = nn.Sequential(*(build_op(s) for s in fixed[1:]))
        # Uniform start (AFB sets every θ to 1/9; any constant gives the same softmax).
        self.theta = nn.ParameterList(nn.Parameter(torch.zeros(len(layer.candidates))) for layer in self.layers_info)
        self.last_masks: list[torch.Tensor] | None = None
        self.last_indices: list[int] | None = None
        self._fixed: list[int] | None = None
        # Hard mode's training steps: a path drawn from θ (FBNet), or uniformly whatever θ is (--paths uniform).
        self.uniform_paths = False

    # ------------------------------------------------------------------ parameters
    def arch_parameters(self) -> list[nn.Parameter]:
        """θ: one logit vector per searchable layer."""
        return list(self.theta)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not θ (convolutions, BatchNorm, classifier)."""
        ids = {id(p) for p in self.theta}
        return [p for p in self.parameters() if id(p) not in ids]

    def mixed_ops(self) -> list[MixedOp | SharedMixedOp]:
        """The searchable layers (``self.mixed``, whose items nn.ModuleList types as plain modules)."""
        return cast("list[MixedOp | SharedMixedOp]", list(self.mixed))

    def candidates(self, layer: int) -> list[str]:
        return self.mixed_ops()[layer].names

    def argmax_choices(self) -> list[str]:
        """The most likely candidate of every layer."""
        return [op.names[int(torch.argmax(t.detach()))] for op, t in zip(self.mixed_ops(), self.theta)]

    # ------------------------------------------------------------------ masks
    def _masks(self) -> tuple[list[torch.Tensor], list[int] | None]:
        if self._fixed is not None:
            masks = [
                nn.functional.one_hot(torch.tensor(i), len(t)).to(t.dtype).to(t.device) for i, t in zip(self._fixed, self.theta)
            ]
            return masks, list(self._fixed)
        if not self.training:
            if self.mode == "soft":
                return [torch.softmax(t / self.temperature, dim=-1) for t in self.theta], None
            idx = [int(torch.argmax(t.detach())) for t in self.theta]
            return [nn.functional.one_hot(torch.tensor(i), len(t)).to(t) for i, t in zip(idx, self.theta)], idx
        if self.mode == "soft":
            return [soft_mask(t, self.temperature) for t in self.theta], None
        if self.uniform_paths:
            idx = [int(torch.randint(len(t), ())) for t in self.theta]
            return [nn.functional.one_hot(torch.tensor(i), len(t)).to(t) for i, t in zip(idx, self.theta)], idx
        pairs = [hard_mask(t, self.temperature) for t in self.theta]
        return [m for m, _ in pairs], [i for _, i in pairs]

    @contextmanager
    def fixed_choices(self, choices: Sequence[str]) -> Iterator[None]:
        """Run the single architecture ``choices`` (one candidate name per layer) inside the super net."""
        if len(choices) != self.num_layers:
            raise ValueError(f"{len(choices)} choices for {self.num_layers} searchable layers")
        index = []
        for layer, (op, name) in enumerate(zip(self.mixed_ops(), choices)):
            if name not in op.names:
                raise ValueError(f"layer {layer}: {name!r} is not a candidate ({', '.join(op.names)})")
            index.append(op.names.index(name))
        previous, self._fixed = self._fixed, index
        try:
            yield
        finally:
            self._fixed = previous

    # ------------------------------------------------------------------ children
    def child(self, choices: Sequence[str]) -> nn.Module:
        """The plain network of ``choices`` (``search.arch.build_network``) carrying the super net's weights for it:
        evaluated or fine-tuned without retraining, exported like any trained network."""
        from search.arch import build_network

        with self.fixed_choices(choices):
            index = list(self._fixed or [])
        net = build_network(self.space, list(choices))
        state = {f"stem.{k}": v for k, v in self.stem.state_dict().items()}
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        for layer, (op, i) in enumerate(zip(self.mixed_ops(), index)):
            part = op.export_state(i) if isinstance(op, SharedMixedOp) else op.ops[i].state_dict()
            state.update({f"layers.{layer}.{k}": v for k, v in part.items()})
        net.load_state_dict(state)
        return net.train(self.training)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks, indices = self._masks()
        self.last_masks, self.last_indices = masks, indices
        x = self.stem(x)
        for layer, op in enumerate(self.mixed):
            x = op(x, masks[layer], None if indices is None else indices[layer])
        return self.head(x).flatten(1)
