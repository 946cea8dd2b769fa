"""Multi-style nets (conditional instance normalisation): the model, its checkpoints, joint training and adding a
style, on tiny nets (width 4, one residual block, 32 px crops, a few steps)."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file, save_file

from stylecast.runtime.artifacts import FORMAT_KEY
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.styles_catalog import parse_style_choice, style_weights
from stylecast.train.checkpoint import collapse_styles, load_model, save_model, widen_to_styles
from stylecast.train.model import ArchConfig, ConditionalInstanceNorm, TransformerNet, style_vector
from stylecast.train.settings import Span

ROOT = Path(__file__).resolve().parent.parent
TINY = {"width": 4, "res_blocks": 1}
# The command line's settings of every run here: tiny, fast and on the CPU.
GIVEN = {"steps": 2, "batch": 1, "crop": 32, "scale": Span([32, 40]), "log_every": 1, "checkpoint_every": 1,
         "device": "cpu", "precision": "fp32", "exclude": "", "model_weights": "fp32", **TINY}


def _random_rows(net: TransformerNet, seed: int = 0) -> TransformerNet:
    """Distinct scale and shift rows per style (fresh ones are all 1 and 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, ConditionalInstanceNorm):
                module.scale.copy_(1 + 0.3 * torch.randn(module.scale.shape, generator=generator))
                module.shift.copy_(0.3 * torch.randn(module.shift.shape, generator=generator))
    return net.eval()


@pytest.fixture
def styles_dir(tmp_path, style_image) -> Path:
    """Presets a, b, c (other paintings, each its own loss) and x, the style added later."""
    folder = tmp_path / "styles"
    folder.mkdir()
    painting = Image.open(style_image).convert("RGB")
    variants = {"a": painting, "b": ImageOps.mirror(painting), "c": ImageOps.invert(painting),
                "x": ImageOps.grayscale(painting).convert("RGB")}
    for index, (name, image) in enumerate(variants.items()):
        image.save(folder / f"{name}.jpg")
        (folder / f"{name}.toml").write_text(f'image = "{name}.jpg"\nstyle_size = {40 + 8 * index}\n'
                                             f"content_weight = {index + 1}e5\n")
    return folder


def test_single_style_nets_are_unchanged_and_shipped_checkpoints_load():
    """One style: the arch string, parameter names and module tree of every existing checkpoint."""
    config = ArchConfig(width=16, input_pad=8)
    assert config.to_json() == '{"first_kernel": 9, "input_pad": 8, "last_kernel": 9, "res_blocks": 5, "width": 16}'
    assert "styles" not in config.to_spec()
    net = TransformerNet(ArchConfig(**TINY))
    assert not any(isinstance(m, ConditionalInstanceNorm) for m in net.modules())
    assert {"encoder.0.1.weight", "encoder.0.1.bias", "residuals.0.body.2.weight"} <= set(net.state_dict())
    image = torch.rand(1, 3, 24, 24) * 255
    with torch.no_grad():
        assert torch.equal(net.eval()(image), net(image, torch.ones(1, 1)))  # the style argument is not needed
    shipped = ROOT / "models" / "wave.safetensors"
    loaded = load_model(shipped)
    assert loaded.model.config.styles == 1 and loaded.styles == [loaded.meta["style"]]
    assert loaded.model.config.to_json() == loaded.meta["arch"]
    assert set(loaded.model.state_dict()) == set(load_file(str(shipped)))
    wide = ArchConfig(**TINY, styles=3)
    assert ArchConfig.from_json(wide.to_json()) == wide and ArchConfig.from_spec(wide.to_spec()) == wide
    assert json.loads(wide.to_json())["styles"] == 3


def test_a_one_hot_style_is_that_rows_affine_and_a_blend_interpolates_it():
    torch.manual_seed(0)
    norm = _random_rows(TransformerNet(ArchConfig(**TINY, styles=3))).encoder[0][1]
    x = torch.randn(2, norm.scale.shape[1], 5, 6)
    style = torch.tensor([[0.0, 1.0, 0.0], [0.25, 0.0, 0.75]])
    mean, var = x.mean(dim=(2, 3), keepdim=True), x.var(dim=(2, 3), unbiased=False, keepdim=True)
    normalised = (x - mean) / torch.sqrt(var + 1e-5)
    rows = [(norm.scale[1], norm.shift[1]), (0.25 * norm.scale[0] + 0.75 * norm.scale[2],
                                             0.25 * norm.shift[0] + 0.75 * norm.shift[2])]
    expected = torch.stack([normalised[i] * g[:, None, None] + b[:, None, None] for i, (g, b) in enumerate(rows)])
    with torch.no_grad():
        assert torch.allclose(norm(x, style), expected, atol=1e-5)

    net = _random_rows(TransformerNet(ArchConfig(**TINY, styles=3)), seed=1)
    image = torch.rand(1, 3, 32, 32) * 255
    blend = style_vector(["a", "b", "c"], parse_style_choice("a=0.4,c=0.6"))
    with torch.no_grad():
        # One pass with the blended gamma/beta: the single-style net of those rows, not a mix of two outputs.
        assert torch.allclose(net(image, blend), collapse_styles(net, blend[0])(image), atol=1e-3)
        a, c = (net(image, style_vector(["a", "b", "c"], {s: 1.0})) for s in "ac")
        assert not torch.allclose(net(image, blend), 0.4 * a + 0.6 * c, atol=1e-2)
        assert not torch.equal(a, c)
    with pytest.raises(ValueError, match="holds 3 styles"):
        net(image)
    with pytest.raises(ValueError, match="holds 3 styles"):
        net(image, torch.ones(1, 2))


def test_checkpoints_name_their_styles_and_widen_from_a_single_style_net(tmp_path):
    torch.manual_seed(0)
    single = TransformerNet(ArchConfig(**TINY)).eval()
    with torch.no_grad():
        single.encoder[0][1].weight.uniform_(0.5, 1.5)
    wide = widen_to_styles(single, 3)
    norms = {name for name, m in single.named_modules() if isinstance(m, torch.nn.InstanceNorm2d)}
    renamed = {"weight": "scale", "bias": "shift"}
    assert set(wide.state_dict()) == {f"{k.rpartition('.')[0]}.{renamed[k.rpartition('.')[2]]}"
                                      if k.rpartition(".")[0] in norms else k for k in single.state_dict()}
    assert wide.state_dict()["encoder.0.1.scale"].shape == (3, 4)
    image = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        for row in range(3):
            assert torch.allclose(wide(image, torch.eye(3)[row:row + 1]), single(image), atol=1e-3)

    path = tmp_path / "three.safetensors"
    save_model(path, wide, {"style": "three", "styles": json.dumps(["a", "b", "c"])})
    assert load_model(path).styles == ["a", "b", "c"]
    with pytest.raises(StylecastError, match="styles"):
        save_model(tmp_path / "nameless.safetensors", wide, {"style": "nameless"})
    bad = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(bad), metadata={
        FORMAT_KEY: "checkpoint", "arch": wide.config.to_json(), "precision": "fp32", "style": "bad",
        "styles": json.dumps(["a", "b"])})  # written by hand: save_model refuses such a list
    with pytest.raises(StylecastError) as refused:
        load_model(bad)
    assert "\n" not in str(refused.value) and str(bad) in str(refused.value)


def test_style_choices_are_parsed_and_checked_without_torch():
    names = ["wave", "starry_night", "composition_viii"]
    assert parse_style_choice("starry_night") == {"starry_night": 1.0}
    assert parse_style_choice(" wave=0.6, starry_night=0.4 ") == {"wave": 0.6, "starry_night": 0.4}
    weights = style_weights(names, {"wave": 3, "starry_night": 1})
    assert weights.dtype == np.float32 and np.allclose(weights, [0.75, 0.25, 0.0])
    with pytest.raises(StylecastError, match=r"unknown style\(s\) \['monet'\]; this model has wave, starry_night"):
        style_weights(names, {"monet": 1.0})
    with pytest.raises(StylecastError, match="negative"):
        style_weights(names, {"wave": 1.5, "starry_night": -0.5})
    with pytest.raises(StylecastError, match="sum to 0"):
        style_weights(names, {"wave": 0.0})
    for text, problem in [("wave=lots", "not a number"), ("wave=1,wave=2", "twice"), ("", "name one style"),
                          ("wave=nan", "finite"), ("=0.5", "plain names")]:
        with pytest.raises(StylecastError, match=problem):
            parse_style_choice(text)


def test_joint_training_takes_each_style_in_turn_and_resumes_exactly(tmp_path, photos, styles_dir, tiny_vgg):
    from stylecast.train.multistyle import JointTrainer, joint_config

    def run(folder: Path, steps: int, resume: bool = False) -> Path:
        config = joint_config(["a", "b", "c"], photos, styles_dir, {**GIVEN, "steps": steps}, name="trio",
                              out=folder / "trio.safetensors", run_dir=folder / "run", loss_net_weights=tiny_vgg)
        return JointTrainer(config).run(resume=resume)

    straight = run(tmp_path / "straight", 3)
    config = joint_config(["a", "b", "c"], photos, styles_dir, GIVEN, loss_net_weights=tiny_vgg)
    assert [t.size for t in config.targets] == [40, 48, 56] and config.crop == 32  # own loss, common settings
    assert [t.loss.content for t in config.targets] == [1e5, 2e5, 3e5] and config.arch.styles == 3
    assert config.out == Path("models/catalogue.safetensors")
    run(tmp_path / "split", 2)
    with pytest.raises(StylecastError, match="--resume"):
        run(tmp_path / "split", 3)
    split = run(tmp_path / "split", 3, resume=True)
    a, b = load_file(str(straight)), load_file(str(split))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    loaded = load_model(split)
    assert loaded.styles == ["a", "b", "c"] and json.loads(loaded.meta["style_image"]) == ["a.jpg", "b.jpg", "c.jpg"]
    with open(tmp_path / "split" / "run" / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert [[name for name in "abc" if r[f"style_{name}"]] for r in rows] == [["a"], ["b"], ["c"]]
    with pytest.raises(StylecastError, match="styles differs"):  # the style list is part of the resume key
        JointTrainer(joint_config(["a", "c", "b"], photos, styles_dir, {**GIVEN, "steps": 4}, name="trio",
                                  run_dir=tmp_path / "split" / "run", loss_net_weights=tiny_vgg)).run(resume=True)


def test_init_seeds_every_style_from_a_single_style_net(tmp_path, photos, styles_dir, tiny_vgg):
    from stylecast.train.multistyle import JointTrainer, joint_config

    torch.manual_seed(3)
    single = tmp_path / "single.safetensors"
    save_model(single, TransformerNet(ArchConfig(**TINY)), {"style": "a", "steps": "500"})
    config = joint_config(["a", "b"], photos, styles_dir, {**GIVEN, "steps": 1}, out=tmp_path / "ab.safetensors",
                          run_dir=tmp_path / "run", loss_net_weights=tiny_vgg, init=single)
    trainer = JointTrainer(config)
    model = TransformerNet(config.arch)
    assert trainer._start_from(single, model) == 0  # a fresh run of new styles counts its own steps
    shipped = load_model(single).model.state_dict()
    assert all(torch.equal(v, shipped[k]) for k, v in model.state_dict().items() if k in shipped)
    assert torch.equal(model.state_dict()["encoder.0.1.scale"][1], shipped["encoder.0.1.weight"])
    assert trainer.run().is_file()


def test_adding_a_style_leaves_the_others_bit_identical(tmp_path, photos, styles_dir, tiny_vgg):
    from stylecast.train.multistyle import AddStyleTrainer, add_style_config

    torch.manual_seed(0)
    base = tmp_path / "models" / "duo.safetensors"
    base.parent.mkdir()
    save_model(base, _random_rows(TransformerNet(ArchConfig(**TINY, styles=2))),
               {"style": "duo", "styles": json.dumps(["a", "b"]), "style_image": json.dumps(["a.jpg", "b.jpg"])},
               "fp16")
    given = {k: v for k, v in GIVEN.items() if k != "model_weights"}  # the base's fp16, unless told otherwise
    with pytest.raises(StylecastError, match="--model-weights fp16"):
        add_style_config("x", base, photos, styles_dir, {**given, "model_weights": "fp32"})
    with pytest.raises(StylecastError, match=r"\['a'\] named twice"):
        add_style_config("a", base, photos, styles_dir, given)
    config = add_style_config("x", base, photos, styles_dir, given, out=tmp_path / "trio.safetensors",
                              run_dir=tmp_path / "run", loss_net_weights=tiny_vgg)
    trainer = AddStyleTrainer(config)
    model, _, optimizer = trainer._build()
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.InstanceNorm2d)} | {
        id(m.bias) for m in model.modules() if isinstance(m, torch.nn.InstanceNorm2d)}
    out = AddStyleTrainer(config).run()

    old, new = load_model(base), load_model(out)
    assert new.styles == ["a", "b", "x"] and new.meta["style"] == "duo" and new.meta["weights_dtype"] == "fp16"
    assert json.loads(new.meta["style_image"]) == ["a.jpg", "b.jpg", "x.jpg"]
    before, after = old.model.state_dict(), new.model.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key][:2] if key.endswith((".scale", ".shift")) else after[key], value), key
    image = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        for row in range(2):
            assert torch.equal(new.model(image, torch.eye(3)[row:row + 1]), old.model(image, torch.eye(2)[row:row + 1]))
        added = new.model(image, torch.eye(3)[2:])
        assert not torch.equal(added, new.model(image, torch.eye(3)[:1]))
    rows = [k for k in after if k.endswith((".scale", ".shift"))]
    start = torch.cat([after[k][:2].mean(0).half().float() for k in rows])  # the new row began as the others' mean
    assert not torch.equal(torch.cat([after[k][2] for k in rows]), start)


@pytest.mark.slow
def test_the_command_line_trains_styles_and_refuses_mixed_requests(tmp_path, photos, styles_dir, tiny_vgg):
    from typer.testing import CliRunner

    from stylecast.cli import app

    common = ["--data", str(photos), "--styles-dir", str(styles_dir), "--loss-net-weights", str(tiny_vgg),
              "--steps", "1", "--batch", "1", "--crop", "32", "--scale", "32,40", "--width", "4", "--res-blocks", "1",
              "--device", "cpu", "--precision", "fp32"]
    out = tmp_path / "ab.safetensors"
    done = CliRunner().invoke(app, ["train", "--styles", "a,b", "--name", "ab", "--out", str(out), "--run-dir",
                                    str(tmp_path / "run"), *common])
    assert done.exit_code == 0, done.output
    assert load_model(out).styles == ["a", "b"] and load_model(out).meta["style"] == "ab"
    for args, problem in [(["--style", "a", "--styles", "a,b"], "name what to train"),
                          (["--add-style", "x"], "go together"),
                          (["--styles", "a,b", "--style-image", str(styles_dir / "a.jpg")], "preset's image"),
                          (["--add-style", "x", "--base", str(out), "--init", str(out)], "starts from --base")]:
        refused = CliRunner().invoke(app, ["train", *args, *common])
        assert isinstance(refused.exception, StylecastError) and problem in str(refused.exception), args


@pytest.mark.slow
def test_a_three_style_net_exports_to_onnx_with_image_and_style_inputs():
    """Exportability only: InstanceNormalization (unit scale), then MatMul/Mul/Add; onnxruntime agrees with torch."""
    ort = pytest.importorskip("onnxruntime")
    from torch.export import Dim

    net = _random_rows(TransformerNet(ArchConfig(**TINY, styles=3)))
    batch = Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (torch.rand(1, 3, 32, 32) * 255, torch.eye(3)[:1]), dynamo=True,
                                    input_names=["image", "style"], output_names=["stylized"], verbose=False,
                                    dynamic_shapes={"x": {0: batch, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC},
                                                    "style": {0: batch}})
    ops = {node.op_type for node in program.model_proto.graph.node}
    assert {"InstanceNormalization", "MatMul", "Mul", "Add"} <= ops
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    image, style = torch.rand(2, 3, 36, 28) * 255, torch.tensor([[0.0, 0.0, 1.0], [0.5, 0.2, 0.3]])
    got = session.run(None, {"image": image.numpy(), "style": style.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - net(image, style).numpy()).max() < 1e-3


@pytest.mark.slow
def test_compiled_bf16_training_gets_finite_gradients():
    """How joint training runs on CPU by default (compiled, bf16 autocast): every gradient must be finite."""
    torch.manual_seed(0)
    net = TransformerNet(ArchConfig(width=8, res_blocks=1, styles=8)).train()
    images, style = torch.rand(2, 3, 64, 64) * 255, torch.eye(8)[:1].repeat(2, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = torch.compile(net)(images, style)
    out.float().mean().backward()
    assert [n for n, p in net.named_parameters() if not torch.isfinite(p.grad).all()] == []
