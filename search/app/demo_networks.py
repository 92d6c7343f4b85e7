"""The networks `hwnas demo` trains and measures: the one the search found, uniformly random ones at its predicted
latency and the hand-made baseline, each with its prediction from the latency table."""

from __future__ import annotations

from typing import Any

from search.app.demo_model import BASELINE_CHOICE, SPACE, DemoConfig, NetworkResult


def baseline_choices(space: Any) -> list[str]:
    """The hand-made baseline's choices: every layer ``ir_k3_e6`` (MobileNetV2-like)."""
    return [BASELINE_CHOICE] * space.num_layers


def network(name: str, arch: Any, role: str, table: Any) -> NetworkResult:
    """``arch`` with its latency, MACs and parameters as the table predicts them; not yet trained or measured."""
    from search.cost import predict

    p = predict(arch, table)
    assert p.latency_ms is not None
    return NetworkResult(name=name, arch=arch, predicted_ms=p.latency_ms, mmacs=p.macs / 1e6, mparams=p.params / 1e6, role=role)


def compared_networks(
    config: DemoConfig, search: Any, space: Any, costs: Any, table: Any
) -> tuple[NetworkResult, list[NetworkResult], NetworkResult]:
    """The found network (``found.json``), the matched random networks and the baseline, not yet trained."""
    from search.arch import Architecture, make_architecture
    from search.random_search import matched_random
    from search.rundir import RunDir

    shipped = Architecture.load(RunDir(search.out).found)
    found = network(
        "found",
        make_architecture(
            SPACE,
            space,
            shipped.choices,
            name="found",
            meta={**shipped.meta, "source": "hwnas demo: " + str(shipped.meta.get("source", "found.json"))},
        ),
        "found",
        table,
    )
    drawn = (
        matched_random(
            costs,
            space,
            search.found_cost,
            config.matched,
            tol=config.match_tol,
            seed=config.seed,
            exclude={tuple(found.arch.choices)},
        )
        if config.matched > 0
        else []
    )
    matched = [
        network(
            f"random-{i + 1}",
            make_architecture(
                SPACE,
                space,
                choices,
                name=f"random-{i + 1}",
                meta={
                    "source": f"hwnas demo: uniformly random, predicted latency within ±{config.match_tol:.0%} of "
                    f"the found network's {search.found_cost:.4f} ms"
                },
            ),
            "matched",
            table,
        )
        for i, choices in enumerate(drawn)
    ]
    baseline = network(
        "baseline",
        make_architecture(
            SPACE,
            space,
            baseline_choices(space),
            name="baseline",
            meta={"source": f"hwnas demo: hand-made baseline, every layer {BASELINE_CHOICE} (MobileNetV2-like)"},
        ),
        "baseline",
        table,
    )
    return found, matched, baseline


__all__ = ["baseline_choices", "compared_networks", "network"]
