"""Compression on tiny nets: student architectures, structured pruning, distillation, the resumable pipeline."""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stylecast.compress.prune import gflops, prune_until, pruned_arch
from stylecast.compress.students import CANDIDATES
from stylecast.runtime.artifacts import read_metadata
from stylecast.runtime.stylizer import Stylizer
from stylecast.train.checkpoint import load_model, save_model
from stylecast.train.model import ArchConfig, TransformerNet

from .conftest import DATA, run_cli


def test_legacy_arch_json_is_unchanged_and_loads():
    legacy = '{"first_kernel": 9, "last_kernel": 9, "res_blocks": 5, "width": 32}'
    assert ArchConfig().to_json() == legacy
    assert ArchConfig.from_json(legacy) == ArchConfig()


def test_arch_spec_round_trip_and_channel_count_check():
    arch = ArchConfig.from_spec("width=16,last_kernel=3,depthwise=1")
    assert (arch.width, arch.last_kernel, arch.depthwise) == (16, 3, True)
    assert ArchConfig.from_json(arch.to_json()) == arch
    pruned = ArchConfig.from_spec("res_blocks=2,channels=8/16/24/8/16/16/8")
    assert ArchConfig.from_json(pruned.to_json()) == pruned and pruned.layer_channels()[2] == 24
    for config in (arch, pruned, ArchConfig.from_spec("width=16,head=shuffle,last_kernel=3,input_pad=8")):
        assert ArchConfig.from_spec(config.to_spec()) == config  # the arch_spec a slim model's metadata gives
    with pytest.raises(ValueError, match="5 \\+ res_blocks"):
        ArchConfig.from_spec("res_blocks=2,channels=8/16/24")
    with pytest.raises(ValueError, match="unknown"):
        ArchConfig.from_spec("width=8,wings=2")


@pytest.mark.parametrize("spec", ["width=8,res_blocks=2,depthwise=1,last_kernel=3",
                                  "res_blocks=2,channels=8/16/24/8/16/16/8"])
def test_student_variants_keep_any_input_size(spec):
    net = TransformerNet(ArchConfig.from_spec(spec)).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 33, 47) * 255).shape == (1, 3, 33, 47)


def test_depthwise_and_small_last_kernel_cut_flops():
    full = gflops(TransformerNet(ArchConfig(width=16)), 64, 64)
    assert gflops(TransformerNet(ArchConfig(width=16, last_kernel=3)), 64, 64) < full
    assert gflops(TransformerNet(ArchConfig(width=16, depthwise=True)), 64, 64) < 0.6 * full


def test_pruning_removes_channels_in_multiples_of_8_and_rebuilds_from_metadata():
    torch.manual_seed(0)
    net = TransformerNet(ArchConfig(width=16, res_blocks=2)).eval()
    base = gflops(net, 64, 64)
    x = torch.rand(1, 3, 37, 45) * 255
    pruned = prune_until(net, lambda n: gflops(n, 64, 64) <= 0.5 * base)
    channels = pruned.config.layer_channels()
    assert gflops(pruned, 64, 64) <= 0.5 * base
    assert all(c % 8 == 0 and c > 0 for c in channels) and channels != ArchConfig(width=16, res_blocks=2).layer_channels()
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in TransformerNet(net.config).parameters())
    assert pruned_arch(pruned) == pruned.config
    with torch.no_grad():
        out = pruned(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


def _write_teacher(path: Path, width: int = 16) -> Path:
    """A random-weight teacher with the metadata a trained one carries (style image: tests/data/style.jpg)."""
    torch.manual_seed(1)
    style_sha = hashlib.sha256((DATA / "style.jpg").read_bytes()).hexdigest()
    save_model(path, TransformerNet(ArchConfig(width=width, res_blocks=1)).eval(),
               {"style": "tiny", "style_image": "style.jpg", "style_image_sha256": style_sha, "steps": "0",
                "hyperparameters": json.dumps({"style_size": 48})})
    return path


def test_prune_cli_writes_a_loadable_exportable_checkpoint(tmp_path, photos):
    teacher = _write_teacher(tmp_path / "teacher.safetensors")
    out = tmp_path / "pruned.safetensors"
    done = run_cli("prune", "--model", str(teacher), "--out", str(out), "--target-flops", "50", "--size", "64")
    assert done.returncode == 0, done.stderr
    meta = read_metadata(out)
    assert meta["method"] == "prune" and meta["pruned_from_sha256"] == hashlib.sha256(teacher.read_bytes()).hexdigest()
    assert float(meta["flops_percent"]) <= 50
    assert "channels" in json.loads(meta["arch"])
    exported = run_cli("export", str(out), "--out", str(tmp_path / "onnx"), "--parity-images", str(photos))
    assert exported.returncode == 0, exported.stderr
    stylized = Stylizer(tmp_path / "onnx" / "pruned.fp32.onnx")(load_file_rgb(photos / "coffee.jpg"))
    assert stylized.dtype.name == "uint8" and stylized.ndim == 3


def load_file_rgb(path: Path):
    from stylecast.runtime.images import load_image

    return load_image(path).rgb


def test_prune_cli_needs_exactly_one_target(tmp_path):
    teacher = _write_teacher(tmp_path / "teacher.safetensors")
    both = run_cli("prune", "--model", str(teacher), "--out", str(tmp_path / "p.safetensors"))
    assert both.returncode == 2 and "exactly one" in both.stderr and "Traceback" not in both.stderr


def distill_args(teacher: Path, photos: Path, vgg: Path, out: Path, run_dir: Path, steps: int, *extra: str) -> list[str]:
    return ["distill", "--teacher", str(teacher), "--data", str(photos), "--out", str(out), "--run-dir", str(run_dir),
            "--steps", str(steps), "--batch", "2", "--crop", "32", "--loss-net-weights", str(vgg), "--log-every", "1",
            "--checkpoint-every", "1", "--styles-dir", str(DATA), *extra]


def test_distill_trains_student_with_lineage_and_resumes_exactly(tmp_path, photos, tiny_vgg):
    teacher = _write_teacher(tmp_path / "teacher.safetensors")
    arch = ["--arch", "width=8,res_blocks=1,last_kernel=3,depthwise=1", "--feature-weight", "1"]
    straight = run_cli(*distill_args(teacher, photos, tiny_vgg, tmp_path / "a.safetensors", tmp_path / "a", 3, *arch))
    assert straight.returncode == 0, straight.stderr
    meta = read_metadata(tmp_path / "a.safetensors")
    assert meta["method"] == "distill" and meta["teacher_sha256"] == hashlib.sha256(teacher.read_bytes()).hexdigest()
    assert ArchConfig.from_json(meta["arch"]) == ArchConfig(width=8, res_blocks=1, last_kernel=3, depthwise=True)
    header = (tmp_path / "a" / "log.csv").read_text().splitlines()[0]
    assert header.startswith("step,pixel,content,style,feature,total")
    first = run_cli(*distill_args(teacher, photos, tiny_vgg, tmp_path / "b.safetensors", tmp_path / "b", 2, *arch))
    assert first.returncode == 0, first.stderr
    resumed = run_cli(*distill_args(teacher, photos, tiny_vgg, tmp_path / "b.safetensors", tmp_path / "b", 3, *arch),
                      "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_distill_refuses_wrong_painting_and_mismatched_init(tmp_path, photos, tiny_vgg):
    teacher = _write_teacher(tmp_path / "teacher.safetensors")
    wrong = run_cli(*distill_args(teacher, photos, tiny_vgg, tmp_path / "s.safetensors", tmp_path / "r", 1),
                    "--style-image", str(photos / "coffee.jpg"))
    assert wrong.returncode == 2 and "coffee.jpg" in wrong.stderr and "sha256" in wrong.stderr
    init = run_cli(*distill_args(teacher, photos, tiny_vgg, tmp_path / "s.safetensors", tmp_path / "r2", 1),
                   "--init", str(teacher), "--arch", "width=8,res_blocks=1")
    assert init.returncode == 2 and "architecture" in init.stderr and "Traceback" not in init.stderr


def test_compress_pipeline_end_to_end_and_skips_finished_stages(tmp_path, photos, calibration_photos, tiny_vgg):
    teacher = _write_teacher(tmp_path / "teacher.safetensors")
    earlier = tmp_path / "earlier-slim.safetensors"
    save_model(earlier, TransformerNet(ArchConfig(width=8, res_blocks=1)), {"style": "tiny", "steps": "0"})
    out, work, report_dir = tmp_path / "tiny-slim.safetensors", tmp_path / "work", tmp_path / "report"
    args = ["compress", "--teacher", str(teacher), "--data", str(calibration_photos), "--out", str(out), "--work", str(work),
            "--report-dir", str(report_dir), "--student", "w8=width=8,res_blocks=1,last_kernel=3",
            "--prune-flops", "50", "--steps", "2", "--batch", "2", "--crop", "32", "--holdout", "1",
            "--eval-size", "64", "--styles-dir", str(DATA), "--parity-images", str(photos),
            "--loss-net-weights", str(tiny_vgg), "--compare", f"before={earlier}", "--calibration-count", "3"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "w8", "pruned", "before"}
    for name in ("w8", "pruned", "before"):
        row = report["models"][name]
        assert row["flops_ratio"] > 1 and 0 < row["ssim"] <= 1 and row["latency_ms"]["ORT fp32"] > 0
        assert row["latency_ms"]["ORT int8"] > 0 and row["int8_psnr_min"] > 0
        assert set(row["gflops"]) == {"256", "512", "1080p"} and "style_delta" in row
    assert report["models"]["pruned"]["method"] == "prune+distill"
    assert report["models"]["w8"]["method"] == "warm-start+distill"  # from the distilled pruned student
    assert "warm-started from pruned.safetensors" in first.stderr
    trained_on = [p.resolve().name for p in (work / "split" / "train").iterdir()]
    assert len(report["held_out"]) == 1 and report["held_out"][0] not in trained_on
    meta = read_metadata(out)
    assert meta["student"] == report["selected"] and meta["teacher_sha256"] == report["teacher_sha256"]
    assert load_model(out).model.config == ArchConfig.from_json(meta["arch"])
    assert (report_dir / "side-by-side.jpg").stat().st_size > 1000
    assert "| teacher |" in (report_dir / "report.md").read_text()
    manifests = sorted(p.parent.name for p in work.glob("*/manifest.json"))
    assert manifests == ["evaluate", "prune", "pruned", "split", "w8"]
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("up to date") == 5  # split, prune, both students, evaluation: nothing redone


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_deployment_candidates_build_run_and_export(name, tmp_path):
    """Each candidate: 16-multiple channels, any input size, cheaper than the teacher, and an ONNX graph that
    ONNX Runtime and OpenVINO (where installed) run alike (the pixel-shuffle head becomes DepthToSpace)."""
    import io
    import warnings

    import numpy as np
    import onnx

    from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from stylecast.runtime.formats import INPUT, OUTPUT

    arch = ArchConfig.from_spec(CANDIDATES[name])
    assert all(c % 16 == 0 for c in arch.layer_channels()) and ArchConfig.from_json(arch.to_json()) == arch
    net = TransformerNet(arch).eval()
    x = torch.rand(1, 3, 33, 47) * 255
    with torch.no_grad():
        expected = net(x)
    assert expected.shape == x.shape and gflops(net, 64, 64) < 0.4 * gflops(TransformerNet(), 64, 64)
    buffer, axes = io.BytesIO(), {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buffer, dynamo=False, opset_version=18, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: axes, OUTPUT: axes})
    path = tmp_path / f"{name}.onnx"
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in {"stylecast.format": "onnx", "style": "tiny", "arch": arch.to_json(), "precision": "fp32"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    backends = [OnnxRuntimeBackend(path)]
    if importlib.util.find_spec("openvino"):
        from stylecast.runtime.backends.openvino import OpenVinoBackend

        backends.append(OpenVinoBackend(path, threads=1))
    for backend in backends:
        assert np.abs(backend.run(x.numpy()) - expected.numpy()).max() < 0.05, backend.describe()


def test_student_names_expand_to_candidates_and_shuffle_head_is_guarded():
    from stylecast.compress.cli import parse_students
    from stylecast.compress.prune import output_conv

    assert parse_students(["w16ps", "mine=width=8"]) == {"w16ps": CANDIDATES["w16ps"], "mine": "width=8"}
    net = TransformerNet(ArchConfig.from_spec(CANDIDATES["w16ps"]))
    assert output_conv(net)[-1].out_channels == 12 and isinstance(net.decoder[-1], torch.nn.PixelShuffle)
    with pytest.raises(ValueError, match="head 'big'"):
        ArchConfig(head="big")


def test_students_latency_exports_a_candidate_as_shipped(tmp_path, photos):
    """`make students-latency`'s export path: a random-init candidate to an int8 QDQ ONNX with the teacher's
    fp32-conv policy, stamped as int8 and parseable by TensorRT (the same graph rules as the shipped exports)."""
    from stylecast.benchmarks.studies.students_latency import FP32_LEADING, export_candidate
    from stylecast.export.trt_conformance import check_releases
    from stylecast.runtime.artifacts import onnx_metadata

    teacher_path = tmp_path / "teacher.safetensors"
    save_model(teacher_path, TransformerNet(ArchConfig(width=8, res_blocks=1)), {"style": "tiny", "steps": "0"})
    int8 = export_candidate("w16ps", CANDIDATES["w16ps"], load_model(teacher_path), tmp_path / "out",
                            sorted(photos.glob("*.jpg"))[:2])
    import onnx

    graph = onnx.load(str(int8))
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    quantized = {n.output[0] for n in graph.graph.node if n.op_type == "DequantizeLinear"}
    assert onnx_metadata(int8)["precision"] == "int8"
    assert [c.name for c in convs if not set(c.input) & quantized] == [c.name for c in convs[:FP32_LEADING]] + [
        convs[-1].name]
    assert all(lines == [] for lines in check_releases(int8).values())


def test_warm_start_fits_a_new_output_conv_to_the_teacher():
    """A student whose output conv differs from its source's: the rest is copied exactly, the least-squares fit of
    the new head beats resampling the old one, and it recovers an output conv exactly where one exists."""
    from stylecast.compress.warm_start import fit_output_conv, resample_kernel, warm_start

    torch.manual_seed(0)
    source = TransformerNet(ArchConfig(width=8, res_blocks=1)).eval()
    with torch.no_grad():  # outputs inside [0, 255], as a trained net's are, so no clamping hides the difference
        source.decoder[2][1].weight.mul_(40.0)
        source.decoder[2][1].bias.fill_(128.0)
    photos = torch.rand(4, 3, 40, 40) * 255
    student = TransformerNet(ArchConfig(width=8, res_blocks=1, last_kernel=9)).eval()
    loaded, rms = warm_start(student, source, source, photos)
    assert loaded == len(student.state_dict()) and rms is None  # equal heads: copied, not fitted

    def error(net: TransformerNet) -> float:
        with torch.no_grad():
            return float((net(photos) - source(photos)).pow(2).mean().sqrt())

    for spec in ("width=8,res_blocks=1,last_kernel=3", "width=8,res_blocks=1,head=shuffle,last_kernel=3"):
        resampled, fitted = (TransformerNet(ArchConfig.from_spec(spec)).eval() for _ in range(2))
        warm_start(resampled, source)
        loaded, rms = warm_start(fitted, source, source, photos)
        assert torch.equal(fitted.state_dict()["encoder.0.0.1.weight"], source.state_dict()["encoder.0.0.1.weight"])
        assert rms is not None and error(fitted) < 0.9 * error(resampled), (spec, error(resampled), error(fitted))
    copy = TransformerNet(source.config).eval()  # the source's own layers, its output conv wiped: the fit recovers it
    copy.load_state_dict(source.state_dict())
    with torch.no_grad():
        copy.decoder[2][1].weight.zero_()
        copy.decoder[2][1].bias.zero_()
    assert fit_output_conv(copy, source, photos) < 1e-2 and error(copy) < 1e-2
    kernel = torch.randn(3, 8, 9, 9)
    assert torch.allclose(resample_kernel(kernel, 3).sum(dim=(2, 3)), kernel.sum(dim=(2, 3)), atol=1e-4)


def test_warm_start_refuses_an_unrelated_net_and_distill_cli_says_so(tmp_path, photos, tiny_vgg):
    from stylecast.compress.warm_start import warm_start
    from stylecast.runtime.errors import StylecastError

    with pytest.raises(StylecastError, match="shares no layer"):
        warm_start(TransformerNet(ArchConfig(width=8, res_blocks=1)), torch.nn.Conv2d(1, 1, 1))
    teacher = _write_teacher(tmp_path / "teacher.safetensors")
    run = run_cli(*distill_args(teacher, photos, tiny_vgg, tmp_path / "s.safetensors", tmp_path / "r", 1),
                  "--init", str(teacher), "--warm-start", "--arch", "width=8,res_blocks=1,head=shuffle,last_kernel=3")
    assert run.returncode == 0, run.stderr
    assert "output conv fitted to the teacher" in run.stdout + run.stderr
    assert read_metadata(tmp_path / "s.safetensors")["method"] == "warm-start+distill"


def test_select_takes_the_fastest_deployed_passing_student_and_says_when_there_is_none():
    from stylecast.compress.pipeline import select
    from stylecast.compress.students import pareto
    from stylecast.runtime.errors import StylecastError

    def row(ssim: float, ov_int8: float, meets: dict, int8_ok: bool = True, flops: float = 20.0) -> dict:
        return {"ssim": ssim, "gflops": {"512": flops}, "int8_passed": int8_ok, "meets": meets,
                "meets_target": all(meets.values()),
                "latency_ms": {"ORT fp32": 300.0, "OpenVINO int8": ov_int8, "OpenVINO fp32": "not run: x"}}

    ok = {"flops_ratio": True, "ssim": True, "style_delta": True}
    rows = {"teacher": row(1.0, 600.0, ok, flops=80.0), "small": row(0.92, 120.0, ok, flops=15.0),
            "fast": row(0.91, 90.0, ok, flops=19.0), "broken_int8": row(0.93, 50.0, ok, int8_ok=False)}
    assert select(rows, "teacher") == "fast"  # the deployed engine decides, not FLOPs; a failed int8 does not count
    rows["dominated"] = row(0.90, 130.0, ok)
    assert pareto({k: v for k, v in rows.items() if k != "teacher"}) == ["small", "fast", "broken_int8"]
    near = {"flops_ratio": True, "ssim": True, "style_delta": False}
    far = {"flops_ratio": True, "ssim": False, "style_delta": False}
    rows = {"teacher": rows["teacher"], "a": row(0.95, 90.0, far), "b": row(0.90, 95.0, near)}
    assert select(rows, "teacher") == "b"  # none passes: the one meeting most checks, then SSIM
    with pytest.raises(StylecastError, match="no student"):
        select({"teacher": rows["teacher"]}, "teacher")


def test_a_student_beside_another_teacher_than_its_own_is_refused(tmp_path, photos):
    """bench, export and serve load through the same checks: a student whose teacher beside it changed since it was
    distilled is refused in one line naming `make ship`, as a checkpoint and as an export."""
    from stylecast.runtime.errors import StylecastError

    teacher = _write_teacher(tmp_path / "tiny.safetensors")
    student = tmp_path / "tiny-slim.safetensors"
    save_model(student, TransformerNet(ArchConfig(width=8, res_blocks=1)),
               {"style": "tiny", "steps": "0", "teacher_sha256": hashlib.sha256(teacher.read_bytes()).hexdigest()})
    assert load_model(student).meta["style"] == "tiny"  # its own teacher beside it
    out = tmp_path / "artifacts"
    for name in ("tiny", "tiny-slim"):
        exported = run_cli("export", str(tmp_path / f"{name}.safetensors"), "--out", str(out), "--precision", "fp32",
                           "--parity-images", str(photos))
        assert exported.returncode == 0, exported.stderr
    Stylizer(out / "tiny-slim.fp32.onnx").close()

    _write_teacher(teacher, width=8)  # the shipped teacher retrained: another file
    with pytest.raises(StylecastError, match="make ship STYLE=tiny"):
        load_model(student)
    refused = run_cli("export", str(student), "--out", str(out), "--precision", "fp32", "--parity-images", str(photos))
    assert refused.returncode == 2 and "make ship STYLE=tiny" in refused.stderr and "Traceback" not in refused.stderr
    assert run_cli("export", str(teacher), "--out", str(out), "--precision", "fp32", "--parity-images",
                   str(photos)).returncode == 0  # its export follows it
    with pytest.raises(StylecastError, match=r"tiny-slim\.fp32\.onnx: distilled from another tiny teacher"):
        Stylizer(out / "tiny-slim.fp32.onnx")
    alone = tmp_path / "deployed"
    alone.mkdir()
    (alone / "tiny-slim.fp32.onnx").write_bytes((out / "tiny-slim.fp32.onnx").read_bytes())
    Stylizer(alone / "tiny-slim.fp32.onnx").close()  # a student deployed without its teacher is not judged
