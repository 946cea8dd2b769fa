"""fp32 ONNX -> explicit symmetric int8 Q/DQ ONNX (the layout TensorRT's strongly typed builder reads).

ONNX Runtime's static quantizer writes the Q/DQ pairs: per-channel symmetric int8 weights,
per-tensor symmetric int8 activations, scales calibrated on real photos at the deployment size.
Only Conv inputs are quantized (the TensorRT convention): conv outputs, InstanceNormalization and
the residual adds stay fp32, so no conv output is rounded to 8 bits before InstanceNorm removes
its per-channel offsets.
"""

from __future__ import annotations

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

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import IMAGE_SUFFIXES, load_image
from stylecast.runtime.metadata import sha256_file

from .parity import fit

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}


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


class PhotoReader(CalibrationDataReader):
    """Real photos centre-cropped and resized to the deployment size, one NCHW float32 batch each."""

    def __init__(self, files: list[Path], input_name: str, size: tuple[int, int]) -> None:
        self.files, self.input_name, self.size = files, input_name, size
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for path in self.files:
            rgb = fit(load_image(path).rgb, *self.size)
            yield {self.input_name: rgb.transpose(2, 0, 1)[None].astype(np.float32)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def quantize_int8(fp32_path: Path, dest: Path, files: list[Path], size: tuple[int, int], method: str) -> None:
    """Static Q/DQ quantization of ``fp32_path`` into ``dest`` (not yet stamped with metadata)."""
    if method not in METHODS:
        raise StylecastError(f"unknown calibration method '{method}'; choose from {sorted(METHODS)}")
    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    options = {"ActivationSymmetric": True, "WeightSymmetric": True,
               "OpTypesToExcludeOutputQuantization": ["Conv"]}
    quantize_static(str(fp32_path), str(dest), PhotoReader(files, input_name, size),
                    quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"], per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=METHODS[method], extra_options=options)
