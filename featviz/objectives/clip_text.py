"""``objective=clip_text``: make the image match a text prompt in a CLIP model's embedding space.

The score is the cosine similarity of the image embedding (the open_clip model's
``embedding`` layer) with the prompt's text embedding. The text embeddings are computed
once, when the objective is built (the model's ``text_encoder``: its text tower run under
``no_grad`` and freed), so a step costs the image tower alone. One prompt scores every
image of the batch; a list of prompts gives one image per prompt (image ``i``, prompt ``i``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from featviz.errors import ConfigError
from featviz.objectives.base import Acts, LayerObjective, Shapes

TextEncoder = Callable[[Sequence[str]], torch.Tensor]


class ClipText(LayerObjective):
    """Cosine similarity of ``layer`` (an image embedding ``[B, D]``) with ``text`` (``[P, D]``).

    ``P`` 1: every image against the one prompt; ``P`` > 1: image ``i`` against prompt ``i``
    (the batch must then be ``P``).
    """

    def __init__(self, text: torch.Tensor, prompts: Sequence[str], layer: str = "embedding") -> None:
        super().__init__(layer)
        if text.dim() != 2 or text.shape[0] != len(prompts):
            raise ConfigError(f"clip_text needs one text embedding per prompt; got {tuple(text.shape)} for {len(prompts)} prompt(s)")
        self.text = F.normalize(text.detach().float(), dim=-1)
        self.prompts = list(prompts)
        self.name = "clip_text(" + " | ".join(repr(p) for p in self.prompts) + ")"

    def validate(self, shapes: Shapes, batch: int) -> None:
        if self.layer in shapes and shapes[self.layer][0] != self.text.shape[1]:
            raise ConfigError(
                f"objective.layer={self.layer!r} has {shapes[self.layer][0]} channels but the text embedding has {self.text.shape[1]}; "
                f"use objective.layer=embedding (the image tower's output)"
            )
        if len(self.prompts) > 1 and batch != len(self.prompts):
            raise ConfigError(f"objective.text lists {len(self.prompts)} prompts, one image each: set batch={len(self.prompts)} (batch is {batch})")

    def score(self, acts: Acts) -> torch.Tensor:
        image = F.normalize(acts[self.layer].flatten(1), dim=1)
        text = self.text.to(image)
        return image @ text[0] if text.shape[0] == 1 else (image * text).sum(dim=1)


def clip_text(encoder: TextEncoder | None, text: str | Sequence[str], layer: str = "embedding") -> ClipText:
    """``ClipText`` for the prompt(s) ``text``, embedded by ``encoder`` (an open_clip model's ``text_encoder``)."""
    if encoder is None:
        raise ConfigError("objective=clip_text needs a CLIP model: model=open_clip model.arch=ViT-B-32 (docs/models.md)")
    prompts = [text] if isinstance(text, str) else [str(t) for t in text]
    if not prompts or not all(p.strip() for p in prompts):
        raise ConfigError("objective.text is empty; give a prompt, e.g. objective.text='a photo of a dog', or a list of prompts")
    return ClipText(encoder(prompts), prompts, layer)
