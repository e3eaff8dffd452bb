"""gecko_jax.fileio on local paths: open, list, atomic writes, file patterns."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from gecko_jax import fileio


def test_text_is_utf8_with_line_endings_kept(tmp_path) -> None:
    path = str(tmp_path / "t.jsonl")
    with fileio.open(path, "w") as f:
        f.write('{"a": "café ☃"}\r\n{"b": 1}\n')
    assert (tmp_path / "t.jsonl").read_bytes() == '{"a": "café ☃"}\r\n{"b": 1}\n'.encode()
    with fileio.open(path) as f:
        assert list(f) == ['{"a": "café ☃"}\r\n', '{"b": 1}\n']  # split on "\n" only


def test_binary_round_trip(tmp_path) -> None:
    path = str(tmp_path / "x.npy")
    with fileio.open(path, "wb") as f:
        np.save(f, np.arange(3))
    with fileio.open(path, "rb") as f:
        np.testing.assert_array_equal(np.load(f), [0, 1, 2])


def test_exists_glob_makedirs_remove(tmp_path) -> None:
    directory = fileio.join(str(tmp_path), "a", "b")
    assert not fileio.exists(directory)
    fileio.makedirs(directory)
    fileio.makedirs(directory)  # again: nothing happens
    assert fileio.exists(directory)
    for name in ("z.json", "y.json", "x.txt"):
        (tmp_path / "a" / "b" / name).write_text("{}")
    assert fileio.glob(fileio.join(directory, "*.json")) == [
        os.path.join(directory, "y.json"),
        os.path.join(directory, "z.json"),
    ]
    fileio.remove(os.path.join(directory, "y.json"))
    assert not fileio.exists(os.path.join(directory, "y.json"))


def test_join_and_is_url() -> None:
    assert fileio.join("gs://bucket/dir/", "done", "x.json") == "gs://bucket/dir/done/x.json"
    assert fileio.join("out", "x.json") == os.path.join("out", "x.json")
    assert fileio.is_url("gs://bucket/x") and not fileio.is_url("/tmp/x")


def test_atomic_open_replaces_the_file_whole(tmp_path) -> None:
    path = str(tmp_path / "r.json")
    (tmp_path / "r.json").write_text("old")
    with fileio.atomic_open(path) as f:
        f.write("new, ")
        assert (tmp_path / "r.json").read_text() == "old"  # unchanged until the end
        f.write("complete")
    assert (tmp_path / "r.json").read_text() == "new, complete"
    assert os.listdir(tmp_path) == ["r.json"]


@pytest.mark.parametrize("existing", [None, "old"])
def test_atomic_open_leaves_no_partial_file_on_an_exception(tmp_path, existing) -> None:
    path = tmp_path / "r.json"
    if existing is not None:
        path.write_text(existing)
    with pytest.raises(RuntimeError, match="mid-write"), fileio.atomic_open(str(path)) as f:
        f.write("half of it")
        raise RuntimeError("mid-write")
    assert os.listdir(tmp_path) == ([] if existing is None else ["r.json"])
    if existing is not None:
        assert path.read_text() == existing


def test_atomic_path_with_a_tagged_temporary_name(tmp_path) -> None:
    path = str(tmp_path / "rows.jsonl")
    with fileio.atomic_path(path, ".w1.tmp") as where:
        assert where == path + ".w1.tmp"
        with open(where, "w") as f:
            f.write("rows\n")
    assert os.listdir(tmp_path) == ["rows.jsonl"]
    with pytest.raises(KeyboardInterrupt), fileio.atomic_path(path, ".w1.tmp") as where:
        with open(where, "w") as f:
            f.write("partial")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["rows.jsonl"]
    assert (tmp_path / "rows.jsonl").read_text() == "rows\n"


def test_file_patterns(tmp_path) -> None:
    for name in ("b.jsonl", "a.jsonl", "d.jsonl-00000-of-00002", "d.jsonl-00001-of-00002"):
        (tmp_path / name).write_text("")
    a, b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
    assert fileio.split_patterns(f" {a}, {b} ,") == [a, b]
    assert fileio.split_patterns([f"{a},{b}", a]) == [a, b, a]
    assert fileio.expand_pattern(str(tmp_path / "*.jsonl")) == [a, b]
    shards = [str(tmp_path / f"d.jsonl-0000{i}-of-00002") for i in range(2)]
    assert fileio.expand_pattern(str(tmp_path / "d.jsonl@2")) == shards
    assert fileio.list_files(f"{b},{tmp_path}/*.jsonl") == [b, a]  # in order, each once


def test_file_pattern_errors_name_the_pattern(tmp_path) -> None:
    with pytest.raises(ValueError, match="empty file pattern"):
        fileio.split_patterns(" , ")
    with pytest.raises(FileNotFoundError, match="matches no files"):
        fileio.expand_pattern(str(tmp_path / "none-*.jsonl"))
    (tmp_path / "d.jsonl-00000-of-00003").write_text("")
    with pytest.raises(FileNotFoundError, match="2 shards missing, e.g. .*d.jsonl-00001-of-00003"):
        fileio.list_files(str(tmp_path / "d.jsonl@3"))


def test_import_does_not_load_tensorflow() -> None:
    code = "import sys, gecko_jax.fileio; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
