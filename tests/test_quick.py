"""featviz.render from a notebook: the command line's defaults, progress that is never silent,
and a result that displays itself."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

import featviz
from featviz.callbacks import Callback, RenderContext
from featviz.errors import ConfigError
from featviz.objectives import Channel, ClassLogit
from featviz.progress import ProgressBar
from featviz.quick import parse_objective
from featviz.transforms import Jitter, Pad, RandomRotate, RandomScale, Resize


class Seen(Callback):
    def on_start(self, ctx: RenderContext) -> None:
        self.ctx = ctx


def test_featviz_render_has_the_cli_defaults(lite0) -> None:
    seen = Seen()
    result = featviz.render(lite0, "blocks.2:3", size=32, steps=3, progress=False, callbacks=[seen])
    kinds = [type(t) for t in seen.ctx.transforms.transforms]
    assert kinds == [Pad, Jitter, RandomScale, RandomRotate, Jitter, Resize]  # conf/transforms/standard.yaml + resize
    assert seen.ctx.transforms.transforms[-1].size == lite0.input_size
    again = featviz.render(lite0, "blocks.2:3", size=32, steps=3, progress=False)
    assert torch.equal(result.images, again.images)  # seeded like the command line


def test_objective_strings_read_like_lucents() -> None:
    assert isinstance(parse_objective("blocks.10:3"), Channel)
    assert isinstance(parse_objective("logits:281"), ClassLogit)
    with pytest.raises(ConfigError, match="layer:unit"):
        parse_objective("blocks.10")


def test_the_result_displays_itself(lite0) -> None:
    result = featviz.render(lite0, "blocks.2:3", size=32, batch=2, steps=2, progress=False)
    picture = Image.open(io.BytesIO(result._repr_png_()))
    assert picture.format == "PNG" and min(picture.size) >= 256  # a 32 px pair, enlarged
    assert "steps=2" in repr(result)


def test_progress_off_a_terminal_prints_plain_lines(lite0) -> None:
    stream = io.StringIO()  # not a terminal, as a log file or a batch job's output
    featviz.render(lite0, "blocks.2:3", size=32, steps=4, progress=False, callbacks=[ProgressBar(min_gap_s=0.0, stream=stream)])
    lines = stream.getvalue().splitlines()
    assert lines and lines[-1].startswith("render: step 4/4 (100 %)") and "steps/s" in lines[-1]
    stream = io.StringIO()  # `featviz units` labels each chunk's lines with its units
    featviz.render(lite0, "blocks.2:3", size=32, steps=2, progress=False, callbacks=[ProgressBar(stream=stream, desc="units 0-7 (batch 1/3)")])
    assert stream.getvalue().startswith("units 0-7 (batch 1/3): step 2/2 (100 %)")


def test_show_outside_a_notebook_writes_the_picture_and_says_where(tmp_path) -> None:
    """A plain script gets a file (IPython's display would print the image's repr there)."""
    import subprocess
    import sys

    script = (
        "import torch, featviz\n"
        "from torch import nn\n"
        "net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())\n"  # a plain module: wrapped for the call
        "result = featviz.render(net, '0:1', size=16, steps=2, progress=False)\n"
        "print('returned', result.show())\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "PIL.Image" not in done.stdout
    line = next(l for l in done.stderr.splitlines() if l.startswith("featviz: images written to "))
    path = line.removeprefix("featviz: images written to ").split(" (")[0]
    assert Image.open(path).format == "PNG" and f"returned {path}" in done.stdout
    __import__("os").remove(path)


def test_render_refuses_what_is_not_a_model() -> None:
    with pytest.raises(ConfigError, match="registry name"):
        featviz.render(3, "blocks.2:3")  # type: ignore[arg-type]
