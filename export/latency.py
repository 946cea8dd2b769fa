"""ONNX Runtime CPU latency: the figure a deployment sees, not eager PyTorch's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stylecast.runtime.backends.onnxruntime import import_ort
from stylecast.runtime.timing import median_ms


def session(model: bytes | Path, threads: int = 1):  # noqa: ANN201 - an onnxruntime.InferenceSession
    ort = import_ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def session_latency_ms(sess, size: int, warmup: int = 2, repeats: int = 5) -> float:  # noqa: ANN001
    """Median wall time of one size x size image; the median shrugs off a busy neighbour's spikes."""
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32)}
    return median_ms(lambda: sess.run(None, feed), warmup, repeats)


def torch_model_latency_ms(model: torch.nn.Module, size: int, threads: int = 1, repeats: int = 5) -> float:
    """Export in memory (same exporter and simplifier as `stylecast export`) and time it."""
    from stylecast.export.to_onnx import simplify, trace_to_onnx

    proto = simplify(trace_to_onnx(model))
    return session_latency_ms(session(proto.SerializeToString(), threads), size, repeats=repeats)
