"""Checkpoints and resume: what a checkpoint holds, and whether a configuration may continue it.

A resumed search must be the search that was started: the options that shape the run (the space, the
data, the split, the losses and schedules) must match the checkpoint's, or the result would mix two
searches. The keys of the saved state are read by checkpoints already on disk: renaming one breaks
their resume.
"""

from __future__ import annotations

from typing import Any

from search.search_config import SearchConfigError, flat_options
from search.search_setup import SearchSetup

# Options (flat names) that must match between a checkpoint and the config that resumes it.
_RESUME_FIELDS = (
    "space",
    "data",
    "cost",
    "mode",
    "batch_size",
    "w_split",
    "subset",
    "seed",
    "loss",
    "alpha",
    "beta",
    "lam",
    "target",
    "tau0",
    "tau_decay",
    "w_lr",
    "theta_lr",
    "image_size",
    "tau_end",
    "tau_schedule",
    "theta_estimator",
    "theta_decide",
    "theta_travel",
    "weights",
    "paths",
    "budget",
)
# What a checkpoint written before an option existed ran with.
BEFORE_OPTION = {"weights": "separate", "paths": "theta", "budget": "penalty"}


def checkpoint_state(setup: SearchSetup, epoch: int, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint after ``epoch`` completed epochs: enough to continue the search bit for bit."""
    return {
        "epoch": epoch,  # completed epochs
        "model": setup.model.state_dict(),
        "w_optimizer": setup.w_optimizer.state_dict(),
        "theta_optimizer": setup.theta_optimizer.state_dict(),
        "history": history,
        "config": setup.config.to_dict(),
        "reference": setup.reference,
    }


def restore_checkpoint(
    setup: SearchSetup, state: dict[str, Any], more_fields: tuple[str, ...] = ()
) -> tuple[int, list[dict[str, Any]]]:
    """Load a checkpoint into ``setup``, if it was made with the same ``_RESUME_FIELDS`` (and ``more_fields``)."""
    saved, now = flat_options(state["config"]), setup.config.flat()  # checkpoints from before the split are flat
    saved = {**BEFORE_OPTION, **saved}
    diff = [k for k in (*_RESUME_FIELDS, *more_fields) if saved.get(k) != now[k]]
    if diff:
        raise SearchConfigError(
            "cannot resume: the checkpoint was made with different "
            + ", ".join(f"{k} ({saved.get(k)!r} != {now[k]!r})" for k in diff)
        )
    setup.model.load_state_dict(state["model"])
    setup.w_optimizer.load_state_dict(state["w_optimizer"])
    setup.theta_optimizer.load_state_dict(state["theta_optimizer"])
    setup.reference = state.get("reference", setup.reference)
    return int(state["epoch"]), list(state["history"])
