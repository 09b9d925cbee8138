import pytest
import torch

from askknn.io import UnreadableFile, atomic_path, load_torch, save_torch, write_json


def test_an_interrupted_write_leaves_neither_a_partial_file_nor_a_temporary(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    write_json(target, {"old": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"new": ')
            raise RuntimeError("killed mid-write")
    assert target.read_text().startswith('{\n  "old": 1')
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_checkpoints_round_trip_through_weights_only_loading(tmp_path):
    state = {"model": {"w": torch.ones(2)}, "epoch": 3, "history": [{"loss": 0.5}]}
    save_torch(tmp_path / "ckpt.pt", state)
    loaded = load_torch(tmp_path / "ckpt.pt")
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))


def test_a_write_removes_stale_temporaries_of_its_own_target_only(tmp_path):
    own = tmp_path / ".tmp-at.json-abcd1234.json"              # left by a killed write of at.json
    foreign = tmp_path / ".tmp-at.json.bak-abcd1234.bak"        # of another file
    for path in (own, foreign):
        path.write_text("{")
    write_json(tmp_path / "at.json", {"ok": 1})
    assert not own.exists() and foreign.exists()


def test_an_unreadable_torch_file_is_named(tmp_path):
    save_torch(tmp_path / "ckpt.pt", {"w": torch.ones(100)})
    data = (tmp_path / "ckpt.pt").read_bytes()
    (tmp_path / "ckpt.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(UnreadableFile, match="ckpt.pt cannot be read"):
        load_torch(tmp_path / "ckpt.pt")
