"""Damaged checkpoint and weights files: a list, no state_dict, a string or missing global_step,
entries that are not tensors, what Lightning needs to resume missing or mistyped, a published
file that is not that network, another architecture's weights. Each is one sentence naming the
file (CheckpointError / UserError); a resume falls back past a damaged last.ckpt; nothing is
written for a refusal."""

from __future__ import annotations

import hashlib
import re
import shutil

import pytest
import torch

from reslab import models
from reslab.config.load import load
from reslab.errors import UserError
from reslab.run import train, weights
from reslab.run.build import build_net_and_data
from reslab.tracking import checkpoint
from reslab.tracking.checkpoint import CheckpointError
from support import ROOT, TINY

QUICKSTART = ROOT / "configs/quickstart.yaml"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished tiny run: its directory and its last checkpoint, loaded."""
    root = tmp_path_factory.mktemp("runs")
    train.fit(load([QUICKSTART], [*TINY, "trainer.max_epochs=1", "logger.wandb.mode=disabled",
                                  "run.test=false", f"run.root={root}", "run.name=src"]))
    run, = root.glob("src/*")
    return run, torch.load(run / "checkpoints/last.ckpt", weights_only=True)


def _save(path, obj):
    torch.save(obj, path)
    return path


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize("obj, message", [
    ([1, 2], "holds a list, not a checkpoint or state dict"),
    (torch.zeros(3), "holds a Tensor, not a checkpoint or state dict"),
    (7, "holds an int"),
])
def test_a_file_that_is_not_a_dict_is_refused_naming_it(tmp_path, obj, message):
    path = _save(tmp_path / "x.ckpt", obj)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} {message}"):
        checkpoint.load(path)


class NotAllowed:  # a class weights_only must refuse to import
    pass


@pytest.mark.parametrize("content, message", [
    (b'{"format": "state_dict"}', "it is not a PyTorch checkpoint"),  # export's JSON beside it
    (b"\x08\x07\x12\x07pytorch", "it is not a PyTorch checkpoint"),  # an ONNX protobuf
    (None, "refused: loading it could run code"),
])
def test_a_file_that_is_no_checkpoint_or_carries_code_is_told_apart(tmp_path, content, message):
    """A JSON or ONNX file given as weights was said to 'hold objects that could run code'."""
    path = tmp_path / "w.pt"
    if content is None:
        torch.save({"state_dict": NotAllowed()}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        checkpoint.load(path)


def test_a_folder_or_nothing_where_a_checkpoint_should_be(tmp_path):
    (tmp_path / "dir.ckpt").mkdir()
    with pytest.raises(CheckpointError, match=r"dir.ckpt is not a regular file"):
        checkpoint.load(tmp_path / "dir.ckpt")
    with pytest.raises(CheckpointError, match=r"nope.ckpt does not exist"):
        checkpoint.load(tmp_path / "nope.ckpt")


@pytest.mark.parametrize("step, message", [
    ("missing", "has no global_step, not a step count"),
    ("12", "has global_step='12', not a step count"),
    (True, "has global_step=True"), (-3, "has global_step=-3"), (2.5, "has global_step=2.5"),
])
def test_a_global_step_that_is_not_a_count_is_refused(tmp_path, step, message):
    ckpt = {} if step == "missing" else {"global_step": step}
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path} {message}"):
        checkpoint.global_step(ckpt, tmp_path)
    assert checkpoint.global_step({"global_step": 0}, tmp_path) == 0


def _damaged(good: dict) -> dict[str, tuple[dict, str]]:
    """Damaged copies of a good checkpoint and what the refusal says."""
    loops = good["loops"]
    return {
        "no state_dict": (_without(good, "state_dict"), "holds no state_dict"),
        "state_dict list": ({**good, "state_dict": [1]}, "state_dict that is a list"),
        "entry not a tensor": ({**good, "state_dict": {"net.conv1.weight": 3}},
                               "its entry 'net.conv1.weight' is an int, not a tensor"),
        "string step": ({**good, "global_step": "abc"}, "has global_step='abc'"),
        "no step": (_without(good, "global_step"), "has no global_step"),
        "no optimizer": (_without(good, "optimizer_states"), "optimizer_states is missing"),
        "optimizer int": ({**good, "optimizer_states": [1]},
                          r"optimizer_states\[0\] is an int, not a dict"),
        "optimizer empty": ({**good, "optimizer_states": [{}]},
                            r"optimizer_states\[0\].state is missing"),
        "scheduler empty": ({**good, "lr_schedulers": [{}]},
                            r"lr_schedulers\[0\].lr_lambdas is missing"),
        "no loops": (_without(good, "loops"), "loops is missing"),
        "no fit loop": ({**good, "loops": _without(loops, "fit_loop")}, "loops.fit_loop is missing"),
        "fit loop int": ({**good, "loops": {**loops, "fit_loop": 5}},
                         "loops.fit_loop is an int, not a dict"),
        "callbacks list": ({**good, "callbacks": []}, "callbacks is a list"),
        "version int": ({**good, "pytorch-lightning_version": 3}, "pytorch-lightning_version is 3"),
        "version text": ({**good, "pytorch-lightning_version": "abc"},
                         "pytorch-lightning_version is 'abc'"),
    }


def test_every_damage_is_named_and_a_good_checkpoint_resumes(source, tmp_path):
    _, good = source
    assert checkpoint.resumable(good, "good") == good["global_step"] > 0
    for ckpt, message in _damaged(good).values():
        with pytest.raises(CheckpointError, match=message):
            checkpoint.resumable(ckpt, tmp_path / "last.ckpt")


def test_resume_falls_back_past_a_damaged_last_checkpoint(source, tmp_path, capsys):
    _, good = source
    best = _save(tmp_path / "best.ckpt", {**good, "global_step": 3})
    for name, (ckpt, message) in _damaged(good).items():
        last = _save(tmp_path / "last.ckpt", ckpt)
        assert checkpoint.newest_valid([last, best]) == (best, 3), name
        err = capsys.readouterr().err
        assert f"warning: checkpoint {last}" in err and re.search(message, err), name
    best.write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match=r"last.ckpt cannot be resumed from"):
        checkpoint.newest_valid([last, best])
    assert checkpoint.newest_valid([tmp_path / "none.ckpt"]) == (None, None)


def _tree_hashes(folder):
    """sha256 of every file of a run, `.lock` too: a refused resume took the lock (it reads the
    checkpoint under it) and left the lock file as it was."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", ["string step", "no state_dict", "optimizer empty"])
def test_resuming_a_run_whose_only_checkpoint_is_damaged_changes_nothing(source, tmp_path, cli,
                                                                         damage):
    run = tmp_path / "run"
    shutil.copytree(source[0], run)
    (run / "checkpoints" / "best.ckpt").unlink(missing_ok=True)
    _save(run / "checkpoints" / "last.ckpt", _damaged(source[1])[damage][0])
    before = _tree_hashes(run)
    r = cli("train", "--resume", run, "trainer.max_epochs=2")
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert f"checkpoint {run / 'checkpoints' / 'last.ckpt'}" in r.stderr
    assert _tree_hashes(run) == before


def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def _link_out(path):
    path.unlink()
    path.symlink_to("/etc/passwd")


def _folder(path):
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("name, damage, said", [
    ("best.ckpt", _truncate, "it is truncated or corrupted (PytorchStreamReader failed reading zip "
                             "archive: failed finding central directory); move it aside"),
    ("best.ckpt", _link_out, "; move it aside"),
    ("best.ckpt", _folder, "is not a regular file; move it aside"),
    ("last.ckpt", _folder, "is not a regular file; move it aside"),
    ("last.ckpt", _link_out, "is not a regular file; move it aside"),
])
def test_a_checkpoint_the_attempt_would_fail_on_is_refused_before_it_begins(source, tmp_path, cli,
                                                                           name, damage, said):
    """A truncated best.ckpt (or one linked to /etc/passwd) passed the resume, which trained the
    whole attempt, failed its test at the end and recorded the run failed, every later resume the
    same; a last.ckpt that is a folder failed the first save with a traceback."""
    run = tmp_path / "run"
    shutil.copytree(source[0], run)
    damage(run / "checkpoints" / name)
    before = _tree_hashes(run)
    r = cli("train", "--resume", run, "trainer.max_epochs=2")
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(run / "checkpoints" / name) in r.stderr and said in r.stderr, r.stderr
    assert _tree_hashes(run) == before
    shutil.move(run / "checkpoints" / name, tmp_path / "aside")  # what the sentence says to do
    assert cli("train", "--resume", run, "trainer.max_epochs=2").returncode == 0


def _weights(spec, *overrides):
    return build_net_and_data(load([], [*TINY, f"model.weights={spec}", *overrides]))


@pytest.mark.parametrize("obj, message", [
    ([1, 2], "holds a list, not a checkpoint"),
    ({"epoch": 3, "global_step": 10}, "is not a state dict: its entry 'epoch' is an int"),
    ({"state_dict": [1]}, "holds a state_dict that is a list"),
    ({"conv1.weight": 5}, "its entry 'conv1.weight' is an int, not a tensor"),
    ({"a.weight": torch.zeros(3)}, r"does not fit model cifar_resnet: missing in the weights: "
                                   r"conv1.weight"),
])
def test_a_damaged_or_foreign_weights_file_is_one_sentence_naming_it(tmp_path, obj, message):
    path = _save(tmp_path / "w.pt", obj)
    with pytest.raises(UserError, match=f"{path}.* {message}"):
        _weights(path)


def test_another_architectures_run_names_its_checkpoint_file(source, cli, tmp_path):
    run = source[0]
    with pytest.raises(UserError, match=rf"model.weights={run} \({run}/checkpoints/best.ckpt\) "
                                        r"does not fit model cifar_resnet: missing in the "
                                        r"weights: layer1\.1\.conv1\.weight"):
        _weights(run, "model.depth=14")
    r = cli("train", *TINY, "model.depth=14", f"model.weights={run}/checkpoints/last.ckpt",
            f"run.root={tmp_path / 'runs'}")
    assert r.returncode == 2 and f"model.weights={run}/checkpoints/last.ckpt does not fit" \
        in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_a_classifier_for_other_classes_is_still_replaced(source, capsys):
    net = _weights(source[0], "data.classes=[1, 2, 3]").net
    assert net.fc.out_features == 3
    assert "classifier fc replaced: the weights have 10 classes, the data 3" in \
        capsys.readouterr().out


def test_a_published_file_that_is_not_the_network_is_one_sentence(tmp_path):
    net = models.build_model("resnet20")
    state = {f"module.{k}".replace("module.fc.", "module.linear."): v
             for k, v in net.state_dict().items()}
    for name, bad in (("two keys", {k: state[k] for k in ("module.linear.weight",
                                                          "module.conv1.weight")}),
                      ("narrow fc", {**state, "module.linear.weight": torch.zeros(10, 32)})):
        path = _save(tmp_path / f"{name}.th", {"state_dict": bad, "best_prec1": 90.0})
        with pytest.raises(UserError, match=f"model.weights={path} has akamaster/"
                                            r"pytorch_resnet_cifar10's keys but not its network"):
            weights.load_into(models.build_model("resnet20"), weights.source(str(path), "resnet20", 20),
                              models.info("resnet20"))


def test_a_run_without_a_checkpoint_is_named_as_such(source, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(source[0], run)
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(UserError, match=rf"model.weights={run} is a run directory without a "
                                        r"checkpoint \(checkpoints/best.ckpt or last.ckpt\)"):
        _weights(run)
