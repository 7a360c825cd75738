import pytest
import torch

from featviz.errors import ConfigError
from featviz.params.fourier import FFTImage
from featviz.params.pixel import PixelImage
from featviz.params import build_param


@pytest.mark.parametrize("kind", ["pixel", "fft"])
def test_shape_range_and_seed(kind, device):
    a = build_param(kind, generator=torch.Generator().manual_seed(1), size=24, batch=3).to(device)()
    b = build_param(kind, generator=torch.Generator().manual_seed(1), size=24, batch=3).to(device)()
    c = build_param(kind, generator=torch.Generator().manual_seed(2), size=24, batch=3).to(device)()
    assert a.shape == (3, 3, 24, 24)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_fft_decay_shapes_spectrum():
    """decay=0 is white noise; decay=2 concentrates energy in low frequencies."""
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    white = FFTImage(64, sd=1.0, decay=0.0, decorrelate=False, generator=g())
    pink = FFTImage(64, sd=1.0, decay=2.0, decorrelate=False, generator=g())

    def high_share(img):
        img = img.detach()
        spec = torch.fft.rfft2(img - img.mean()).abs() ** 2
        fy = torch.fft.fftfreq(64)[:, None]
        fx = torch.fft.rfftfreq(64)[None]
        hi = (fx**2 + fy**2).sqrt() > 0.25
        return float(spec[..., hi].sum() / spec.sum())

    assert high_share(pink()) < 0.2 * high_share(white())


def test_decorrelate_and_value_range_switches():
    p = PixelImage(16, sd=1.0, decorrelate=False, generator=torch.Generator().manual_seed(0))
    q = PixelImage(16, sd=1.0, decorrelate=True, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(p(), q())
    c = PixelImage(16, sd=1.0, value_range="clamp", generator=torch.Generator().manual_seed(0))
    out = c()
    assert out.min() == 0 and out.max() == 1  # sd=1 saturates some pixels at both ends


def test_gradient_flows_to_parameters(device):
    for p in (PixelImage(16).to(device), FFTImage(16).to(device)):
        p().mean().backward()
        assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in p.parameters())


@pytest.mark.parametrize("kwargs", [{"size": 4}, {"batch": 0}, {"value_range": "tanh"}])
def test_bad_config(kwargs):
    with pytest.raises(ConfigError):
        build_param("fft", **{"size": 16, **kwargs})
    with pytest.raises(ConfigError):
        build_param("nope")
