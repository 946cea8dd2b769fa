"""The Open Inference Protocol (KServe v2) as Triton speaks it, for one image-in, image-out model: metadata,
and infer requests and responses in JSON or with the binary tensor extension (a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw little-endian tensors).

Names are Triton's: the model name `stylecast export --triton` gives the file, and the graph's tensor names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from stylecast.runtime.formats import INPUT, OUTPUT
from stylecast.serve.errors import HttpError

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPE = "FP32"  # every exported graph takes and returns float32 (fp16 and int8 ones too)
VERSION = "1"  # the one version folder `stylecast export --triton` writes
EXTENSIONS = ["binary_tensor_data"]


def tensor_metadata(name: str) -> dict:
    """Batch, channels, height, width; -1 where it varies, as Triton reports a dynamic-batch model."""
    return {"name": name, "datatype": DATATYPE, "shape": [-1, 3, -1, -1]}


def model_metadata(name: str, platform: str) -> dict:
    return {"name": name, "versions": [VERSION], "platform": platform,
            "inputs": [tensor_metadata(INPUT)], "outputs": [tensor_metadata(OUTPUT)]}


@dataclass
class InferRequest:
    id: str | None
    image: np.ndarray  # float32 NCHW
    binary_output: bool


def _json_header(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    if header_length is None:
        split = len(body)
    elif header_length.isdigit() and int(header_length) <= len(body):
        split = int(header_length)
    else:
        raise HttpError(400, f"{HEADER_LENGTH} {header_length!r} is not a length within the body")
    try:
        header = json.loads(body[:split])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(400, f"infer request is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise HttpError(400, "infer request must be a JSON object")
    return header, body[split:]


def _shape(tensor: dict, max_batch: int, max_pixels: int, min_side: int) -> tuple[int, int, int, int]:
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape)
            or shape[1] != 3):
        raise HttpError(400, f"input {INPUT!r}: shape must be [batch, 3, height, width], got {shape!r}")
    batch, _, height, width = shape
    if batch > max_batch:
        raise HttpError(400, f"input {INPUT!r}: batch {batch} is above the model's max_batch_size {max_batch}")
    if min(height, width) < min_side:
        raise HttpError(400, f"input {INPUT!r}: height and width must be at least {min_side} for this model")
    if height * width > max_pixels:
        raise HttpError(413, f"input {INPUT!r}: {width}x{height} is above this server's limit of {max_pixels} pixels")
    return batch, 3, height, width


def parse_infer(body: bytes, header_length: str | None, max_batch: int, max_pixels: int,
                min_side: int) -> InferRequest:
    """Validate everything a client sends; any fault is a 4xx naming it."""
    header, binary = _json_header(body, header_length)
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise HttpError(400, f"infer request needs exactly one input, {INPUT!r}")
    tensor = inputs[0]
    if tensor.get("name") != INPUT:
        raise HttpError(400, f"unknown input {tensor.get('name')!r}; the model's input is {INPUT!r}")
    if tensor.get("datatype") != DATATYPE:
        raise HttpError(400, f"input {INPUT!r}: datatype must be {DATATYPE}, got {tensor.get('datatype')!r}")
    shape = _shape(tensor, max_batch, max_pixels, min_side)
    count = int(np.prod(shape))
    parameters = tensor.get("parameters") or {}
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if size != count * 4 or len(binary) != size:
            raise HttpError(400, f"input {INPUT!r}: binary data of {len(binary)} bytes (declared {size!r}) "
                                 f"does not hold {count} FP32 values")
        image = np.frombuffer(binary, dtype="<f4").reshape(shape)
    else:
        try:
            image = np.asarray(tensor.get("data"), dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise HttpError(400, f"input {INPUT!r}: data must be a list of numbers") from exc
        if image.size != count:
            raise HttpError(400, f"input {INPUT!r}: {image.size} values given, shape {list(shape)} needs {count}")
        image = image.reshape(shape)
    return InferRequest(header.get("id"), image.astype(np.float32), _binary_output(header))


def _binary_output(header: dict) -> bool:
    """Binary if the output asks for it, or (no outputs listed) the request-wide parameter does."""
    outputs = header.get("outputs")
    if outputs is None:
        return bool((header.get("parameters") or {}).get("binary_data_output", False))
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise HttpError(400, "outputs must be a list of objects")
    unknown = [o.get("name") for o in outputs if o.get("name") != OUTPUT]
    if unknown:
        raise HttpError(400, f"unknown output(s) {unknown}; the model's output is {OUTPUT!r}")
    return any((o.get("parameters") or {}).get("binary_data", False) for o in outputs)


def infer_response(model: str, request: InferRequest, result: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """The response body and headers: JSON data, or a JSON header followed by the raw output tensor."""
    output: dict = {"name": OUTPUT, "datatype": DATATYPE, "shape": list(result.shape)}
    raw = np.ascontiguousarray(result, dtype="<f4").tobytes() if request.binary_output else b""
    if request.binary_output:
        output["parameters"] = {"binary_data_size": len(raw)}
    else:
        output["data"] = result.astype(np.float32).ravel().tolist()
    answer = {"model_name": model, "model_version": VERSION, "outputs": [output]}
    if request.id is not None:
        answer["id"] = request.id
    text = json.dumps(answer, separators=(",", ":")).encode()
    if not request.binary_output:
        return text, {"Content-Type": "application/json"}
    return text + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(text))}
