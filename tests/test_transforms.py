import pytest
import torch

from featviz.errors import ConfigError
from featviz.transforms import Compose, Jitter, Pad, RandomRotate, RandomScale, Resize, build_transforms, warp


def img(n=2, s=32, device="cpu"):
    y, x = torch.meshgrid(torch.linspace(0, 1, s), torch.linspace(0, 1, s), indexing="ij")
    return torch.stack([x, y, x * y]).expand(n, 3, s, s).clone().to(device)


def test_pad_and_jitter_sizes():
    x = img()
    assert Pad(4)(x).shape[-1] == 40
    assert Pad(4, mode="constant", value=0.5)(x)[0, 0, 0, 0] == 0.5
    assert Jitter(3)(x, torch.Generator().manual_seed(0)).shape[-2:] == (29, 29)


def test_jitter_is_seeded_and_shifts(device):
    x = img(device=device)
    outs = [Jitter(6)(x, torch.Generator().manual_seed(s)) for s in range(6)]
    assert torch.equal(outs[0], Jitter(6)(x, torch.Generator().manual_seed(0)))
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_identity_affines_are_identity(device):
    x = img(device=device)
    assert torch.allclose(RandomScale(1.0, 1.0)(x), x, atol=1e-5)
    assert torch.allclose(RandomRotate(0.0)(x), x, atol=1e-5)


def test_rotation_rotates():
    x = img(1)
    r = RandomRotate(90.0)
    mats = [r.matrices(1, torch.Generator().manual_seed(s)) for s in range(20)]
    m = next(m for m in mats if abs(float(m[0, 1, 0])) > 0.5)  # an angle of more than 30 degrees
    out = warp(x, m)
    assert not torch.allclose(out, x, atol=1e-2)
    # Rotating back by the inverse restores the centre of the image.
    back = warp(out, torch.linalg.inv(m))
    assert torch.allclose(back[..., 8:24, 8:24], x[..., 8:24, 8:24], atol=0.05)


def test_compose_fuses_affine_into_one_resample(device):
    """Scale then rotate in Compose equals one warp with the product of both matrices."""
    x = img(3, device=device)
    scale, rot = RandomScale(0.8, 1.2), RandomRotate(20)
    fused = Compose([scale, rot])(x, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    m = scale.matrices(3, g) @ rot.matrices(3, g)
    assert torch.allclose(fused, warp(x, m), atol=1e-6)
    two_step = rot(scale(x, torch.Generator().manual_seed(5)), None)
    assert two_step.shape == fused.shape


def test_build_transforms_standard_stack_and_resize(device):
    t = build_transforms(pad=12, jitter=8, scale=[0.9, 1.1], rotate=10, jitter_after=4, resize=64)
    assert [type(s).__name__ for s in t.transforms] == ["Pad", "Jitter", "RandomScale", "RandomRotate", "Jitter", "Resize"]
    out = t(img(2, 48, device=device), torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 64, 64)
    assert build_transforms().transforms == []
    assert Resize(16)(img(device=device)).shape[-1] == 16


@pytest.mark.parametrize("kwargs", [{"pad": -1}, {"jitter": -2}, {"scale": [1.2, 0.8]}, {"rotate": -5}, {"scale": [1.0]}])
def test_bad_values(kwargs):
    with pytest.raises(ConfigError):
        build_transforms(**kwargs)
