"""The two architectures against architecture.md: shapes, ranges, exact parameter counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from celebae import MODELS, CelebaeError, ConvAutoencoder, PoolAutoencoder, Settings, build_model, count_parameters
from celebae.data import draw_face, to_unit_range
from celebae.models import CodeConv2d, CodeConvTranspose2d
from celebae.quality.losses import get_loss
from celebae.training.checkpoint import load_weights, read_metadata, save_weights
from celebae.training.loop import train_step
from celebae.use.export import Decoder, Encoder
from celebae.use.export import onnx as export_onnx

# architecture.md's table: nf → (encoder, decoder, total)
CONV_PARAMS = {
    16: (1_747_168, 1_746_656, 3_493_824),
    32: (4_886_464, 4_885_952, 9_772_416),
    64: (15_342_976, 15_342_464, 30_685_440),
    128: (52_967_680, 52_967_168, 105_934_848),
}
CASES = [("conv", nf) for nf in CONV_PARAMS] + [("pool", 16)]


def expected_params(name: str, nf: int) -> tuple[int, int, int]:
    if name == "conv":
        return CONV_PARAMS[nf]
    enc, dec = 160 * nf * nf + 62 * nf, 160 * nf * nf + 54 * nf  # 41,952 + 41,824 at nf = 16
    return enc, dec, enc + dec


def layer_shapes(name: str, nf: int) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Each encoder and decoder layer's output (C, H, W), from architecture.md's tables."""
    a = nf
    if name == "conv":
        enc = [(a, 64, 64), (2 * a, 32, 32), (4 * a, 16, 16), (8 * a, 8, 8), (16 * a, 4, 4), (256, 1, 1)]
        dec = [(16 * a, 4, 4), (8 * a, 8, 8), (4 * a, 16, 16), (2 * a, 32, 32), (a, 64, 64), (3, 128, 128)]
    else:
        enc = [(a, 64, 64), (a, 32, 32), (2 * a, 16, 16), (2 * a, 8, 8), (4 * a, 4, 4), (4 * a, 2, 2)]
        dec = [(4 * a, 4, 4), (2 * a, 8, 8), (2 * a, 16, 16), (a, 32, 32), (a, 64, 64), (3, 128, 128)]
    return enc, dec


@pytest.mark.parametrize("name,nf", CASES)
def test_parameter_counts_match_the_table(name: str, nf: int) -> None:
    model = build_model(name, nf=nf)
    enc, dec, total = expected_params(name, nf)
    assert count_parameters(model.encoder) == enc
    assert count_parameters(model.decoder) == dec
    assert count_parameters(model) == total


def test_conv_nf64_has_the_authors_published_count() -> None:
    assert count_parameters(build_model("conv", nf=64)) == 30_685_440


@pytest.mark.parametrize("name,nf", CASES)
def test_every_layer_output_shape(name: str, nf: int) -> None:
    model = build_model(name, nf=nf).eval()
    enc_shapes, dec_shapes = layer_shapes(name, nf)
    h = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        for layer, shape in zip(model.encoder, enc_shapes, strict=True):
            h = layer(h)
            assert tuple(h.shape[1:]) == shape, layer
        assert model.code_size == 256 if nf == 16 or name == "conv" else 16 * nf
        for layer, shape in zip(model.decoder, dec_shapes, strict=True):
            h = layer(h)
            assert tuple(h.shape[1:]) == shape, layer


@pytest.mark.parametrize("name,nf", CASES)
def test_forward_encode_decode(name: str, nf: int) -> None:
    model = build_model(name, nf=nf).eval()
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        z = model.encode(x)
        y = model(x)
        assert z.shape == (2, 256)
        assert y.shape == x.shape
        assert torch.equal(model.decode(z), y)
        assert y.min() >= -1 and y.max() <= 1
        assert y.std() > 0  # not a constant output


def test_layers_are_kernel4_without_bias_and_activations_as_stated() -> None:
    model = build_model("conv", nf=16, slope=0.2)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 12
    assert all(m.kernel_size == (4, 4) and m.bias is None for m in convs)
    assert [m.negative_slope for m in model.encoder.modules() if isinstance(m, nn.LeakyReLU)] == [0.2] * 6
    assert sum(isinstance(m, nn.ReLU) for m in model.decoder.modules()) == 5
    assert isinstance(model.decoder[-1][-1], nn.Tanh)
    # slope 1.0 is the authors' code as written (LeakyReLU(True)): the encoder is linear
    authors = build_model("conv", nf=16, slope=1.0)
    assert {m.negative_slope for m in authors.modules() if isinstance(m, nn.LeakyReLU)} == {1.0}


@pytest.mark.parametrize("fast,plain", [(CodeConv2d, nn.Conv2d), (CodeConvTranspose2d, nn.ConvTranspose2d)])
def test_code_layers_compute_what_the_plain_convolutions_do(fast: type, plain: type) -> None:
    torch.manual_seed(0)
    a, b = fast(32, 24, 4, 1, 0, bias=False), plain(32, 24, 4, 1, 0, bias=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 32, *((4, 4) if plain is nn.Conv2d else (1, 1)), requires_grad=True)
    ya, yb = a(x), b(x)
    assert ya.shape == yb.shape == ((5, 24, 1, 1) if plain is nn.Conv2d else (5, 24, 4, 4))
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ya)
    ga = torch.autograd.grad(ya, (x, a.weight), g)
    gb = torch.autograd.grad(yb, (x, b.weight), g)
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)
    # any other shape takes the ordinary path
    x8 = torch.randn(2, 32, 8, 8)
    torch.testing.assert_close(a(x8), b(x8))


def test_separate_encoder_and_decoder_widths() -> None:
    model = build_model("conv", nf_enc=16, nf_dec=32)
    a, b = 16, 32
    assert count_parameters(model.encoder) == 2720 * a * a + 65646 * a + 512
    assert count_parameters(model.decoder) == 2720 * b * b + 65646 * b
    assert isinstance(model, ConvAutoencoder)
    assert isinstance(build_model("pool"), PoolAutoencoder)


def test_bad_model_requests_are_one_line_errors() -> None:
    with pytest.raises(CelebaeError, match="unknown model 'vae'"):
        build_model("vae")
    with pytest.raises(CelebaeError, match="model .pool. does not take nf_enc"):
        build_model("pool", nf=16, nf_enc=32)
    with pytest.raises(CelebaeError, match="nf must be a positive"):
        build_model("conv", nf=0)


# ---- the contract every registered model keeps -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registered_model_contract(name: str, tmp_path) -> None:
    """Shapes and range, code size, the reported parameter count, learning, export tracing, and a rebuild
    from a checkpoint's metadata: what sweeps, tools and export rely on, for every model in the registry."""
    spec = MODELS[name]
    if spec.reported_params is not None:
        assert count_parameters(build_model(name)) == spec.reported_params
    torch.manual_seed(0)
    model = build_model(name, **spec.small)
    x = to_unit_range(torch.from_numpy(np.stack([draw_face(i) for i in range(4)])))
    assert x.shape[1:] == model.image_shape
    model.eval()
    with torch.no_grad():
        z, y = model.encode(x), model(x)
    assert z.shape == (4, model.code_size) and y.shape == x.shape
    assert y.min() >= -1 and y.max() <= 1 and y.std() > 0

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [
        train_step(model, optimizer, x, get_loss("mse"), "fp32", torch.device("cpu"))[0].item() for _ in range(10)
    ]
    assert losses[-1] < 0.8 * losses[0], losses

    model.eval()
    traced = torch.jit.trace(Encoder(model), x, check_trace=False)
    torch.testing.assert_close(traced(x), model.encode(x))
    onnx = tmp_path / "encoder.onnx"
    export_onnx(Decoder(model), z, onnx, "code", "images")
    import onnxruntime

    (decoded,) = onnxruntime.InferenceSession(str(onnx)).run(None, {"code": z.numpy()})
    np.testing.assert_allclose(decoded, model.decode(z).detach().numpy(), atol=1e-4)

    settings = Settings(model=name, model_args=dict(spec.small))
    weights = tmp_path / "w.safetensors"
    save_weights(model, weights, settings.to_dict(), {})
    stored = Settings.from_dict(read_metadata(weights)["settings"])
    rebuilt = build_model(stored.model, **stored.model_kwargs())
    load_weights(rebuilt, weights)
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_own_their_arguments(name: str) -> None:
    spec = MODELS[name]
    with pytest.raises(CelebaeError, match=f"model '{name}' does not take colour; it takes"):
        build_model(name, colour=3)
    with pytest.raises(CelebaeError, match=f"model '{name}' does not take colour"):
        Settings(model=name, model_args={"colour": 3})
    assert set(spec.small) <= set(spec.defaults)
    assert spec.description in Settings.__dataclass_fields__["model"].metadata["help"]


# ---- Model 3, lincode: Model 1's stages with a linear code --------------------------------------------------------


@pytest.mark.parametrize("nf,code", [(16, 256), (32, 32)])
def test_lincode_parameters_and_shapes(nf: int, code: int) -> None:
    from celebae.models import LinearCodeAutoencoder

    model = build_model("lincode", nf=nf, code_size=code).eval()
    a = nf
    # Model 1's counts, with its 256-number code layer (4×4 weights and a BatchNorm of 512 parameters) replaced
    # by a K-number one: 4×4 weights and a bias in the encoder, 4×4 weights in the decoder
    code_weights = 16 * a * 16
    assert count_parameters(model.encoder) == 2720 * a * a + 65646 * a + 512 - 512 - code_weights * 256 + (
        code_weights * code + code
    )
    assert count_parameters(model.decoder) == 2720 * a * a + 65646 * a - code_weights * 256 + code_weights * code
    assert isinstance(model, LinearCodeAutoencoder) and model.code_size == code
    shapes = [(a, 64, 64), (2 * a, 32, 32), (4 * a, 16, 16), (8 * a, 8, 8), (16 * a, 4, 4), (code, 1, 1)]
    h = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        for layer, shape in zip(model.encoder, shapes, strict=True):
            h = layer(h)
            assert tuple(h.shape[1:]) == shape
    assert isinstance(model.encoder[-1], CodeConv2d) and model.encoder[-1].bias is not None


def test_lincode_s_code_is_linear_in_the_last_stage() -> None:
    model = build_model("lincode", nf=4).eval()
    x = torch.rand(3, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        features = model.encoder[:-1](x)
        code = model.encode(x)
        mixed = model.encoder[-1](0.3 * features[:1] + 0.7 * features[1:2]).flatten(1)
    torch.testing.assert_close(mixed, 0.3 * code[:1] + 0.7 * code[1:2], rtol=1e-4, atol=1e-5)  # affine: no norm, no act
    assert (code < 0).float().mean() > 0.2  # negative values pass unsquashed (no LeakyReLU on the code)


def test_lincode_with_group_norm_is_the_same_function_in_training_and_evaluation() -> None:
    torch.manual_seed(0)
    model = build_model("lincode", nf=8, norm="group")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.rand(4, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        trained_mode = model.train()(x)
        eval_mode = model.eval()(x)
        alone = model(x[:1])
    torch.testing.assert_close(trained_mode, eval_mode)
    torch.testing.assert_close(alone, eval_mode[:1], rtol=1e-4, atol=1e-5)  # no image depends on its batch-mates
    with pytest.raises(CelebaeError, match="norm must be one of batch, group"):
        build_model("lincode", norm="layer")
