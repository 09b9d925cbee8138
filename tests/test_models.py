import pytest
import torch

from askknn.models import create_model, list_models
from askknn.shared import ParamError

SHAPES = {
    "small_cnn": ((1, 28, 28), {"conv1": 16 * 14 * 14, "conv2": 32 * 7 * 7, "conv3": 64 * 7 * 7,
                                "conv4": 64 * 3 * 3, "conv5": 128}),
    "vgg16_bn": ((3, 32, 32), {"conv1": 64 * 16 * 16, "conv2": 128 * 8 * 8, "conv3": 256 * 4 * 4,
                               "conv4": 512 * 2 * 2, "conv5": 512}),
    "resnet18": ((3, 128, 128), {"conv1": 64 * 32 * 32, "conv2": 128 * 16 * 16, "conv3": 256 * 8 * 8,
                                 "conv4": 512 * 4 * 4, "conv5": 512}),
}


def test_every_registered_model_is_covered():
    assert sorted(SHAPES) == list_models()


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_layer_taps_have_the_documented_names_and_shapes(name):
    shape, dims = SHAPES[name]
    model = create_model(name, num_classes=10, in_channels=shape[0]).eval()
    x = torch.rand(2, *shape)
    feats = model.features(x, list(dims))
    assert {k: v.shape[1] for k, v in feats.items()} == dims
    logits, tapped = model.forward_with_features(x, ["conv3"])
    assert logits.shape == (2, 10)
    torch.testing.assert_close(tapped["conv3"], feats["conv3"])
    torch.testing.assert_close(logits, model(x))


def test_features_stop_at_the_deepest_requested_layer():
    model = create_model("small_cnn", in_channels=1).eval()
    called = []
    for name, block in model.blocks.items():
        block.register_forward_hook(lambda *_, name=name: called.append(name))
    model.features(torch.rand(1, 1, 28, 28), ["conv3"])
    assert called == ["conv1", "conv2", "conv3"]


def test_unknown_model_and_layer_are_rejected_with_the_choices():
    with pytest.raises(ParamError, match="small_cnn"):
        create_model("vgg19")
    with pytest.raises(ParamError, match="conv6.*conv1"):
        create_model("small_cnn", in_channels=1).features(torch.rand(1, 1, 28, 28), ["conv6"])


def test_width_scales_vgg16_bn_and_keeps_its_taps():
    model = create_model("vgg16_bn", width=0.25).eval()
    convs = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    feats = model.features(torch.rand(2, 3, 32, 32), ["conv3", "conv4"])
    assert {k: v.shape[1] for k, v in feats.items()} == {"conv3": 64 * 4 * 4, "conv4": 128 * 2 * 2}
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    full = sum(p.numel() for p in create_model("vgg16_bn").parameters())
    assert sum(p.numel() for p in model.parameters()) < full / 10


def test_width_on_a_model_without_it_names_the_models_that_have_it():
    with pytest.raises(ParamError, match="model 'small_cnn' has no width option.*vgg16_bn"):
        create_model("small_cnn", in_channels=1, width=0.5)
    with pytest.raises(ParamError, match="model.width = 0 must be positive"):
        create_model("vgg16_bn", width=0)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_models_are_channels_last_and_their_features_keep_the_chw_order(name):
    shape, dims = SHAPES[name]
    model = create_model(name, num_classes=10, in_channels=shape[0]).eval()
    kernels = [p for p in model.parameters() if p.dim() == 4]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    plain = create_model(name, num_classes=10, in_channels=shape[0]).to(memory_format=torch.contiguous_format)
    plain.load_state_dict(model.state_dict())
    x = torch.rand(2, *shape)
    with torch.no_grad():
        ours, reference = model.features(x, list(dims)), plain.eval().features(x, list(dims))
    for layer in dims:   # the same vector, entry by entry, as the NCHW model's (up to rounding)
        torch.testing.assert_close(ours[layer], reference[layer], rtol=1e-4, atol=1e-5)
