"""How much memory one image costs a step, and how much there is: the rule that sizes a pack.

A pack (:func:`featviz.render.render_pack`) puts many jobs' views through the network as one
batch, and a step keeps every layer's output for the backward pass. So the rule is: one
image row costs the bytes of every module output up to the deepest layer read, twice (the
saved activations and the gradients flowing back through them); a pack may use half of the
memory free when it is planned. Measured on a forward pass of one image, not guessed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

from featviz.models.feature_model import FeatureModel

#: The share of the free memory a pack may fill (the rest: the network, the optimizers,
#: allocator slack, and whatever else the machine runs).
BUDGET_SHARE = 0.5


def image_bytes(model: FeatureModel, layers: Iterable[str], side: int | None = None) -> int:
    """Bytes one image row costs a forward + backward that stops at ``layers``, at ``side`` px."""
    side = side or model.input_size
    total = 0

    def count(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        for out in output if isinstance(output, (tuple, list)) else (output,):
            if torch.is_tensor(out):
                total += out.numel() * out.element_size()

    leaves = [m for m in model.net.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.in_channels, side, side, device=next(model.parameters()).device), layers)
    finally:
        for handle in handles:
            handle.remove()
    return 2 * total


def _cgroup_room() -> int | None:
    """The bytes this process's cgroup (v2) still allows, where it sets a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        return None


def free_bytes(device: torch.device) -> int:
    """Memory free for a pack now: ``torch.cuda.mem_get_info`` on a GPU; on the CPU the kernel's
    MemAvailable, capped by the cgroup's room where a container or Slurm sets a limit."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    room = _cgroup_room()
    return available if room is None else min(available, room)


def max_images(per_image: int, free: int, share: float = BUDGET_SHARE) -> int:
    """Images per step that fit ``share`` of ``free`` bytes at ``per_image`` bytes each (at least 1)."""
    return max(1, int(free * share) // max(1, per_image))
