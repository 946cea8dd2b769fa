"""The Open Inference Protocol (KServe v2) as Triton speaks it, for one image-in, image-out model (a multi-style
one also takes its style weights, ``style`` [batch, N]): metadata, model configuration, and infer requests and
responses in JSON or with the binary tensor extension (a JSON header of ``Inference-Header-Content-Length`` bytes
followed by the raw little-endian tensors, in the order of the inputs).

Names are Triton's: the model name `stylecast export --triton` gives the file, and the graph's tensor names.
Everything here is a pure function of the request's bytes, so it can run in a worker thread or process; every
fault a client can put in a request is an ``HttpError`` 400 or 413 naming the field.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from stylecast.runtime.formats import INPUT, OUTPUT, STYLE
from stylecast.serve.errors import HttpError

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPE = "FP32"  # every exported graph takes and returns float32 (fp16 and int8 ones too)
CONFIG_DATATYPE = "TYPE_FP32"  # the same type as Triton's model configuration names it
TENSOR_DIMS = [3, -1, -1]  # channels, height, width: the batch dimension is max_batch_size's, as in config.pbtxt
VERSION = "1"  # the one version folder `stylecast export --triton` writes
EXTENSIONS = ["binary_tensor_data", "model_configuration", "model_repository", "statistics"]
# A header length longer than this many digits cannot be within any body this server accepts; refusing it
# before int() also keeps Python's digit limit (ValueError above 4300 digits) out of the way.
MAX_LENGTH_DIGITS = 20
# Triton parameters this server has no extension for: answering without them would silently ignore the ask.
UNSUPPORTED_PARAMETERS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset", "classification")
INDEX_REQUEST_BYTES = 64 << 10  # `{"ready": true}` is all a repository index request holds
CHUNK_VALUES = 1 << 16  # output values serialised per orjson call (~1 ms): other threads get the GIL in between
BINARY_CHUNK = 1 << 20  # bytes of a binary output tensor per part of the streamed response
_brief = reprlib.Repr()  # bounded size and depth: a client's value in a message is never huge or recursive
_brief.maxstring = _brief.maxother = 40


def tensor_metadata(name: str) -> dict:
    """Batch, channels, height, width; -1 where it varies, as Triton reports a dynamic-batch model."""
    return {"name": name, "datatype": DATATYPE, "shape": [-1, *TENSOR_DIMS]}


def model_metadata(name: str, platform: str, styles: int = 1) -> dict:
    """A multi-style model (``styles`` > 1) has a second input, its style weights: a row of ``styles`` per image."""
    inputs = [tensor_metadata(INPUT)]
    if styles > 1:
        inputs.append({"name": STYLE, "datatype": DATATYPE, "shape": [-1, styles]})
    return {"name": name, "versions": [VERSION], "platform": platform, "inputs": inputs,
            "outputs": [tensor_metadata(OUTPUT)]}


def model_config(name: str, platform: str, max_batch: int, batch_window_s: float, styles: int = 1) -> dict:
    """Triton's model configuration as its HTTP API answers it (the ModelConfig protobuf as JSON, int64 fields as
    numbers): what `stylecast export --triton` writes to config.pbtxt, with this server's batching, so
    perf_analyzer and model_analyzer find ``max_batch_size``."""
    def tensor(name: str, dims: list[int]) -> dict:
        return {"name": name, "data_type": CONFIG_DATATYPE, "dims": dims}

    inputs = [tensor(INPUT, TENSOR_DIMS), *([tensor(STYLE, [styles])] if styles > 1 else [])]
    return {"name": name, "platform": platform, "max_batch_size": max_batch,
            "input": inputs, "output": [tensor(OUTPUT, TENSOR_DIMS)],
            "dynamic_batching": {"max_queue_delay_microseconds": round(batch_window_s * 1e6)}}


def _one_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _json_type(value: object) -> str:
    """JSON's name for ``value``'s type, for messages (a client's value itself may be huge)."""
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


@contextmanager
def client_field(name: str) -> Iterator[None]:
    """A conversion error raised while reading ``name`` from the client's data is the client's 400, naming it
    (only around parsing: the same error types from the server's own code stay 500s)."""
    try:
        yield
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise HttpError(400, f"{name}: {_one_line(exc)}") from exc


def load_object(data: bytes, what: str) -> dict:
    """A JSON object; orjson refuses nesting deeper than 1024 and numbers beyond a double's range."""
    with client_field(f"{what} is not valid JSON"):
        value = orjson.loads(data)
    if not isinstance(value, dict):
        raise HttpError(400, f"{what} must be a JSON object, got {_json_type(value)}")
    return value


def header_split(body_length: int, header_length: str | None) -> int:
    """Where the JSON header ends: the whole body, or ``Inference-Header-Content-Length`` bytes. Only ASCII
    digits count (``str.isdigit`` also accepts '²', which ``int`` refuses)."""
    if header_length is None:
        return body_length
    digits = header_length.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_LENGTH_DIGITS) or int(digits) > body_length:
        raise HttpError(400, f"{HEADER_LENGTH} must be a byte count within the body's {body_length} bytes, "
                             f"got {_brief.repr(header_length)}")
    return int(digits)


def _parameters(owner: dict, where: str) -> dict[str, Any]:
    """The optional ``parameters`` object of the request, an input or an output: scalar values by name."""
    parameters = owner.get("parameters", {})
    if not isinstance(parameters, dict):
        raise HttpError(400, f"{where}parameters must be a JSON object, got {_json_type(parameters)}")
    for key, value in parameters.items():
        if key in UNSUPPORTED_PARAMETERS:
            raise HttpError(400, f"{where}parameters.{key}: this server has no shared-memory or classification "
                                 "extension; send the tensor in the body")
        if not isinstance(value, (bool, int, float, str)):
            raise HttpError(400, f"{where}parameters.{_brief.repr(key)} must be a boolean, number or string, "
                                 f"got {_json_type(value)}")
    return parameters


def _flag(owner: dict[str, Any], key: str, where: str, default: bool = False) -> bool:
    value = owner.get(key, default)
    if not isinstance(value, bool):
        raise HttpError(400, f"{where}{key} must be true or false, got {_json_type(value)}")
    return value


def _shape(tensor: dict, where: str, max_batch: int, max_pixels: int, min_side: int) -> tuple[int, int, int, int]:
    shape = tensor.get("shape")
    # type() is int, not isinstance: JSON's true is not a dimension
    if (not isinstance(shape, list) or len(shape) != 4 or not all(type(d) is int and d > 0 for d in shape)
            or shape[1] != 3):
        raise HttpError(400, f"{where}.shape must be [batch, 3, height, width] of positive integers, "
                             f"got {_brief.repr(shape)}")
    batch, _, height, width = shape
    if batch > max_batch:
        raise HttpError(400, f"{where}.shape: batch {batch} is above the model's max_batch_size {max_batch}")
    if min(height, width) < min_side:
        raise HttpError(400, f"{where}.shape: height and width must be at least {min_side} for this model")
    if height * width > max_pixels:
        raise HttpError(413, f"{where}.shape: {width}x{height} is above this server's limit of {max_pixels} "
                             "pixels")
    return batch, 3, height, width


def _json_values(data: object, count: int, where: str) -> np.ndarray:
    """``data`` of the input at ``where``: numbers, flat or nested in row-major order, as float32."""
    where = f"{where}.data"
    if not isinstance(data, list):
        raise HttpError(400, f"{where} must be an array of numbers (or binary_data_size with the tensor after the "
                             f"JSON), got {_json_type(data)}")
    with client_field(where):  # ragged nesting, more than 64 levels, or an integer beyond float range
        values = np.array(data)  # numbers become an int or float array; strings, booleans, nulls do not
        if values.dtype.kind not in "iuf" and not (
                values.dtype.kind == "O" and all(type(v) in (int, float) for v in values.ravel())):
            raise HttpError(400, f"{where} must hold only numbers")
        values = values.astype(np.float32)  # object arrays hold integers beyond int64: OverflowError past float
    if values.size != count:
        raise HttpError(400, f"{where}: {values.size} values given, the shape needs {count}")
    if not np.isfinite(values).all():
        raise HttpError(400, f"{where}: a value is beyond FP32's range (±3.4e38)")
    return values


@dataclass
class InferRequest:
    id: str | None
    image: np.ndarray  # float32 NCHW
    binary_output: bool
    style: np.ndarray | None = None  # the ``style`` input's [batch, N] rows, each scaled to sum 1
    choice: str | None = None  # the ``style`` request parameter: a style or a blend, for the server to weigh
    stroke: float = 1.0  # the ``stroke`` request parameter: the net paints the images downscaled by it


class _Binary:
    """The raw tensors after the JSON header, taken by the inputs that declare ``binary_data_size``, in order."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.taken = 0

    def values(self, tensor: dict, where: str, shape: tuple[int, ...]) -> np.ndarray:
        """The input's values from the binary part or its JSON ``data``, float32 in ``shape``."""
        count = int(np.prod(shape))
        size = _parameters(tensor, f"{where}.").get("binary_data_size")
        if size is None:
            return _json_values(tensor.get("data"), count, where).reshape(shape)
        left = len(self.data) - self.taken
        if type(size) is not int or size != count * 4 or size > left:
            raise HttpError(400, f"{where}.parameters.binary_data_size: {left} bytes left after the JSON header "
                                 f"(declared {_brief.repr(size)}) do not hold the {count} FP32 values of the shape")
        start, self.taken = self.taken, self.taken + size
        return np.frombuffer(self.data, dtype="<f4", count=count, offset=start).reshape(shape).astype(np.float32)

    def check_used(self) -> None:
        if self.taken != len(self.data):
            raise HttpError(400, f"{len(self.data) - self.taken} bytes follow the JSON header that no input's "
                                 "parameters.binary_data_size declares")


def _input_tensors(header: dict, styles: int) -> dict[str, tuple[str, dict]]:
    """The request's inputs by name, each with where it is (``inputs[i]``): ``image``, and ``style`` where the model
    takes style weights (``styles`` > 1)."""
    names = [INPUT, STYLE] if styles > 1 else [INPUT]
    expected = f"{INPUT!r} and optionally {STYLE!r}" if styles > 1 else f"exactly one input, {INPUT!r}"
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise HttpError(400, f"inputs must be an array of {expected}")
    found: dict[str, tuple[str, dict]] = {}
    for i, tensor in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise HttpError(400, f"{where} must be a JSON object, got {_json_type(tensor)}")
        name = tensor.get("name")
        if name not in names or name in found:
            known = (f"the model's inputs are {INPUT!r} and {STYLE!r}" if styles > 1
                     else f"the model's input is {INPUT!r} (a single-style model takes no {STYLE!r})")
            raise HttpError(400, f"{where}.name: unknown or repeated input {_brief.repr(name)}; {known}")
        if tensor.get("datatype") != DATATYPE:
            raise HttpError(400, f"{where}.datatype: input {name!r} must be {DATATYPE}, got "
                                 f"{_brief.repr(tensor.get('datatype'))}")
        found[name] = (where, tensor)
    if INPUT not in found:
        raise HttpError(400, f"inputs: no {INPUT!r} input; send {expected}")
    return found


def _style_rows(where: str, tensor: dict, batch: int, styles: int, binary: _Binary) -> np.ndarray:
    """The ``style`` input: a row of ``styles`` weights per image, >= 0 and summing above 0, each row scaled to sum 1
    as a blend's weights are."""
    shape = tensor.get("shape")
    if not isinstance(shape, list) or [type(d) for d in shape] != [int, int] or shape != [batch, styles]:
        raise HttpError(400, f"{where}.shape: input {STYLE!r} must be [{batch}, {styles}] (a row of the model's "
                             f"{styles} style weights for each of the {batch} images), got {_brief.repr(shape)}")
    rows = binary.values(tensor, where, (batch, styles))
    if not np.isfinite(rows).all() or (rows < 0).any():
        raise HttpError(400, f"{where}: input {STYLE!r} holds a negative or non-finite weight; weights are >= 0")
    sums = rows.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        raise HttpError(400, f"{where}: a row of input {STYLE!r} sums to 0; give each image at least one style a "
                             "positive weight")
    return rows / sums


def _style_choice(header: dict) -> str | None:
    """The ``style`` request parameter, a style or a blend the server turns into the ``style`` input."""
    choice = _parameters(header, "").get(STYLE)
    if choice is not None and not isinstance(choice, str):
        raise HttpError(400, f"parameters.{STYLE} must be a string (a style, or a blend like "
                             f"wave=0.6,starry_night=0.4), got {_json_type(choice)}")
    return choice


def _stroke(header: dict) -> float:
    """The ``stroke`` request parameter, a number (its range is checked with the server's other stroke sizes)."""
    stroke = _parameters(header, "").get("stroke", 1.0)
    if type(stroke) not in (int, float):  # type(), not isinstance: JSON's true is not a number
        raise HttpError(400, f"parameters.stroke must be a number above 0 and at most 1, got {_json_type(stroke)}")
    return float(stroke)


def _binary_output(header: dict) -> bool:
    """Binary if the output asks for it, or (it does not say) the request-wide ``binary_data_output`` does."""
    default = _flag(_parameters(header, ""), "binary_data_output", "parameters.")
    outputs = header.get("outputs", [])
    if not isinstance(outputs, list):
        raise HttpError(400, f"outputs must be an array of objects, got {_json_type(outputs)}")
    binary = []
    for i, output in enumerate(outputs):
        where = f"outputs[{i}]."
        if not isinstance(output, dict):
            raise HttpError(400, f"outputs[{i}] must be a JSON object, got {_json_type(output)}")
        if output.get("name") != OUTPUT:
            raise HttpError(400, f"{where}name: unknown output {_brief.repr(output.get('name'))}; the model's output "
                                 f"is {OUTPUT!r}")
        binary.append(_flag(_parameters(output, where), "binary_data", f"{where}parameters.", default))
    return any(binary) if binary else default


def _read(body: bytes, split: int, max_batch: int, max_pixels: int, min_side: int, styles: int) -> InferRequest:
    header, binary = load_object(body[:split], "infer request"), _Binary(body[split:])
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise HttpError(400, f"id must be a string, got {_json_type(request_id)}")
    inputs = _input_tensors(header, styles)
    where, tensor = inputs[INPUT]
    shape = _shape(tensor, where, max_batch, max_pixels, min_side)
    image = binary.values(tensor, where, shape)
    style = _style_rows(*inputs[STYLE], shape[0], styles, binary) if STYLE in inputs else None
    binary.check_used()
    return InferRequest(request_id, image, _binary_output(header), style, _style_choice(header), _stroke(header))


def parse_infer(body: bytes, split: int, max_batch: int, max_pixels: int, min_side: int,
                styles: int = 1) -> InferRequest:
    """Validate everything a client sends (the JSON header is ``body[:split]``) to a model of ``styles`` styles;
    any fault is a 4xx naming it."""
    with client_field("infer request"):  # the net under the field checks, for what they did not foresee
        return _read(body, split, max_batch, max_pixels, min_side, styles)


def _json_numbers(values: np.ndarray) -> list[bytes]:
    """The comma-separated float32 values of a JSON array, in parts of ``CHUNK_VALUES``: one orjson call over
    millions of values would hold the GIL (and so stall the event loop) for a tenth of a second or more."""
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
    parts: list[bytes] = []
    for start in range(0, flat.size, CHUNK_VALUES):
        if parts:
            parts.append(b",")
        parts.append(orjson.dumps(flat[start:start + CHUNK_VALUES], option=orjson.OPT_SERIALIZE_NUMPY)[1:-1])
    return parts


def infer_response(model: str, request: InferRequest, result: np.ndarray) -> tuple[list[bytes], dict[str, str]]:
    """The response body in parts of at most about a MiB, and its headers: JSON data, or a JSON header followed by
    the raw output tensor. Parts, because joining (or sending) tens of MiB at once is one copy that holds the GIL
    and stalls every other request; the server streams them."""
    output: dict = {"name": OUTPUT, "datatype": DATATYPE, "shape": list(result.shape)}
    answer: dict = {"model_name": model, "model_version": VERSION}
    if request.id is not None:
        answer["id"] = request.id
    if request.binary_output:
        raw = memoryview(np.ascontiguousarray(result, dtype="<f4")).cast("B")
        output["parameters"] = {"binary_data_size": raw.nbytes}
        text = orjson.dumps({**answer, "outputs": [output]})
        # bytes, not views of the tensor: Ray Serve pickles each part on its way from a replica to its proxy
        parts = [text, *(bytes(raw[start:start + BINARY_CHUNK]) for start in range(0, raw.nbytes, BINARY_CHUNK))]
        headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(text))}
    else:
        # {...answer, "outputs": [{...output, "data": [values]}]}, the values written in parts
        head = orjson.dumps(answer)[:-1] + b',"outputs":[' + orjson.dumps(output)[:-1] + b',"data":['
        parts = [head, *_json_numbers(result), b"]}]}"]
        headers = {"Content-Type": "application/json"}
    headers["Content-Length"] = str(sum(len(part) for part in parts))
    return parts, headers


def check_index_request(body: bytes) -> None:
    """``POST /v2/repository/index``: an empty body, or a JSON object whose optional ``ready`` is a boolean
    (every model this server holds is loaded and ready, so it selects the same list)."""
    if body.strip():
        _flag(load_object(body, "repository index request"), "ready", "")
