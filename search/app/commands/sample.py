"""`hwnas sample DIR`: architectures sampled from a finished search's distribution, ranked by predicted cost."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from search.app.commands._errors import user_errors


def register(app: typer.Typer) -> None:
    @app.command("sample")
    def sample(
        out: Path = typer.Argument(..., metavar="DIR", help="The search folder (hwnas search --out DIR)."),
        k: int = typer.Option(
            6, "--k", "-k", min=1, help="How many architectures to draw from softmax(θ) (the argmax is added)."
        ),
        seed: int = typer.Option(0, "--seed"),
        val_subset: Optional[int] = typer.Option(
            2000, "--val-subset", min=1, help="Test images for the super-net accuracy of each sample."
        ),
        no_eval: bool = typer.Option(False, "--no-eval", help="Skip the super-net accuracy of the samples."),
        train_epochs: int = typer.Option(0, "--train-epochs", min=0, help="Also train every sample from scratch for N epochs."),
        train_subset: Optional[int] = typer.Option(None, "--train-subset", min=1, help="Training images for --train-epochs."),
        at_target: bool = typer.Option(
            False,
            "--at-target",
            help="A search with a target: the found network and K draws "
            "within the target's window; with --train-epochs, the best on held-out training "
            "images is written to DIR/picked.json.",
        ),
        holdout: Optional[int] = typer.Option(
            None,
            "--holdout",
            min=1,
            help="With --train-epochs: evaluate on N training "
            "images held out (default with --at-target: 1000) instead of the test split.",
        ),
        shortlist: Optional[int] = typer.Option(
            None,
            "--shortlist",
            min=1,
            help="With --train-epochs: train only the N samples of highest super-net accuracy (and, with "
            "--at-target, the found network): many candidates for the training of few. Worth it where the super net "
            "ranks networks (a shared-weights search; benchmarks/supernet_rank.py measures it).",
        ),
    ) -> None:
        """Sample K architectures plus the argmax from DIR's learned distribution; write them ranked by predicted cost.

        Each goes to DIR/samples/NN_<id>.json (an architecture document with predicted latency/MACs/params in
        its meta); DIR/samples/index.json lists them and DIR/plots/samples.png plots accuracy vs predicted cost.

        Examples: `hwnas sample runs/lat` · `hwnas sample runs/lat -k 10 --train-epochs 2` ·
        `hwnas sample runs/lat --at-target -k 4 --train-epochs 3` (ships DIR/picked.json) ·
        `hwnas sample runs/shared --at-target -k 20 --shortlist 3 --train-epochs 3` (trains 4 of 21)
        """
        from search.app.plots import plot_search
        from search.app.progress import EpochProgress
        from search.sample import sample_search

        with user_errors():
            samples = sample_search(
                out,
                k=k,
                seed=seed,
                evaluate=not no_eval,
                val_subset=val_subset,
                train_epochs=train_epochs,
                train_subset=train_subset,
                progress=EpochProgress,
                at_target=at_target,
                holdout=holdout,
                shortlist=shortlist,
            )
            plot_search(out)
        for s in samples:
            cost = {k: v for k, v in s.predicted.items() if k not in ("unit", "latency_ms", "mmacs", "mparams")}
            name, value = next(iter(cost.items()))
            acc = f"  super-net acc {s.supernet_acc:.4f}" if s.supernet_acc is not None else ""
            trained = f"  trained acc {s.trained_acc:.4f}" if s.trained_acc is not None else ""
            typer.echo(
                f"{s.path.name if s.path else s.id}  {name} {value:.4g} {s.predicted['unit']}  "
                f"{s.predicted['mmacs']:.3f} MMACs  {s.predicted['mparams']:.4f} Mparams{acc}{trained}"
                + ("  [argmax]" if s.is_argmax else "")
                + ("" if s.shortlisted else "  [not trained: outside the shortlist]")
            )
        if shortlist is not None:
            trained_n = sum(s.shortlisted for s in samples)
            typer.echo(f"trained {trained_n} of {len(samples)}: the shortlist by super-net accuracy")
        if at_target and train_epochs > 0:
            typer.echo(f"picked (best on held-out training images): {out / 'picked.json'}")
        trained_samples = [s for s in samples if s.trained_acc is not None]
        if trained_samples:
            from search.train import at_chance, chance_hint

            if all(at_chance(s.trained_acc or 0.0, s.classes) for s in trained_samples):
                best = max(s.trained_acc or 0.0 for s in trained_samples)
                typer.echo(
                    "warning: every trained sample is at chance level, so what was picked means nothing; best "
                    + chance_hint(best, trained_samples[0].classes, "longer (--train-epochs) or on more images (--train-subset)"),
                    err=True,
                )
