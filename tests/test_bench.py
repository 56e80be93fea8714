"""`reslab bench` measures; it asserts no speed. These tests check that both loops really train
the requested steps on the same setup and that the report is complete."""

from __future__ import annotations

import json


def test_bench_reports_both_loops_and_the_pipelines(cli):
    r = cli("bench", "configs/bench/cifar_cpu.yaml", "model.depth=8", "data.size=1024",
            "data.batch_size=32", "trainer.channels_last=true", "--steps", "3",
            "--rounds", "2", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    for key in ("reslab_images_per_s", "plain_images_per_s", "ratio", "reslab_ms_per_step",
                "plain_ms_per_step", "peak_memory_mb", "memory_images_per_s",
                "dataloader_images_per_s", "pipeline_speedup"):
        assert result[key] > 0, key
    # Measured inside each round's timed window: the optimizer steps each loop really took and
    # the images it was fed (a timed step that did not train, or a short batch, shows here).
    assert result["reslab_optimizer_steps"] == result["plain_optimizer_steps"] == [3, 3]
    assert result["reslab_images"] == result["plain_images"] == [3 * 32, 3 * 32]
    assert result["batch_size"] == 32 and result["device"] == "cpu"
    assert (result["steps"], result["rounds"]) == (3, 2)
