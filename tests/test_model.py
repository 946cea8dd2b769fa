import pytest
import torch

from stylecast.train.losses import LossWeights, PerceptualLoss, gram_matrix, total_variation
from stylecast.train.model import ArchConfig, TransformerNet, count_parameters
from stylecast.train.vgg import VGGFeatures, layer_names


def test_johnson_default_size():
    # Johnson et al.'s net: 1.68 M parameters at width 32 with 5 residual blocks.
    assert count_parameters(TransformerNet()) == pytest.approx(1.68e6, rel=0.01)


@pytest.mark.parametrize("height,width", [(32, 32), (33, 47), (21, 64)])
def test_output_matches_any_input_size(height, width):
    net = TransformerNet(ArchConfig(width=4, res_blocks=1)).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, height, width) * 255)
    assert out.shape == (2, 3, height, width)
    assert out.min() >= 0 and out.max() <= 255


def test_training_mode_is_not_clamped_so_gradients_flow():
    net = TransformerNet(ArchConfig(width=4, res_blocks=1)).train()
    with torch.no_grad():
        net.decoder[-1][1].bias.fill_(1000.0)
    assert net(torch.rand(1, 3, 16, 16) * 255).max() > 255


def test_arch_config_round_trip_and_rejects_unknown_fields():
    config = ArchConfig(width=16, res_blocks=3, last_kernel=3)
    assert ArchConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown"):
        ArchConfig.from_json('{"width": 8, "wings": 2}')


def test_gram_matrix_normalised_by_size():
    features = torch.ones(1, 2, 4, 4)
    features[:, 1] = 2.0
    gram = gram_matrix(features)
    expected = torch.tensor([[1.0, 2.0], [2.0, 4.0]]) * 16 / (2 * 16)
    assert torch.allclose(gram[0], expected)


def test_total_variation_zero_for_flat_image_positive_for_edges():
    flat = torch.full((1, 3, 8, 8), 128.0)
    assert total_variation(flat) == 0
    edged = flat.clone()
    edged[..., 4:] = 0
    assert total_variation(edged) > 0


def test_vgg_layer_names():
    assert layer_names("vgg16")[:4] == ["relu1_1", "relu1_2", "relu2_1", "relu2_2"]
    assert len(layer_names("vgg19")) == 16


def test_perceptual_loss_is_zero_where_it_should_be(tiny_vgg):
    weights = LossWeights()
    vgg = VGGFeatures("vgg16", [weights.content_layer, *weights.style_layers], tiny_vgg)
    image = torch.rand(1, 3, 32, 32) * 255
    loss = PerceptualLoss(vgg, image, weights)
    terms = loss(image, image)
    # Output == content gives zero content loss; output == style image gives zero style loss.
    assert terms["content"].item() == 0
    assert terms["style"].item() == pytest.approx(0, abs=1e-3)
    other = loss(torch.rand(1, 3, 32, 32) * 255, image)
    assert other["content"] > 0 and other["style"] > 0


def test_vgg_rejects_unknown_layer(tiny_vgg):
    from stylecast.runtime.errors import StylecastError

    with pytest.raises(StylecastError, match="relu9_9"):
        VGGFeatures("vgg16", ["relu9_9"], tiny_vgg)


def test_fp16_model_files_are_half_the_size_and_load_as_fp32(tmp_path):
    """The shipped model files store fp16 weights: half the bytes, loaded back as fp32, outputs within a grey level."""
    from stylecast.runtime.errors import StylecastError
    from stylecast.train.checkpoint import load_model, save_model

    torch.manual_seed(0)
    net = TransformerNet(ArchConfig(width=8, res_blocks=1)).eval()
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_model(full, net, {"style": "tiny"})
    save_model(half, net, {"style": "tiny", "weights_dtype": "fp32"}, "fp16")  # the argument wins over meta
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    assert loaded.meta["weights_dtype"] == "fp16" and load_model(full).meta["weights_dtype"] == "fp32"
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    image = torch.rand(1, 3, 40, 40) * 255
    with torch.no_grad():
        assert (loaded.model(image).round() - net(image).round()).abs().max() <= 1
    with pytest.raises(StylecastError, match="choose fp32 or fp16"):
        save_model(tmp_path / "x.safetensors", net, {}, "int4")
    with torch.no_grad():
        net.decoder[-1][1].bias.fill_(1e6)  # beyond fp16's 65504
    with pytest.raises(StylecastError, match="--model-weights fp32"):
        save_model(tmp_path / "big.safetensors", net, {}, "fp16")
    assert not (tmp_path / "big.safetensors").exists()
