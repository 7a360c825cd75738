"""User images decoded once at the edge (featviz.images): limits, 16-bit and palette modes, the
reference folder checked before the first step; files written with the umask; run-folder locks;
seeds in the generator's range; messages from other libraries cut to one line."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featviz.app.reporting import one_line
from featviz.errors import ConfigError, DatasetError, check_seed
from featviz.images import MAX_PIXELS, check_images, load_image, save_json, save_png
from featviz.metrics.reference import ReferenceSet
from featviz.params.init_image import load_photo
from featviz.rundir import LOCK_NAME, RunLock, process_start


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A tiny PNG whose header claims ``side`` x ``side`` pixels (what a decompression bomb looks like before decoding)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def test_a_header_past_the_limit_is_refused_naming_the_limit_and_the_key(tmp_path: Path) -> None:
    assert 20000 * 20000 > MAX_PIXELS
    with pytest.raises(ConfigError) as info:
        load_photo(bomb_png(tmp_path / "bomb.png"), 32)
    message = str(info.value)
    assert "param.init_image" in message and "20000x20000" in message and "8192x8192" in message and "\n" not in message


def test_16_bit_grayscale_keeps_its_values(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    photo = load_photo(tmp_path / "g16.png", 64)
    assert photo.shape == (1, 3, 64, 64)
    assert abs(float(photo.mean()) - 0.5) < 0.02  # Pillow's convert("RGB") gives ~1.0: almost white
    assert float(photo[0, 0, 0, 0]) < 0.01 and float(photo[0, 0, 0, -1]) > 0.99


def test_a_palette_image_with_transparency_is_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("P", (32, 32), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.paste(1, (0, 0, 16, 32))  # left half red, right half palette entry 0 (black), transparent
    img.info["transparency"] = 0
    img.save(tmp_path / "p.png", transparency=0)
    rgb = load_image(tmp_path / "p.png", 32)
    assert torch.allclose(rgb[:, :, :16], torch.tensor([1.0, 0, 0])[:, None, None].expand(3, 32, 16))
    assert torch.allclose(rgb[:, :, 16:], torch.ones(3, 32, 16))  # not black


def _photos(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((40, 48, 3), 40 * i, np.uint8)).save(folder / f"{i}.jpg")
    return folder


def test_a_reference_folder_is_checked_whole_before_the_first_step(tmp_path: Path) -> None:
    folder = _photos(tmp_path / "ref")
    assert len(ReferenceSet.from_folder(folder)) == 3
    data = (folder / "1.jpg").read_bytes()
    (folder / "1.jpg").write_bytes(data[: len(data) // 2])  # cut short, as by a failed copy
    with pytest.raises(DatasetError) as info:
        ReferenceSet.from_folder(folder)
    assert "metrics.reference" in str(info.value) and "1.jpg" in str(info.value)
    (folder / "1.jpg").write_bytes(data)
    bomb_png(folder / "huge.png")
    with pytest.raises(DatasetError, match=r"huge\.png.*20000x20000"):
        check_images(sorted(folder.iterdir()), "microscope.reference")


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_atomic_files_get_the_umask_mode(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        written = [save_json({"a": 1}, tmp_path / "r.json"), save_png(torch.zeros(3, 8, 8), tmp_path / "f.png")]
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in written] == [mode, mode]


def test_a_lock_records_host_pid_and_start(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        held = json.loads((tmp_path / LOCK_NAME).read_text())
        assert held == {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start(os.getpid())}
        with pytest.raises(Exception, match="in use by another featviz process"):
            RunLock(tmp_path).acquire()  # the holder is alive and is who the lock says
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize(
    "content",
    [
        "",  # a lock file a full disk left empty
        "{not json",
        json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": "another-boot/1"}),  # this pid, but recycled
    ],
    ids=["empty", "garbage", "recycled-pid"],
)
def test_a_stale_lock_is_taken_over(tmp_path: Path, content: str) -> None:
    (tmp_path / LOCK_NAME).write_text(content)
    with RunLock(tmp_path) as lock:
        assert lock.held and json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_dead_holder_is_stale(tmp_path: Path) -> None:
    """A live holder is trusted only when proven a featviz run: tests/test_rundir_lock_holder.py."""
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    (tmp_path / LOCK_NAME).write_text(f"{socket.gethostname()} {dead}")
    with RunLock(tmp_path) as lock:
        assert lock.held


def test_seeds_outside_the_generators_range_are_refused() -> None:
    draw = lambda seed: torch.rand(4, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(2**32), draw(0))  # why: torch keeps the low 32 bits
    assert check_seed(2**32 - 1) == 2**32 - 1
    for seed in (2**32, -1):
        with pytest.raises(ConfigError, match=rf"seed={seed} is outside 0\.\.4294967295.*low 32 bits"):
            check_seed(seed)


def test_a_foreign_message_becomes_one_plain_line() -> None:
    torch_advice = (
        "ckpt.pt is not a readable featviz checkpoint (UnpicklingError: Weights only load failed. \x1b[1mDo it only if you trust it\x1b[0m.\n"
        "\t(1) In PyTorch 2.6 ...\n\nCheck the documentation of torch.load.); delete it to start the run over"
    )
    line = one_line(torch_advice)
    assert "\n" not in line and "\x1b" not in line
    assert line.startswith("ckpt.pt is not a readable featviz checkpoint") and line.endswith("; delete it to start the run over")
