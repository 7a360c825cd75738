"""param=maco_vivid: MACO plus per-band, per-colour gains, a mean colour and a photo-statistics prior."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from featviz.app.build import build_run
from featviz.errors import ConfigError
from featviz.metrics.image import colourfulness, rms_contrast
from featviz.params import PARAMS, build_param
from featviz.params.maco import MacoImage
from featviz.params.maco_vivid import VividMacoImage, band_weights


def test_band_weights_partition_every_bin_but_dc() -> None:
    w = band_weights(32, 5)
    assert w.shape == (5, 32, 17)
    total = w.sum(0)
    assert float(total[0, 0]) == 0.0
    total[0, 0] = 1.0
    torch.testing.assert_close(total, torch.ones_like(total))


def test_at_rest_it_is_maco_exactly() -> None:
    vivid = VividMacoImage(32, batch=2, generator=torch.Generator().manual_seed(0))
    maco = MacoImage(32, batch=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(vivid(), maco())
    assert "maco_vivid" in PARAMS and isinstance(build_param("maco_vivid", size=32), VividMacoImage)


def test_gains_and_offset_move_colourfulness_and_contrast_within_bounds() -> None:
    p = VividMacoImage(64, generator=torch.Generator().manual_seed(0), prior=0.0)
    before = p().detach()
    with torch.no_grad():
        p.gain[:, 0] = 10.0  # luminance channel: every band at max_gain
        p.gain[:, 1:] = 10.0  # colour channels too
        p.offset[:, 1] = 10.0  # a colour cast
    after = p().detach()
    assert float(rms_contrast(after)) > 1.3 * float(rms_contrast(before))
    assert float(colourfulness(after)) > 1.5 * float(colourfulness(before))
    torch.testing.assert_close(p.gains().max(), torch.tensor(2.0), atol=1e-4, rtol=0)  # bounded by max_gain
    with torch.no_grad():
        p.gain.fill_(-10.0)
        p.offset.zero_()
    assert float(rms_contrast(p().detach())) < 0.7 * float(rms_contrast(before))


def test_the_prior_pulls_a_grey_image_into_the_photos_range() -> None:
    """Optimizing the prior alone raises colourfulness; its gradient is that of prior * penalty in the loss."""
    p = VividMacoImage(32, generator=torch.Generator().manual_seed(0), prior=1.0, colourfulness=(80.0, 120.0))
    start = float(colourfulness(p().detach()))
    # The injected gradient equals the gradient of the penalty added to the loss.
    p.zero_grad()
    (p() * 0).sum().backward()
    injected = p.gain.grad.clone()
    p.zero_grad()
    weight, p.prior = p.prior, 0.0  # the plain image, the penalty added to the loss by hand
    (weight * p.penalty(p()).sum()).backward()
    p.prior = weight
    torch.testing.assert_close(injected, p.gain.grad)
    opt = torch.optim.Adam(p.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        (p() * 0).sum().backward()  # no objective: only the prior moves the image
        opt.step()
    assert float(colourfulness(p().detach())) > start + 10


def test_reproducible_through_the_config_and_checked(lite0) -> None:
    cfg = {
        "param": {"kind": "maco_vivid", "size": 32, "bands": 3},
        "objective": {"kind": "class_logit", "unit": 1},
        "transforms": {"resize": True},
        "steps": 2,
        "seed": 3,
    }
    first, second = build_run(cfg, model=lite0).param, build_run(cfg, model=lite0).param
    torch.testing.assert_close(first(), second())
    assert first.bands.shape[0] == 3
    for key, value in (("max_gain", 0.5), ("prior", -1.0), ("bands", 0)):
        with pytest.raises(ConfigError, match=f"param.{key}"):
            build_run({**cfg, "param": {**cfg["param"], key: value}}, model=lite0)
    with pytest.raises(ConfigError, match="param.contrast"):
        VividMacoImage(32, contrast=(0.3, 0.2))


VIVID_RUNGS = sorted(p.stem for p in (REPO / "conf" / "experiment" / "vivid_stack").glob("*.yaml"))


@pytest.mark.parametrize("rung", VIVID_RUNGS)
def test_every_rung_of_the_vivid_sweep_builds(rung: str, lite0) -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=vivid", f"experiment/vivid_stack={rung}", "objective.unit=1", "param.size=32"])
    cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    parts = build_run(cfg, model=lite0)
    assert isinstance(parts.param, VividMacoImage) == (rung in ("free", "offset", "vivid"))
    assert cfg["pipeline"]["technique"] in (rung, f"vivid_{rung}")
