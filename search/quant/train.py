"""Train (or fine-tune from float weights) a network at a fixed bit configuration; export its QDQ ONNX.

The schedule and loop are ``hwnas train``'s (``search.train.train_model`` with a
``TrainConfig``: SGD + Nesterov momentum, one cosine cycle per run, per step). Writes into ``out``:

* ``<stem>.pt`` — the quantized network's state dict (float weights, PACT clips);
* ``<stem>.onnx`` — the network with its 8-bit parts as QuantizeLinear/DequantizeLinear;
* ``<stem>.train.json`` — accuracy (PyTorch and, for the exported model, ONNX Runtime), size,
  BOPs, the bit configuration, the per-epoch log and the settings.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search.data import dataset_info, dataset_len, iterate_batches, load_dataset
from search.hooks import ProgressFactory, no_progress
from search.quant.cost import config_figures
from search.quant.network import BitsConfig, load_float_into_quant
from search.quant.searcher import load_float_weights
from search.rundir import RunDir
from search.train import TrainConfig, TrainError, train_model


@dataclass
class QuantTrainConfig(TrainConfig):
    """``hwnas train``'s settings plus a float start and what to do after training."""

    init: str | None = None  # float weights (fp32 run, or a search's supernet_float.pt) to fine-tune from
    export_onnx: bool = True
    onnx_accuracy: bool = True  # evaluate the exported model with ONNX Runtime too
    calibration_batches: int = 4  # batches that set the int8 output ranges of the export


@dataclass
class QuantTrainResult:
    weights: Path
    report: Path
    accuracy: float
    size_kb: float
    bops_g: float
    onnx: Path | None = None
    onnx_accuracy: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def onnx_accuracy(path: str | Path, ds: Any, batch_size: int = 256, threads: int | None = None) -> float:
    """Top-1 accuracy of an exported model run by ONNX Runtime (the int8 kernels, for QDQ models)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    correct = total = 0
    for x, y in iterate_batches(ds, torch.arange(len(ds)), batch_size, shuffle=False):
        out = sess.run(None, {name: x.numpy().astype(np.float32)})[0]
        correct += int((out.argmax(1) == y.numpy()).sum())
        total += int(y.shape[0])
    return correct / max(total, 1)


def train_quant(
    bits: BitsConfig,
    config: QuantTrainConfig,
    out_dir: str | Path = ".",
    stem: str = "model",
    progress: ProgressFactory = no_progress,
) -> QuantTrainResult:
    """Build ``bits``'s network, start from ``config.init`` if given, train, export, report.

    ``progress`` shows the epochs while ``config.progress`` is on (``search.hooks``).
    """
    from search.quant.export import export_onnx

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    train_set = load_dataset(config.data, "train", subset=config.subset, image_size=config.image_size, seed=config.seed)
    val_set = load_dataset(config.data, "test", subset=config.val_subset, image_size=config.image_size, seed=config.seed)
    info = dataset_info(train_set)
    space = bits.space
    if tuple(info.input_shape) != tuple(space.input_shape) or info.num_classes != space.classes:
        raise TrainError(
            f"the configuration's network takes {'x'.join(map(str, space.input_shape))} input and "
            f"{space.classes} classes; data set {info.name!r} has "
            f"{'x'.join(map(str, info.input_shape))} and {info.num_classes}"
        )
    torch.manual_seed(config.seed)
    model = bits.build()
    if config.init:
        try:
            load_float_into_quant(model, load_float_weights(config.init), space)
        except ValueError as exc:
            raise TrainError(f"--init {config.init}: {exc}") from None
    t0 = time.perf_counter()
    with progress(enabled=config.progress) as bar:
        history = train_model(model, train_set, val_set, config, bar, label=stem)
    seconds = time.perf_counter() - t0
    model = model.cpu().eval()
    out = Path(out_dir)
    rd = RunDir(out)
    rd.mkdir()
    weights = out / f"{stem}.pt"
    if rd.main:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    onnx_path: Path | None = None
    onnx_acc: float | None = None
    if config.export_onnx and rd.main:
        g = torch.Generator().manual_seed(config.seed)
        calib_index = torch.randperm(dataset_len(train_set), generator=g)[: config.calibration_batches * config.batch_size]
        calib = [x for x, _ in iterate_batches(train_set, calib_index, config.batch_size, shuffle=False)]
        onnx_path = export_onnx(model, (1, *space.input_shape), out / f"{stem}.onnx", calibration=calib)
        if config.onnx_accuracy:
            onnx_acc = onnx_accuracy(onnx_path, val_set, threads=config.num_threads)
    figures = config_figures(space, bits.bits)
    report = out / f"{stem}.train.json"
    acc = history[-1]["val_acc"]
    rd.write_json(
        report,
        {
            "bits": bits.to_json(),
            "id": bits.id,
            "accuracy": acc,
            "onnx_accuracy": onnx_acc,
            **figures,
            "test_images": dataset_len(val_set),
            "train_images": dataset_len(train_set),
            "weights": weights.name,
            "onnx": onnx_path.name if onnx_path else None,
            "seconds": seconds,
            "history": history,
            "config": dataclasses.asdict(config),
        },
    )
    return QuantTrainResult(
        weights=weights,
        report=report,
        accuracy=acc,
        size_kb=figures["size_kb"],
        bops_g=figures["bops_g"],
        onnx=onnx_path,
        onnx_accuracy=onnx_acc,
        history=history,
        seconds=seconds,
    )
