"""A multi-style graph with its style folded in: the single-style graph it becomes (structure, every precision),
the same pixels as the general graph on ONNX Runtime and OpenVINO, single-style graphs left alone, and the Stylizer
running the folded graph for its own style while per-image styles keep the general one; on tiny N=3 and N=1 nets
(width 4, one residual block) saved without training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from stylecast.export.pipeline import ExportRequest, run_export
from stylecast.export.precisions import Int8Settings
from stylecast.runtime.backends import load_backend
from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import INPUT, STYLE
from stylecast.runtime.specialize import specialize
from stylecast.runtime.stylizer import Stylizer

from .conftest import TINY_SIZES, save_tiny_net

pytestmark = pytest.mark.slow  # every test here stands on a real export of the nets

PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="OpenVINO not installed: pip install 'stylecast[openvino]'"))]
CHOICES = {"one-hot": [0.0, 0.0, 1.0], "blend": [0.5, 0.3, 0.2]}
# Folded vs general on the same engine, measured on these nets over 4 photos at 3 sizes and 5 style vectors: fp32
# differed by at most 4e-4 (of 255), int8 by 8e-5 (no activation changed its int8 step), fp16 by 0.5, its general
# graph applying the affine in fp16 where the folded one applies it in the norm's fp32; after rounding, at most one
# grey level in each. The bounds leave room for another CPU's kernels.
FLOAT_ATOL = {"fp32": 5e-3}
GREY_LEVELS = {"fp16": 1, "int8": 2}
DIFFERING_PIXELS = {"fp16": 0.1, "int8": 1e-3}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, photos, calibration_photos) -> Path:
    """``trio.<precision>.onnx`` (3 styles) and ``solo.<precision>.onnx`` (1 style) of the same architecture, every
    precision, their int8 graphs quantizing the same convs; random nets may miss the int8 floor, which is fine."""
    root = tmp_path_factory.mktemp("specialize")
    int8 = Int8Settings(calibration_images=calibration_photos, count=5, size=(64, 64), method="minmax",
                        fp32_leading=1)
    for name, styles in (("trio", 3), ("solo", 1)):
        run_export(ExportRequest(save_tiny_net(root / "models", name, styles), root / "out", precisions=list(PRECISIONS),
                                 parity_images=photos, sizes=TINY_SIZES, int8=int8,
                                 allow_below_floor=frozenset({"int8"})), log=lambda _: None)
    return root / "out"


def _batch(photos: Path, width: int, height: int) -> np.ndarray:
    """Two different photos as one NCHW float batch."""
    images = [Image.open(photos / name).convert("RGB").resize((width, height)) for name in ("chelsea.jpg", "rocket.jpg")]
    return np.stack([np.asarray(image) for image in images]).transpose(0, 3, 1, 2).astype(np.float32)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_folded_graph_is_the_single_style_graph(exports, precision):
    """No style input, no MatMul/Mul/Add of the style: the op sequence of a single-style export of the same net, the
    same InstanceNorm count as the general graph, and every node but the norms (and an fp16 norm's output Cast,
    which takes over the folded Add's output name) as exported."""
    general = onnx.load(str(exports / f"trio.{precision}.onnx"))
    folded = specialize(general, np.array(CHOICES["blend"], np.float32))
    onnx.checker.check_model(folded, full_check=True)
    assert [i.name for i in folded.graph.input] == [INPUT]
    assert [o.name for o in folded.graph.output] == [o.name for o in general.graph.output]
    ops = [n.op_type for n in folded.graph.node]
    assert ops == [n.op_type for n in onnx.load(str(exports / f"solo.{precision}.onnx")).graph.node]
    assert ops.count("InstanceNormalization") == [n.op_type for n in general.graph.node].count("InstanceNormalization")
    assert "MatMul" not in ops and not any(STYLE in n.input for n in folded.graph.node)
    as_exported = {n.name: n for n in general.graph.node}
    changed = {n.name for n in folded.graph.node if n != as_exported[n.name]}
    norms = {n.name for n in folded.graph.node if n.op_type == "InstanceNormalization"}
    casts = {n.name for n in folded.graph.node if n.op_type == "Cast" and n.input[0] in
             {out for m in folded.graph.node if m.name in norms for out in m.output}}
    assert norms <= changed <= norms | casts
    assert precision != "fp16" or casts, "fp16 keeps its norms fp32 behind Casts"
    assert folded.metadata_props == general.metadata_props


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_folded_graph_paints_as_the_general_graph(exports, photos, backend, precision):
    with load_backend(exports / f"trio.{precision}.onnx", backend=backend, threads=1) as general:
        for choice, weights in CHOICES.items():
            vector = np.array(weights, np.float32)
            with general.specialized(vector) as folded:
                assert folded.inputs == (INPUT,) and general.inputs == (INPUT, STYLE)
                for width, height in TINY_SIZES:
                    batch = _batch(photos, width, height)
                    want = general.run(batch, style=np.repeat(vector[None], len(batch), axis=0))
                    got = folded.run(batch)
                    where = f"{backend} {precision} {choice} {width}x{height}"
                    if precision in FLOAT_ATOL:
                        assert np.abs(got - want).max() <= FLOAT_ATOL[precision], where
                        continue
                    grey = np.abs(np.rint(got) - np.rint(want))
                    assert grey.max() <= GREY_LEVELS[precision], where
                    assert (grey > 0).mean() <= DIFFERING_PIXELS[precision], where


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_single_style_graph_is_left_as_it_is(exports, backend):
    model = onnx.load(str(exports / "solo.fp32.onnx"))
    assert specialize(model, np.ones(1, np.float32)) is model
    with load_backend(exports / "solo.fp32.onnx", backend=backend) as single:
        assert single.specialized(np.ones(1, np.float32)) is None
    stylizer = Stylizer(exports / "solo.fp32.onnx", backend=backend)
    assert stylizer.fixed_graphs() == stylizer.backends
    stylizer.close()


def test_a_wrong_style_vector_is_refused(exports):
    model = onnx.load(str(exports / "trio.fp32.onnx"))
    with pytest.raises(ValueError, match="a style vector of 2 weights for a style input of shape"):
        specialize(model, np.ones(2, np.float32))


def test_the_stylizer_runs_the_folded_graph_for_its_own_style(exports, photos, monkeypatch):
    model = exports / "trio.fp32.onnx"
    rgb = np.asarray(Image.open(photos / "coffee.jpg").convert("RGB").resize((72, 56)))
    with Stylizer(model, style="wave=0.6,candy=0.4") as stylizer:
        before = stylizer.stylize_batch([rgb], styles=[stylizer.style_vector])[0]  # the general graph
        (folded,) = stylizer.fixed_graphs()
        assert folded.inputs == (INPUT,) and stylizer.backend.inputs == (INPUT, STYLE)
        assert np.abs(stylizer(rgb).astype(int) - before).max() <= 1
        assert stylizer.fixed_graphs()[0] is folded  # opened once
    assert folded.session is None  # closed with the stylizer
    # Per-image styles (a server's batches) never open the folded graph: one graph per model in memory.
    monkeypatch.setattr(OnnxRuntimeBackend, "specialized", lambda *_: pytest.fail("a folded graph was opened"))
    with Stylizer(model) as server:
        mixed = server.stylize_batch([rgb, rgb], styles=[server.weights("candy"), server.weights("wave")])
        assert server.forward(_batch(photos, 32, 32), style=np.tile(server.weights("wave"), (2, 1))).shape[0] == 2
    assert not np.array_equal(mixed[0], mixed[1])


def test_a_graph_whose_style_reaches_other_nodes_is_refused(exports, tmp_path):
    """A style path the surgery cannot fold (here: the style's MatMul also feeding the output) fails naming the fix
    instead of running a graph that paints something else."""
    from stylecast.runtime.specialize import specialized_bytes

    model = onnx.load(str(exports / "trio.fp32.onnx"))
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul")
    last = next(n for n in reversed(model.graph.node))
    model.graph.node.append(onnx.helper.make_node("Mul", [last.output[0], matmul.output[0]], ["odd"]))
    model.graph.output[0].name = "odd"
    onnx.save(model, tmp_path / "odd.onnx")
    with pytest.raises(StylecastError, match=r"style cannot be folded.*beyond an InstanceNorm's affine.*re-export"):
        specialized_bytes(tmp_path / "odd.onnx", np.array(CHOICES["one-hot"], np.float32))
