"""model=open_clip on a random-init ViT-B-32 at 64 px: the image tower is the network, its
output is the layer ``embedding``, the text tower is not kept, and renders rise."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("open_clip")

from featviz.app.build import build_run
from featviz.errors import ConfigError, WeightsError
from featviz.models import FeatureModel, build_model
from featviz.models.layout import Layout
from featviz.render import render


@pytest.fixture(scope="module")
def clip() -> FeatureModel:
    return build_model("open_clip", weights="none", arch="ViT-B-32", input_size=64)


def test_the_image_tower_is_the_network_and_its_embedding_a_layer(clip: FeatureModel) -> None:
    assert clip.input_size == 64 and clip.name == "open_clip:ViT-B-32"
    assert {"embedding", "transformer.resblocks.11", "conv1"} <= set(clip.layer_names)
    shapes = clip.layer_shapes(64, ["embedding", "transformer.resblocks.3"])
    assert shapes["embedding"] == (512,) and shapes.layouts["embedding"] == Layout("vector")
    assert shapes["transformer.resblocks.3"] == (768, 2, 2) and shapes.layouts["transformer.resblocks.3"] == Layout("tokens", 1)
    # No text tower in the model: only the image tower's ~88M parameters (CLIP has ~151M).
    assert not any(name.startswith(("token_embedding", "ln_final")) for name, _ in clip.net.named_parameters())
    assert sum(p.numel() for p in clip.parameters()) < 90e6
    with torch.no_grad():
        x = torch.rand(2, 3, 64, 64)
        assert torch.equal(clip(x, ["embedding"])["embedding"], clip(x)["logits"])


def test_the_text_embeddings_are_unit_vectors_and_the_same_on_every_build(clip: FeatureModel) -> None:
    text = clip.text_encoder(["a dog", "a cat"])
    assert text.shape == (2, 512) and torch.allclose(text.norm(dim=1), torch.ones(2))
    again = build_model("open_clip", weights="none", arch="ViT-B-32", input_size=64).text_encoder(["a dog"])
    assert torch.allclose(again[0], text[0], atol=1e-5)  # the same random init (a batch of one rounds differently)


def test_a_channel_of_a_residual_block_rises(clip: FeatureModel) -> None:
    cfg = {"model": {"name": "open_clip", "arch": "ViT-B-32"}, "objective": {"kind": "channel", "layer": "transformer.resblocks.4", "unit": 11},
           "param": {"kind": "fft", "size": 64}, "steps": 3, "device": "cpu", "metrics": {"enabled": False}, "optimizer": {"lr": 0.1}}
    parts = build_run(cfg, model=clip)
    result = render(parts.model, parts.objective, parts.param, parts.transforms, parts.regularizers, parts.optimizer,
                    steps=3, generator=parts.generator, device="cpu", callbacks=parts.callbacks)
    assert result.history[-1]["objective"] > result.history[0]["objective"]


def test_weights_a_file_or_a_missing_tag(tmp_path, monkeypatch) -> None:
    import open_clip
    from huggingface_hub import constants

    full = open_clip.create_model("ViT-B-32", force_image_size=64)
    state = {k: v + 0.01 for k, v in full.state_dict().items()}
    torch.save(state, tmp_path / "clip.pt")
    model = build_model("open_clip", weights=str(tmp_path / "clip.pt"), arch="ViT-B-32", input_size=64)
    assert torch.equal(model.net.conv1.weight, state["visual.conv1.weight"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError) as err:
        build_model("open_clip", weights="openai", arch="ViT-B-32")
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value) and "model.weights=/path/" in str(err.value)
    with pytest.raises(WeightsError, match="laion2b_s34b_b79k"):
        build_model("open_clip", weights="no_such_tag", arch="ViT-B-32")
    with pytest.raises(ConfigError, match="pretrained tag"):
        build_model("open_clip", weights="imagenet", arch="ViT-B-32")
