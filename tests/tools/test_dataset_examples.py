"""Dataset examples: scanning a folder, ranking, patches, the spectrum, the command.

Test images are generated here (flat colours with a known amount of red, a red square at a
known place) and, for the end-to-end command, scikit-image's bundled sample photos
(``skimage.data``'s own PNG/JPEG files, shipped inside the package: no download).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from featviz.tools.dataset_examples import find_images, load_image, patch, receptive_field, save_examples, score_folder, spectrum, top_bottom, unit_direction
from featviz.app.cli import main as cli_main


def main(argv: list[str]) -> int:
    return cli_main(["dataset-examples", *argv])
from featviz.objectives.directions import Direction, RandomDirection
from featviz.errors import ConfigError, DatasetError, UnitOutOfRangeError
from featviz.models import FeatureModel

SIZE = 32


def redness_model() -> FeatureModel:
    """Two 3x3 box blurs, then channel 0 = red - (green + blue) / 2 and channel 1 = its negative.

    Layer ``"2"`` therefore sees a 5x5 patch (receptive field 5) and its unit 0 is "how red".
    """
    box = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)
    box2 = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)
    mix = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        box.weight.fill_(1 / 9)
        box2.weight.fill_(1 / 9)
        mix.weight.copy_(torch.tensor([[1.0, -0.5, -0.5], [-1.0, 0.5, 0.5]]).view(2, 3, 1, 1))
    return FeatureModel(nn.Sequential(box, box2, mix), mean=(0, 0, 0), std=(1, 1, 1), input_size=SIZE, name="redness")


def write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def flat(red: int, grey: int = 128, side: int = 40) -> np.ndarray:
    img = np.full((side, side, 3), grey, dtype=np.uint8)
    img[..., 0] = red
    return img


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """An ImageFolder tree: 9 flat images of increasing red over two classes, PNG and JPEG."""
    root = tmp_path / "photos"
    for i in range(9):
        cls = "a" if i % 2 else "b"
        write(root / cls / f"img{i}.{'png' if i < 6 else 'jpg'}", flat(red=i * 30))
    return root


def test_ranks_by_the_units_response_across_batches(folder):
    model = redness_model()
    result = score_folder(model, folder, Direction("2", {0: 1.0}), batch_size=4)  # 9 images: batches 4, 4, 1
    assert len(result.paths) == 9 and result.map_size == (SIZE, SIZE)
    expected = torch.stack([model(load_image(p, SIZE)[None], ["2"])["2"][0, 0].mean() for p in result.paths])
    assert torch.allclose(result.scores, expected, atol=1e-5)
    top, bottom = top_bottom(result.scores, 3)
    assert [result.paths[i].stem for i in top] == ["img8", "img7", "img6"]
    assert [result.paths[i].stem for i in bottom] == ["img0", "img1", "img2"]
    # Channel 1 is the negative of channel 0: the ranking flips.
    negated = score_folder(model, folder, Direction("2", {1: 1.0}), batch_size=4)
    assert torch.allclose(negated.scores, -result.scores, atol=1e-5)


def test_patches_are_centred_on_the_strongest_position(tmp_path):
    img = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
    img[22:27, 5:10, 0] = 255  # a red square centred at (y=24, x=7)
    write(tmp_path / "square.png", img)
    write(tmp_path / "grey.png", flat(128, side=SIZE))
    model = redness_model()
    result = score_folder(model, tmp_path, Direction("2", {0: 1.0}), reduce="max")
    best = top_bottom(result.peak, 1)[0][0]
    assert result.paths[best].name == "square.png"
    assert result.peak_at[best].tolist() == [24, 7]
    side = receptive_field(model, "2", SIZE, mass=1.0)
    assert side == 5
    crop, box = patch(load_image(result.paths[best], SIZE), result.peak_at[best].tolist(), result.map_size, side)
    assert box == [22, 5, 5] and crop.shape == (3, 5, 5)
    assert torch.allclose(crop[0], torch.ones(5, 5))
    # At a border the box moves inside the image instead of shrinking.
    assert patch(torch.zeros(3, SIZE, SIZE), [0, SIZE - 1], (SIZE, SIZE), 5)[1] == [0, SIZE - 5, 5]


def test_receptive_field_of_the_embedded_model_grows_with_depth(lite0):
    sides = [receptive_field(lite0, layer, 64, mass=0.9) for layer in ("blocks.0", "blocks.3", "blocks.10")]
    assert sides[0] < sides[1] < sides[2] <= 64


def test_spectrum_groups():
    values = torch.tensor([-3.0, -1.0, -0.5, 0.2, 1.0, 4.0, 0.0])
    groups = spectrum(values, 2)
    assert groups == {"minimum": [0, 1], "slightly_negative": [2, 1], "slightly_positive": [3, 4], "maximum": [5, 4]}
    assert spectrum(torch.tensor([1.0, 2.0]), 3)["slightly_negative"] == []


def test_outputs_and_optimized_rows(folder, tmp_path):
    model = redness_model()
    result = score_folder(model, folder, Direction("2", {0: 1.0}))
    positive = torch.rand(3, 20, 20)
    summary = save_examples(result, tmp_path / "out", k=3, rf_side=5, positive=positive, info={"layer": "2"})
    out = tmp_path / "out"
    for name in ("top", "bottom", "top_patches", "bottom_patches", "spectrum"):
        assert (out / f"{name}.png").is_file()
    saved = json.loads((out / "examples.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert [Path(e["path"]).stem for e in saved["top"]] == ["img8", "img7", "img6"]
    assert saved["spectrum_rows"] == ["minimum", "slightly_negative", "slightly_positive", "maximum", "positive_optimized"]
    assert saved["score_stats"]["negative"] == 5  # red below the grey level (128) scores negative
    assert saved["layer"] == "2" and saved["patch_side"] == 5
    # Five rows of three 32 px images, each with its score under it, after a column of row names.
    width, height = Image.open(out / "spectrum.png").size
    assert 5 * (32 + 10) < height < 5 * (32 + 20) and width > 3 * 34 + 40
    # Patches smaller than 64 px are enlarged for display, with a caption line under them.
    width, height = Image.open(out / "top_patches.png").size
    assert width >= 3 * 66 and 64 + 10 < height < 64 + 24


def test_empty_spectrum_row_says_none(folder, tmp_path):
    """A unit that is never negative leaves the "slightly negative" row empty: it says so, in text only."""
    result = score_folder(redness_model(), folder, Direction("2", {0: 1.0}))
    result.scores = result.scores - result.scores.min() + 1  # every score positive
    save_examples(result, tmp_path, k=2)
    sheet = np.asarray(Image.open(tmp_path / "spectrum.png").convert("L"))
    row_h = sheet.shape[0] // 4
    empty = sheet[row_h : 2 * row_h, 86:]  # right of the row names (the longest, "slightly negative", is 77 px)
    full = sheet[0:row_h, 86:]
    assert (empty < 200).mean() < 0.05 < (full < 200).mean()  # a few dark text pixels, not two images
    assert (empty < 200).any()  # "(none)"


def test_non_images_are_skipped_with_a_warning(folder, caplog):
    (folder / "labels.txt").write_text("a\nb\n")
    (folder / "a" / "broken.png").write_bytes(b"not a png at all")
    with caplog.at_level(logging.WARNING, logger="featviz"):
        result = score_folder(redness_model(), folder, Direction("2", {0: 1.0}))
    assert len(result.paths) == 9 and [p.name for p in result.unreadable] == ["broken.png"]
    assert "labels.txt" in caplog.text and "broken.png" in caplog.text


def test_folder_errors_name_the_fix(tmp_path):
    model, unit = redness_model(), Direction("2", {0: 1.0})
    with pytest.raises(DatasetError, match="does not exist"):
        score_folder(model, tmp_path / "nope", unit)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        score_folder(model, tmp_path / "empty", unit)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="no image files"):
        find_images(tmp_path / "text")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DatasetError, match="could be read"):
        score_folder(model, tmp_path / "bad", unit)
    with pytest.raises(DatasetError, match="is a file"):
        find_images(tmp_path / "text" / "notes.txt")
    with pytest.raises(UnitOutOfRangeError):
        score_folder(model, tmp_path / "text", Direction("2", {5: 1.0}))
    with pytest.raises(ConfigError, match="exactly one"):
        unit_direction("2")


def test_direction_seed_is_the_objectives_random_direction():
    assert torch.equal(unit_direction("blocks.10", direction_seed=3).vector(112), RandomDirection("blocks.10", 3).vector(112))


@pytest.fixture(scope="module")
def sample_photos(tmp_path_factory) -> Path:
    """A flat folder of scikit-image's bundled sample photos (PNG and JPEG) plus a stray text file."""
    skdata = pytest.importorskip("skimage.data")
    src = Path(skdata.__file__).parent
    root = tmp_path_factory.mktemp("skimage_photos")
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "brick.png", "grass.png"):
        shutil.copy(src / name, root / name)
    (root / "README.txt").write_text("not an image")
    return root


def test_command_end_to_end_with_sample_photos(sample_photos, tmp_path, capsys):
    positive = tmp_path / "pos.png"
    Image.fromarray(np.full((16, 16, 3), 200, dtype=np.uint8)).save(positive)
    out = tmp_path / "examples"
    code = main([str(sample_photos), "--layer", "blocks.3", "--unit", "5", "--size", "64", "-k", "2", "--batch-size", "4", "--device", "cpu", "--out", str(out), "--positive", str(positive), "--wandb", "offline"])
    assert code == 0
    text = capsys.readouterr().out
    assert "scored 6 images" in text and "W&B offline run" in text
    saved = json.loads((out / "examples.json").read_text())
    assert saved["model"] == "efficientnet_lite0" and saved["target"] == "unit_5" and saved["image_size"] == 64
    assert saved["spectrum_rows"][-1] == "positive_optimized"
    assert list((out / "wandb").glob("offline-run-*"))
    assert main([str(tmp_path / "missing"), "--layer", "blocks.3", "--unit", "5", "--device", "cpu"]) == 2
    assert "does not exist" in capsys.readouterr().err
