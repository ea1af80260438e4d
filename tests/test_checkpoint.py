"""Pickle-free, atomic .npz checkpoints."""
import os

import numpy as np
import pytest

import tinynet


def test_round_trip_of_a_nested_structure(tmp_path):
    state = {"model": {"layer.weight": np.arange(6, dtype=np.float32).reshape(2, 3)},
             "epoch": 3, "lr": 0.01, "name": "alexnet", "flags": [True, None, (1, 2)],
             "rng": np.random.default_rng(0).bit_generator.state}
    path = tmp_path / "run" / "checkpoint.npz"
    tinynet.save(state, path)
    loaded = tinynet.load(path)
    np.testing.assert_array_equal(loaded["model"]["layer.weight"], state["model"]["layer.weight"])
    assert loaded["epoch"] == 3 and loaded["name"] == "alexnet" and loaded["flags"] == [True, None, (1, 2)]
    assert loaded["rng"] == state["rng"]  # 128-bit integers survive
    with np.load(path, allow_pickle=False) as archive:  # an ordinary npz, readable without pickle
        assert "model/layer.weight" in archive.files


def test_truncated_and_foreign_files_give_clear_errors(tmp_path):
    path = tmp_path / "good.npz"
    tinynet.save({"w": np.ones(1000)}, path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(tinynet.CheckpointError, match="truncated"):
        tinynet.load(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.ones(2))
    with pytest.raises(tinynet.CheckpointError, match="not a tinynet checkpoint"):
        tinynet.load(foreign)
    with pytest.raises(tinynet.CheckpointError, match="does not exist"):
        tinynet.load(tmp_path / "missing.npz")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.npz"
    tinynet.save({"epoch": 1}, path)
    with pytest.raises(TypeError, match="cannot store"):
        tinynet.save({"epoch": 2, "bad": object()}, path)
    assert tinynet.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]  # no temporary left behind


def test_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __tree__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(tinynet.CheckpointError):
        tinynet.load(path)
    assert os.path.exists(path)
