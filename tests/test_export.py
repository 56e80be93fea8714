"""`reslab export`: TorchScript, ONNX and state dicts of real runs (ResNet-20 and ResNet-50, one
step on the embedded digits) give the checkpoint's outputs when loaded the way a deployment loads
them; the JSON beside them records the normalisation training used; bad input is a sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from reslab import data, models
from reslab.config.load import load
from reslab.errors import TrainingError
from reslab.run import export, train
from reslab.run.build import model_kwargs
from reslab.tracking import checkpoint
from support import run_dir

COMMON = ["trainer.max_steps=1", "trainer.accelerator=cpu", "data.batch_size=64",
          "run.test=false", "logger.wandb.mode=disabled", "trainer.progress_bar=false"]
# ResNet-20 with the paper's per-pixel mean; ResNet-50 (bottleneck, ImageNet stem) per channel.
MODELS = {"resnet20": ["model.name=resnet20"],
          "resnet50": ["model.name=resnet50", "data.normalize=channel"]}
# Tracing and exporting ResNet-50 takes 15-30 s on 2 cores.
NAMES = ["resnet20", pytest.param("resnet50", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """name -> run directory; each model is trained (one step) when a test first asks for it."""

    class Runs(dict):
        def __missing__(self, name: str) -> Path:
            root = tmp_path_factory.mktemp(name)
            train.fit(load([], [*COMMON, *MODELS[name], f"run.root={root}"]))
            self[name] = run_dir(root)
            return self[name]

    return Runs()


def reference(run: Path) -> torch.nn.Module:
    """The checkpoint's network, built and loaded independently of reslab.run.export."""
    cfg = load([run / "config.yaml"])
    dm = data.build_datamodule(cfg.data, cfg.seed)
    net = models.build_model(cfg.model.name, **data.model_args(dm), **model_kwargs(cfg))
    state = checkpoint.load(run / "checkpoints/last.ckpt")["state_dict"]
    net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    return net.eval()


def batch(meta: dict, n: int = 3) -> torch.Tensor:
    return torch.randn(n, *meta["input"]["shape"][1:], generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("name", NAMES)
def test_torchscript_round_trip_gives_the_checkpoints_outputs(runs, name, tmp_path):
    result = export.export(runs[name], "torchscript", tmp_path / "net.pt")
    assert result["model"] == tmp_path / "net.pt" and result["meta"] == tmp_path / "net.json"
    assert "outputs equal the checkpoint's" in result["check"]
    meta = json.loads(result["meta"].read_text())
    assert meta["model"]["name"] == name and meta["format"] == "torchscript"
    assert meta["input"]["shape"] == ["batch", 1, 8, 8] and meta["classes"] == list(range(10))
    x = batch(meta)
    with torch.no_grad():
        want = reference(runs[name])(x)
    got = torch.jit.load(str(result["model"]))(x)  # no reslab needed to run it
    assert got.shape == (3, 10)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_onnx_round_trip_in_onnxruntime(runs, name, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime: pip install 'reslab[export]'")
    result = export.export(runs[name], "onnx", tmp_path)
    assert result["model"] == tmp_path / "model.onnx" and "onnxruntime" in result["check"]
    meta = json.loads(result["meta"].read_text())
    x = batch(meta, 4)
    with torch.no_grad():
        want = reference(runs[name])(x)
    session = ort.InferenceSession(str(result["model"]), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(["logits"], {"input": x.numpy()})[0])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert meta["check"]["max_abs_diff"] <= 1e-5 + 1e-4 * want.abs().max().item()


def test_state_dict_loads_weights_only_into_the_recorded_model(runs, cli):
    r = cli("export", runs["resnet20"], "--format", "state_dict")
    assert r.returncode == 0, r.stderr
    path = runs["resnet20"] / "export/model.state_dict.pt"
    assert f"model:    {path}" in r.stdout and "check:    outputs equal" in r.stdout
    meta = json.loads(path.with_suffix(".json").read_text())
    net = models.build_model(meta["model"]["name"], **{k: v for k, v in meta["model"].items()
                                                 if k != "name"})
    net.load_state_dict(torch.load(path, weights_only=True))
    x = batch(meta)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), reference(runs["resnet20"])(x), atol=0, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_recorded_preprocessing_is_what_training_fed_the_network(runs, name, tmp_path):
    cfg = load([runs[name] / "config.yaml"])
    pre = export.preprocessing(cfg, data.build_datamodule(cfg.data, cfg.seed))
    assert pre["normalize"] == str(cfg.data.normalize) and pre["input_size"] == [1, 8, 8]
    dm = data.build_datamodule(cfg.data, cfg.seed)
    dm.setup("fit")
    raw = dm.load()[2]  # the test images in [0, 1], before normalisation
    mean, std = torch.tensor(pre["mean"]), torch.tensor(pre["std"])
    if pre["normalize"] == "channel":
        assert mean.shape == (1,)
        mean, std = mean[:, None, None], std[:, None, None]
    else:
        assert mean.shape == (1, 8, 8)
    torch.testing.assert_close((raw - mean) / std, dm.splits["test"][0])
    # The stored values the JSON names: digits are the integers 0-16, divided by 16.
    assert pre["raw"]["divide_by"] == 16 and "0-16" in pre["pixels"]
    stored = raw * pre["raw"]["divide_by"]
    assert torch.equal(stored, stored.round()) and stored.min() == 0 and stored.max() == 16


def test_every_dataset_says_how_its_stored_values_become_0_to_1():
    assert set(export.RAW_PIXELS) == set(data.DATASETS.names())


def test_onnx_without_onnxruntime_says_the_check_was_skipped(runs, tmp_path, monkeypatch):
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript")
    real = export.importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, "find_spec",
                        lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    result = export.export(runs["resnet20"], "onnx", tmp_path)
    assert "not compared" in result["check"] and "onnxruntime is not installed" in result["check"]
    assert json.loads(result["meta"].read_text())["check"]["runtime"] is None


def test_outputs_that_differ_put_nothing_in_place(runs, tmp_path, monkeypatch):
    real = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: (lambda x: real(*a, **k)(x) + 1e-3))
    with pytest.raises(TrainingError, match=r"outputs differ from the checkpoint's \(max"):
        export.export(runs["resnet20"], "torchscript", tmp_path / "out" / "m.pt")
    assert not (tmp_path / "out").exists()  # not even the folder made for it


@pytest.mark.parametrize("case,words", [
    ("missing", ["does not exist"]),
    ("no_checkpoint", ["holds no checkpoint"]),
    ("not_a_run", ["is not a run directory"]),
    ("format", ["invalid choice: 'tflite'"]),
    ("json_out", ["ends in .json"]),
    ("onnx_name", ["ends in .onnx, not the name of a file in the torchscript"]),  # was TorchScript
])
def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(runs, cli, tmp_path, case, words):
    empty = tmp_path / "run"
    empty.mkdir()
    shutil.copy(runs["resnet20"] / "config.yaml", empty / "config.yaml")
    args = {"missing": [tmp_path / "nope"], "no_checkpoint": [empty], "not_a_run": [tmp_path],
            "format": [runs["resnet20"], "--format", "tflite"],
            "json_out": [runs["resnet20"], "--out", tmp_path / "m.json"],
            "onnx_name": [runs["resnet20"], "--out", tmp_path / "m.onnx"]}[case]
    before = sorted(p for p in tmp_path.rglob("*"))
    r = cli("export", *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert sorted(p for p in tmp_path.rglob("*")) == before
