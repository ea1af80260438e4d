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


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """A write that fails half-way (disk full) leaves the old checkpoint and no temporary file.

    The failure must come *after* the temporary file exists, or the clean-up is never run."""
    path = tmp_path / "checkpoint.npz"
    tinynet.save({"epoch": 1}, path)
    temporaries_at_failure = []

    def savez_then_disk_full(stream, **arrays):
        stream.write(b"PK\x03\x04 half an archive")
        temporaries_at_failure.extend(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-"))
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", savez_then_disk_full)
    with pytest.raises(OSError, match="No space left"):
        tinynet.save({"epoch": 2}, path)
    assert len(temporaries_at_failure) == 1  # the clean-up path had a file to remove
    monkeypatch.undo()
    assert tinynet.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]  # no temporary left behind
    with pytest.raises(TypeError, match="cannot store"):  # an unstorable value fails before any write
        tinynet.save({"epoch": 2, "bad": object()}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_keys_containing_a_slash_do_not_collide(tmp_path):
    x, y, z = np.zeros(2), np.ones(3), np.full(4, 2.0)
    state = {"a/b": x, "a": {"b": y}, "a%2Fb": z}
    tinynet.save(state, tmp_path / "c.npz")
    loaded = tinynet.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(loaded["a/b"], x)
    np.testing.assert_array_equal(loaded["a"]["b"], y)
    np.testing.assert_array_equal(loaded["a%2Fb"], z)
    with pytest.raises(TypeError, match="both stored as '1'"):
        tinynet.save({1: x, "1": y}, tmp_path / "d.npz")


def test_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __tree__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(tinynet.CheckpointError):
        tinynet.load(path)
    assert os.path.exists(path)
