"""The command line on timm and open_clip networks (random init, 32-64 px, a few steps):
`featviz layers`, the one-line weights and package errors (exit 2), a fused sweep, the microscope."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import run_cli
from featviz.app.build import model_from_config
from featviz.app.commands.layers import layer_table
from featviz.errors import ConfigError
from featviz.images import load_png
from featviz.models import build_model

pytest.importorskip("timm")
pytest.importorskip("open_clip")

R18 = ["model=timm", "model.arch=resnet18", "model.weights=none"]
QUICK = ["logger=none", "progress=false", "++metrics.enabled=false", "param.size=32", "threads=1"]


def test_featviz_layers_lists_each_network() -> None:
    proc = run_cli("layers", *R18)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "layer1.0.conv1" in proc.stdout and "logits" in proc.stdout
    expected = {
        ("model.arch=vit_small_patch16_224", "model.input_size=64"): ("blocks.11", "384x4x4", "tokens 1+4x4"),
        ("model.arch=vit_small_patch14_reg4_dinov2", "model.input_size=56"): ("blocks.11", "384x4x4", "tokens 5+4x4"),
        ("model.arch=convnext_atto",): ("stages.3", "320x7x7", "nchw"),
    }
    for overrides, (layer, shape, layout) in expected.items():
        rows = {r[0]: r for r in layer_table(["model=timm", "model.weights=none", *overrides])}
        assert rows[layer][2:] == (shape, layout), rows[layer]
    rows = {r[0]: r for r in layer_table(["model=open_clip", "model.weights=none", "model.input_size=64"])}
    assert rows["embedding"][2:] == ("512", "vector") and rows["transformer.resblocks.11"][3] == "tokens 1+2x2"


def test_pretrained_weights_offline_are_one_line_and_exit_2(tmp_path) -> None:
    env = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    for model in (["model=timm", "model.arch=resnet18", "model.weights=imagenet"], ["model=open_clip", "model.weights=openai"]):
        proc = run_cli(*model, *QUICK, "steps=1", f"hydra.run.dir={tmp_path / 'run'}", env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert lines[-1].startswith("featviz: error:") and "model.weights=/path/" in lines[-1] and str(tmp_path / "hub") in lines[-1]


def test_the_arch_key_goes_with_the_zoo_models_only() -> None:
    with pytest.raises(ConfigError, match="model.arch=NAME"):
        model_from_config({"name": "timm", "arch": None, "weights": "none"})
    with pytest.raises(ConfigError, match="model=timm and model=open_clip only"):
        model_from_config({"name": "resnet18", "arch": "resnet50", "weights": "none"})


def test_a_missing_package_names_its_extra(tmp_path) -> None:
    blocked = tmp_path / "blocked" / "timm"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed')\n")
    proc = run_cli("layers", *R18, env={"PYTHONPATH": str(tmp_path / "blocked")})
    assert proc.returncode == 2 and "pip install 'featviz[timm]'" in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]


def test_a_fused_sweep_over_a_timm_network_is_one_pack(tmp_path) -> None:
    proc = run_cli("-m", *R18, *QUICK, "launcher=fused", "objective=channel", "objective.layer=layer2", "objective.unit=1,2",
                   "seed=0,1", "steps=3", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == {"completed": 4}, summary
    results = [json.loads((tmp_path / str(j) / "result.json").read_text()) for j in range(4)]
    assert {(r["pack"]["id"], r["pack"]["size"]) for r in results} == {(results[0]["pack"]["id"], 4)}  # one pack of the 4 jobs


def test_the_microscope_on_a_timm_layer(tmp_path) -> None:
    proc = run_cli("microscope", *R18, *QUICK, "steps=3", "transforms.resize=false", "microscope.layers=[layer1]",
                   "microscope.units=[0,1,2,3]", "microscope.batch=2", "metrics.views=2", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = sorted(p.stem for p in (tmp_path / "0" / "microscope" / "layer1").glob("*.json"))
    assert saved == ["0", "1", "2", "3"], saved
    assert (tmp_path / "site" / "layers" / "layer1" / "index.html").is_file()


def test_text_a_minus_text_b_from_the_command_line(tmp_path) -> None:
    """``objective=sum`` with two clip_text terms, the second weighted -1: the run's clean score
    is cos(image, A) - cos(image, B), recomputed here from final.png on the same random tower."""

    a, b = "a photo of a dog", "a red sports car on a road"
    terms = f"objective.terms=[{{kind:clip_text,text:'{a}'}},{{kind:clip_text,text:'{b}',weight:-1}}]"
    proc = run_cli("model=open_clip", "model.weights=none", "model.input_size=64", "objective=sum", terms, "logger=none",
                   "progress=false", "param.size=64", "steps=6", "optimizer.lr=0.1", "metrics.views=0", "threads=1",
                   f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((tmp_path / "result.json").read_text())["final"]
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1]["objective"] > steps[0]["objective"]  # the difference is what rises
    model = build_model("open_clip", weights="none", arch="ViT-B-32", input_size=64)
    image = load_png(tmp_path / "final.png")[None]
    with torch.no_grad():
        embedding = F.normalize(model(image, ["embedding"])["embedding"], dim=1)
        score_a, score_b = (embedding @ F.normalize(model.text_encoder([a, b]), dim=1).T)[0].tolist()
    assert abs((score_a - score_b) - final["objective_clean"]) < 2e-3, (score_a, score_b, final["objective_clean"])
