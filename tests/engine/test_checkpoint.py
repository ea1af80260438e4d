"""Pickle-free, atomic .npz checkpoints."""
import json
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


class _RunsCodeWhenUnpickled:
    """Unpickling this calls os.mkdir(marker): what a malicious checkpoint could do with any function."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    marker = tmp_path / "the-pickle-ran"
    np.savez(path, __tree__=np.array([_RunsCodeWhenUnpickled(marker)], dtype=object))
    with pytest.raises(tinynet.CheckpointError, match="Object arrays cannot be loaded when allow_pickle=False"):
        tinynet.load(path)
    assert not marker.exists()
    assert os.path.exists(path)


def _write_raw(path, document, **arrays):
    """An .npz laid out as the format says: arrays by path, the tree as UTF-8 JSON bytes in __tree__."""
    tree = np.frombuffer(document if isinstance(document, bytes) else json.dumps(document).encode("utf-8"), np.uint8)
    np.savez(path, __tree__=tree, **arrays)


def test_the_file_layout_is_the_documented_one(tmp_path):
    """Files written by other versions of tinynet must keep loading: the format name, the entry names
    (the path, "/" inside a key escaped) and the JSON tree are a contract, checked from both sides."""
    weights = np.arange(4.0)
    state = {"model": {"fc/w": weights}, "layers": [np.ones(2), np.zeros(3)], "epoch": 2}
    tinynet.save(state, tmp_path / "ours.npz")
    with np.load(tmp_path / "ours.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["__tree__", "layers/0", "layers/1", "model/fc%2Fw"]
        document = json.loads(archive["__tree__"].tobytes().decode("utf-8"))
    assert document["format"] == "tinynet-checkpoint-1"
    assert document["tree"]["dict"]["epoch"] == {"value": 2}
    assert document["tree"]["dict"]["layers"] == {"list": [{"array": "layers/0"}, {"array": "layers/1"}],
                                                  "tuple": False}
    # a file written by hand to the documented layout loads
    _write_raw(tmp_path / "by_hand.npz",
               {"format": "tinynet-checkpoint-1",
                "tree": {"dict": {"w": {"array": "w"}, "pair": {"list": [{"value": 1}, {"value": "a"}],
                                                                "tuple": True}}}},
               w=weights)
    loaded = tinynet.load(tmp_path / "by_hand.npz")
    np.testing.assert_array_equal(loaded["w"], weights)
    assert loaded["pair"] == (1, "a")
    _write_raw(tmp_path / "newer.npz", {"format": "tinynet-checkpoint-2", "tree": {"value": 1}})
    with pytest.raises(tinynet.CheckpointError, match="has format 'tinynet-checkpoint-2', expected "
                                                      "'tinynet-checkpoint-1'"):
        tinynet.load(tmp_path / "newer.npz")
    _write_raw(tmp_path / "no_format.npz", {"tree": {"value": 1}})
    with pytest.raises(tinynet.CheckpointError, match="has format None"):
        tinynet.load(tmp_path / "no_format.npz")


@pytest.mark.parametrize("index, problem", [(b"\xff\xfe not utf-8", "corrupt index"),
                                            (b'{"format": "tinynet-checkpoint-1", "tree"', "corrupt index")])
def test_a_corrupt_index_is_a_checkpoint_error(tmp_path, index, problem):
    _write_raw(tmp_path / "bad.npz", index)
    with pytest.raises(tinynet.CheckpointError, match=problem):
        tinynet.load(tmp_path / "bad.npz")


def test_tensors_numpy_scalars_and_a_bare_array_are_stored(tmp_path):
    state = {"tensor": tinynet.tensor([1.5, 2.5]), "count": np.int64(7), "rate": np.float32(0.25),
             "flag": np.bool_(True)}
    tinynet.save(state, tmp_path / "a.npz")
    loaded = tinynet.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(loaded["tensor"], [1.5, 2.5])
    assert loaded["count"] == 7 and type(loaded["count"]) is int
    assert loaded["rate"] == 0.25 and type(loaded["rate"]) is float
    assert loaded["flag"] is True
    tinynet.save(np.arange(3), tmp_path / "bare.npz")           # the whole checkpoint one array
    with np.load(tmp_path / "bare.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["__tree__", "value"]
    np.testing.assert_array_equal(tinynet.load(tmp_path / "bare.npz"), np.arange(3))


def test_key_clashes_name_the_key_and_where(tmp_path):
    with pytest.raises(TypeError) as error:
        tinynet.save({"0": 1, 1: 2, "1": 3}, tmp_path / "x.npz")
    assert str(error.value) == ("checkpoint: two keys at / are both stored as '1' (keys are stored as strings, "
                                "e.g. 1 and '1'); rename one")
    with pytest.raises(TypeError, match=r"two keys at /model%2Fa/layers/0 are both stored as '2'"):
        tinynet.save({"model/a": {"layers": [{2: 0, "2": 1}]}}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match=r"cannot store a set at /opts/1; only dicts"):
        tinynet.save({"opts": [1, {3}]}, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("umask, mode", [(0o027, 0o640), (0o022, 0o644), (0o000, 0o666)])
def test_a_checkpoint_gets_the_permissions_of_a_plain_file_and_the_umask_is_kept(tmp_path, umask, mode):
    """rw for whoever the umask lets read and write, never x: what open() would have created."""
    previous = os.umask(umask)
    try:
        tinynet.save({"w": np.ones(2)}, tmp_path / "deep" / "er" / "c.npz")   # missing folders are made
        assert os.umask(umask) == umask                                        # save left the umask alone
    finally:
        os.umask(previous)
    assert (tmp_path / "deep" / "er" / "c.npz").stat().st_mode & 0o777 == mode


def test_load_errors_name_the_file_and_say_what_is_wrong(tmp_path):
    """The whole message, so that a clipped or garbled one is noticed."""
    missing = tmp_path / "missing.npz"
    with pytest.raises(tinynet.CheckpointError) as error:
        tinynet.load(missing)
    assert str(error.value) == f"checkpoint {str(missing)!r} does not exist"
    text = tmp_path / "notes.npz"
    text.write_text("not a zip archive")
    with pytest.raises(tinynet.CheckpointError) as error:
        tinynet.load(text)
    assert str(error.value).startswith(f"could not read checkpoint {str(text)!r}: the file is truncated, corrupt "
                                       f"or not an .npz written by tinynet (")
    assert str(error.value).endswith(")")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.ones(2))
    with pytest.raises(tinynet.CheckpointError) as error:
        tinynet.load(foreign)
    assert str(error.value) == f"{str(foreign)!r} is an .npz file but not a tinynet checkpoint (no __tree__ entry)"
    corrupt = tmp_path / "corrupt.npz"
    _write_raw(corrupt, b"{")
    with pytest.raises(tinynet.CheckpointError) as error:
        tinynet.load(corrupt)
    assert str(error.value).startswith(f"checkpoint {str(corrupt)!r} has a corrupt index: ")
    assert str(error.value).endswith("(char 1)")
    newer = tmp_path / "newer.npz"
    _write_raw(newer, {"format": "tinynet-checkpoint-2", "tree": {"value": 1}})
    with pytest.raises(tinynet.CheckpointError) as error:
        tinynet.load(newer)
    assert str(error.value) == (f"checkpoint {str(newer)!r} has format 'tinynet-checkpoint-2', expected "
                                f"'tinynet-checkpoint-1'")
