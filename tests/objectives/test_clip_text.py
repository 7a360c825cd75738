"""objective=clip_text: an image's cosine similarity with a prompt in a random-init open_clip ViT-B-32.

The tower runs at 64 px (a 2x2 patch grid) so a step is cheap; at random init the text
embeddings of two prompts still differ, so their gradients must, and an image optimized for
one prompt must come out closer to it than to the other.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("open_clip")

from featviz.app.build import build_run
from featviz.errors import ConfigError
from featviz.models import FeatureModel, build_model
from featviz.objectives import ClipText, build_objective, clip_text
from featviz.render import render

A, B = "a photo of a dog", "a red sports car on a road"


@pytest.fixture(scope="module")
def clip() -> FeatureModel:
    return build_model("open_clip", weights="none", arch="ViT-B-32", input_size=64)


def _render(model: FeatureModel, objective: dict, batch: int = 1, steps: int = 8, **extra: object) -> torch.Tensor:
    cfg = {"model": {"name": "open_clip"}, "objective": objective, "param": {"kind": "fft", "size": 64}, "batch": batch,
           "steps": steps, "device": "cpu", "metrics": {"enabled": False}, "optimizer": {"lr": 0.1}, **extra}
    parts = build_run(cfg, model=model)
    result = render(parts.model, parts.objective, parts.param, parts.transforms, parts.regularizers, parts.optimizer,
                    steps=steps, generator=parts.generator, device="cpu", callbacks=parts.callbacks)
    assert result.history[-1]["objective"] > result.history[0]["objective"]
    return result.images


def _scores(model: FeatureModel, images: torch.Tensor, *prompts: str) -> torch.Tensor:
    """``[B, P]``: each image's cosine similarity with each prompt."""
    with torch.no_grad():
        image = F.normalize(model(images, ["embedding"])["embedding"], dim=1)
    return image @ model.text_encoder(list(prompts)).T


def test_the_score_is_the_cosine_with_the_prompt_and_a_list_pairs_image_i_with_prompt_i() -> None:
    text = F.normalize(torch.randn(2, 8), dim=1)
    image = torch.randn(2, 8)
    acts = {"embedding": image}
    one = ClipText(text[:1], ["a"])
    assert torch.allclose(one(acts), F.cosine_similarity(image, text[:1].expand(2, -1)))
    pair = ClipText(text, ["a", "b"])
    assert torch.allclose(pair(acts), F.cosine_similarity(image, text))
    with pytest.raises(ConfigError, match="batch=2"):
        pair.validate({"embedding": (8,)}, batch=3)
    with pytest.raises(ConfigError, match="objective.layer=embedding"):
        one.validate({"embedding": (16,)}, batch=1)
    # It composes like every objective: A - B, a weight, one image of the batch.
    both = (2.0 * one - ClipText(text[1:], ["b"])).batch(1)
    expected = 2 * F.cosine_similarity(image[1], text[0], dim=0) - F.cosine_similarity(image[1], text[1], dim=0)
    assert torch.allclose(both(acts), torch.stack([torch.tensor(0.0), expected]))


def test_without_a_clip_model_it_is_one_line_naming_open_clip() -> None:
    with pytest.raises(ConfigError, match="model=open_clip"):
        build_objective("clip_text", text=A)
    with pytest.raises(ConfigError, match="empty"):
        clip_text(lambda prompts: torch.zeros(len(prompts), 4), "  ")


def test_two_prompts_give_different_gradients(clip: FeatureModel) -> None:
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    grads = []
    for prompt in (A, B):
        x = image.clone().requires_grad_(True)
        build_objective("clip_text", text=prompt, encode_text=clip.text_encoder)(clip(x, ["embedding"])).sum().backward()
        grads.append(x.grad.flatten())
    assert grads[0].abs().sum() > 0
    assert F.cosine_similarity(grads[0], grads[1], dim=0) < 0.95


def test_an_image_optimized_for_a_prompt_scores_higher_on_it_than_on_another(clip: FeatureModel) -> None:
    """A list of prompts gives one image per prompt: image 0 is optimized for A, image 1 for B."""
    images = _render(clip, {"kind": "clip_text", "text": [A, B]}, batch=2)
    score = _scores(clip, images, A, B)
    assert score[0, 0] > score[0, 1] and score[1, 1] > score[1, 0], score


def test_a_difference_of_prompts_composes_with_diversity(clip: FeatureModel) -> None:
    # A minus B, with the diversity term on a batch of two.
    terms = [{"kind": "clip_text", "text": A}, {"kind": "clip_text", "text": B, "weight": -1.0}]
    images = _render(clip, {"kind": "sum", "terms": terms}, batch=2, steps=4, regularizer={"diversity": 0.1})
    score = _scores(clip, images, A, B)
    assert (score[:, 0] > score[:, 1]).all(), score
