"""``featviz layers``: a model's hookable layers with their output shapes and layouts."""

from __future__ import annotations

import argparse

from featviz.app.build import model_from_config
from featviz.app.commands import config_parser
from featviz.app.config import compose
from featviz.models import LOGITS


def parser(prog: str) -> argparse.ArgumentParser:
    return config_parser(
        prog, "List a model's hookable layers, their output shapes (channels first) and layouts; +size=N sets the input side (default: the model's)."
    )


def layer_table(overrides: list[str]) -> list[tuple[str, str, str, str]]:
    """Rows of (layer name, module type, C x H x W, layout) for the configured model and size.

    Shapes are channels first whatever the layer gives (Swin's ``[B, H, W, C]`` stages, a
    ViT's tokens on their patch grid), so ``objective.unit`` counts along the first number.
    """
    cfg = compose(overrides)
    model = model_from_config(cfg.model)
    size = int(cfg.get("size") or model.input_size)
    shapes = model.layer_shapes(size)
    modules = dict(model.net.named_modules())
    rows = []
    for name in model.layer_names:
        kind = "output" if name == LOGITS else type(modules[name]).__name__
        shape = shapes.get(name)
        layout = shapes.layouts[name].describe(shape) if shape is not None else "-"
        rows.append((name, kind, "x".join(str(s) for s in shape or ()) or "-", layout))
    return rows


def run(args: argparse.Namespace) -> str:
    """The table, one layer a line."""
    rows = layer_table(args.overrides)
    width = max(len(r[0]) for r in rows)
    kw = max(len(r[1]) for r in rows)
    sw = max(len("shape (C x H x W)"), *(len(r[2]) for r in rows))
    lines = [f"{'layer':<{width}}  {'type':<{kw}}  {'shape (C x H x W)':<{sw}}  layout"]
    lines += [f"{name:<{width}}  {kind:<{kw}}  {shape:<{sw}}  {layout}" for name, kind, shape, layout in rows]
    return "\n".join(lines)
