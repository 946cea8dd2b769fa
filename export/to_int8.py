"""fp32 ONNX -> explicit symmetric int8 Q/DQ ONNX (the layout TensorRT's strongly typed builder reads).

ONNX Runtime's static quantizer writes the Q/DQ pairs: per-channel symmetric int8 weights,
per-tensor symmetric int8 activations, scales calibrated on real photos at the deployment size.
A quantized conv has Q/DQ on its input and its output, so ONNX Runtime fuses it into an int8
QLinearConv and TensorRT into an int8-in, int8-out kernel; InstanceNormalization, ReLU and the
residual adds stay fp32 between them, and so does a multi-style net's style path (the MatMul of its style weights
and the Mul/Add that apply them after each InstanceNorm): only convs are quantized.

Not every conv is quantized. Measured on the wave model by `make int8-sensitivity` (one conv at a time): the
first encoder convs amplify rounding noise into whole-image texture changes (the first conv's input
alone brings output PSNR down to 24 dB, the fourth conv's to 35 dB), while every later conv alone
keeps it above 43 dB. So the leading convs and the image-producing last conv stay fp32; how
many leading convs is measured per model (see precisions.py). Cross-layer equalization of the
channel ranges was tried too and did not move PSNR, so it is not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import INT8_METHODS, STYLE
from stylecast.runtime.images import IMAGE_SUFFIXES, fit, load_image

METHODS = dict(zip(INT8_METHODS, (CalibrationMethod.Entropy, CalibrationMethod.MinMax, CalibrationMethod.Percentile),
                   strict=True))


# QuantizeBias False: biases stay fp32 initializers. ORT's default (True) writes INT32 bias DequantizeLinear
# nodes, which TensorRT's ONNX parser refuses (its DequantizeLinear takes INT8/FP8/INT4 inputs: onnx-tensorrt
# docs/operators.md; onnxruntime#14229, onnx-tensorrt#850). ORT CPU ran both graphs equally fast with the same
# parity in a one-off comparison; `make bench` times this one.
QUANTIZER_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}


def calibration_files(folder: Path, count: int, exclude: set[str]) -> list[Path]:
    """The first ``count`` photos (sorted) whose content is not among the ``exclude`` sha256s.

    Parity photos are excluded by content, so a held-out measurement can never see a calibration image.
    """
    files = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    chosen = [p for p in files if sha256_file(p) not in exclude][:count]
    if not chosen:
        raise StylecastError(f"{folder}: no calibration photos (after excluding the parity photos); "
                             "pass --calibration-images DIR with real photos")
    return chosen


def photos_digest(files: list[Path]) -> str:
    """One sha256 for the content of ``files`` in order: what an int8 export's staleness is keyed on."""
    return hashlib.sha256("\n".join(sha256_file(p) for p in files).encode()).hexdigest()


class PhotoReader(CalibrationDataReader):
    """Real photos centre-cropped and resized to the deployment size, one NCHW float32 batch each. A graph of
    ``styles`` > 1 paints photo ``i`` in style ``i mod styles`` (one-hot), so every style's activations set the
    scales that all of them share."""

    def __init__(self, files: list[Path], input_name: str, size: tuple[int, int], styles: int = 1) -> None:
        self.files, self.input_name, self.size, self.styles = files, input_name, size, styles
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for index, path in enumerate(self.files):
            rgb = fit(load_image(path).rgb, *self.size)
            batch = {self.input_name: rgb.transpose(2, 0, 1)[None].astype(np.float32)}
            if self.styles > 1:
                batch[STYLE] = np.eye(self.styles, dtype=np.float32)[None, index % self.styles]
            yield batch

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def conv_names(fp32_path: Path) -> list[str]:
    """The graph's Conv nodes in execution order (the order of the net's layers)."""
    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "Conv"]


def fp32_conv_names(int8_path: Path) -> list[str]:
    """The convs an int8 QDQ graph left in fp32: those whose weight is not the output of a DequantizeLinear."""
    graph = onnx.load(str(int8_path), load_external_data=False).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return [n.name for n in graph.node if n.op_type == "Conv" and n.input[1] not in dequantized]


def fp32_convs(names: list[str], leading: int) -> list[str]:
    """The convs left in fp32 when ``leading`` encoder convs are: those, and always the last (it writes the image)."""
    return sorted(set(names[:leading]) | {names[-1]}, key=names.index)


def quantize_int8(fp32_path: Path, dest: Path, files: list[Path], size: tuple[int, int], method: str,
                  keep_fp32: list[str], calibration_cache: Path | None = None) -> None:
    """Static Q/DQ quantization of ``fp32_path`` into ``dest`` (not yet stamped with metadata);
    the Conv nodes named in ``keep_fp32`` get no Q/DQ.

    The tensor ranges of every Conv are calibrated once per method and kept in ``calibration_cache``
    (onnxruntime's own cache, 1.27+), so trying other ``keep_fp32`` sets costs a quantization, not a calibration;
    None calibrates afresh (a one-off quantization)."""
    if method not in METHODS:
        raise StylecastError(f"unknown calibration method '{method}'; choose from {sorted(METHODS)}")
    inputs = onnx.load(str(fp32_path), load_external_data=False).graph.input
    styles = next((i.type.tensor_type.shape.dim[1].dim_value for i in inputs if i.name == STYLE), 1)
    options = dict(QUANTIZER_OPTIONS)
    # The quantizer prints calibration chatter and warns about pre-processing our graph does not need
    # (onnxslim already simplified it): keep the export's own progress readable.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(fp32_path), str(dest), PhotoReader(files, inputs[0].name, size, styles),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"], per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=keep_fp32,
                            calibrate_method=METHODS[method], extra_options=options,
                            calibration_cache_path=str(calibration_cache) if calibration_cache else None)
    finally:
        root.setLevel(level)
