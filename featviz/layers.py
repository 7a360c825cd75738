"""``featviz layers``: list a model's hookable layers with their output shapes."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir

from featviz.app import REPO_ROOT


def layer_table(overrides: Sequence[str]) -> list[tuple[str, str, str]]:
    """Rows of (layer name, module type, output shape) for the configured model and size."""
    from featviz.builders import model_from_config
    from featviz.models import LOGITS

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    model = model_from_config(cfg.model)
    size = int(cfg.get("size") or model.input_size)
    shapes = model.layer_shapes(size)
    modules = dict(model.net.named_modules())
    rows = []
    for name in model.layer_names:
        kind = "output" if name == LOGITS else type(modules[name]).__name__
        rows.append((name, kind, "x".join(str(s) for s in shapes.get(name, ())) or "-"))
    return rows


def main(argv: Sequence[str]) -> int:
    """Print the table; ``+size=N`` sets the input side (default: the model's)."""
    from featviz.errors import FeatvizError

    try:
        rows = layer_table(argv)
    except FeatvizError as exc:
        import sys

        print(f"featviz: error: {exc}", file=sys.stderr)
        return 1
    width = max(len(r[0]) for r in rows)
    kw = max(len(r[1]) for r in rows)
    print(f"{'layer':<{width}}  {'type':<{kw}}  shape (C x H x W)")
    for name, kind, shape in rows:
        print(f"{name:<{width}}  {kind:<{kw}}  {shape}")
    return 0
