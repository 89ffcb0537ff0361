"""`nvembed-trt` end to end: files in, .npy + sidecar out, clear errors, nothing partial left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nvembed_trt.presets import PRESETS
from nvembed_trt.cli.main import COMMANDS, build_parser, main
from nvembed_trt.tokenizer import INPUT_TYPES
from texts import SENTENCES

BIN = Path(sys.executable).parent


@pytest.fixture
def jsonl(tmp_path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(SENTENCES)))
    return path


def embed(*args: str) -> int:
    return main(["embed", "--model", "tiny", *args])


def test_jsonl_to_npy_matches_library(tmp_path, jsonl, tiny, capsys):
    out = tmp_path / "out" / "emb.npy"
    assert embed("--input", str(jsonl), "--output", str(out), "--batch-size", "3") == 0
    vectors = np.load(out)
    assert vectors.shape == (len(SENTENCES), 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, tiny.encode(SENTENCES), atol=1e-6)
    assert str(out) in capsys.readouterr().out
    meta = json.loads(out.with_name("emb.npy.json").read_text())
    assert meta["output"]["shape"] == [len(SENTENCES), 64] and meta["input"]["count"] == len(SENTENCES)
    assert len(meta["input"]["sha256"]) == 64 and meta["model"]["preset"] == "tiny"
    assert meta["versions"]["torch"].startswith("2.")


def test_plain_text_skips_blank_lines(tmp_path, tiny):
    src = tmp_path / "in.txt"
    src.write_text("first line\n\n   \nsecond\tline\n")
    out = tmp_path / "o.npy"
    assert embed("--input", str(src), "--output", str(out)) == 0
    np.testing.assert_allclose(np.load(out), tiny.encode(["first line", "second\tline"]), atol=1e-6)


def test_input_type_query_equals_instruction_flag(tmp_path, jsonl):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert embed("--input", str(jsonl), "--output", str(a), "--input-type", "query") == 0
    assert embed("--input", str(jsonl), "--output", str(b), "--instruction", INPUT_TYPES["query"]) == 0
    assert np.array_equal(np.load(a), np.load(b))


def test_stdin_through_console_script(tmp_path, tiny):
    out = tmp_path / "stdin.npy"
    proc = subprocess.run([str(BIN / "nvembed-trt"), "embed", "--model", "tiny", "--input", "-",
                           "--output", str(out), "--input-type", "query"],
                          input="héllo\nwörld 🤖\n".encode(), capture_output=True, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr.decode()
    np.testing.assert_allclose(np.load(out), tiny.encode(["héllo", "wörld 🤖"], input_type="query"), atol=1e-6)


def test_help_lists_every_subcommand():
    proc = subprocess.run([str(BIN / "nvembed-trt"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for command in COMMANDS:
        assert command in proc.stdout


def test_the_lazy_command_map_matches_what_the_modules_register():
    registered = build_parser()._subparsers._group_actions[0].choices
    assert sorted(registered) == sorted(COMMANDS)
    for command in COMMANDS:   # each command line builds only its own module's parser, and it has the command
        assert command in build_parser(command)._subparsers._group_actions[0].choices


@pytest.mark.parametrize("content, message", [
    (b"", "holds no inputs"),
    (b"\n \n", "holds no inputs"),
    (b"caf\xe9 latin-1\n", "not valid UTF-8 at byte 3"),
    (b'{"text": 5}\n', "in.jsonl:1: each JSON line must be an object with a string field 'text'"),
    (b'{"text": "ok"}\n{broken\n', "in.jsonl:2: not valid JSON"),
])
def test_bad_input_files(tmp_path, capsys, content, message):
    src, out = tmp_path / "in.jsonl", tmp_path / "o.npy"
    src.write_bytes(content)
    assert embed("--input", str(src), "--output", str(out)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("args, message", [
    (["--max-length", "1"], "max_length must be an integer >= 2 (BOS plus one token), got 1"),
    (["--max-length", "99999"], "max_length 99999 exceeds the model's max_position_embeddings 32768"),
    (["--batch-size", "0"], "batch_size must be an integer >= 1, got 0"),
])
def test_bad_options(tmp_path, jsonl, capsys, args, message):
    out = tmp_path / "o.npy"
    assert embed("--input", str(jsonl), "--output", str(out), *args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("model, message", [
    ("tiniest", f"unknown model 'tiniest': not a preset ({', '.join(PRESETS)}) and no such directory"),
    ("./no/such/checkpoint", "checkpoint directory not found: ./no/such/checkpoint"),
])
def test_unknown_model(tmp_path, jsonl, capsys, model, message):
    assert main(["embed", "--model", model, "--input", str(jsonl), "--output", str(tmp_path / "o.npy")]) == 2
    assert message in capsys.readouterr().err


def test_missing_input_and_bad_output(tmp_path, jsonl, capsys):
    assert embed("--input", str(tmp_path / "none.txt"), "--output", str(tmp_path / "o.npy")) == 2
    assert "input file not found" in capsys.readouterr().err
    assert embed("--input", str(jsonl), "--output", str(tmp_path / "o.txt")) == 2
    assert "output must end in .npy, got" in capsys.readouterr().err


def test_instruction_and_input_type_are_exclusive(tmp_path, jsonl):
    with pytest.raises(SystemExit) as info:
        embed("--input", str(jsonl), "--output", str(tmp_path / "o.npy"), "--instruction", "x",
              "--input-type", "query")
    assert info.value.code == 2


def test_checkpoint_command_then_embed_from_directory(tmp_path, capsys, tiny):
    ckpt = tmp_path / "ckpt"
    assert main(["checkpoint", "--model", "tiny", "--output", str(ckpt), "--max-shard-size", "1MB"]) == 0
    assert (ckpt / "model.safetensors.index.json").is_file()
    src, out = tmp_path / "in.txt", tmp_path / "o.npy"
    src.write_text("\n".join(SENTENCES[:3]))
    assert main(["embed", "--model", str(ckpt), "--input", str(src), "--output", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), tiny.encode(SENTENCES[:3]), atol=1e-6)  # same preset seed
    meta = json.loads((ckpt / "nvembed-trt.json").read_text())
    assert meta["seed"] == 1234 and meta["parameters"] == 2_212_096
    assert main(["checkpoint", "--model", "tiny", "--output", str(ckpt), "--max-shard-size", "1MB"]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err


def test_bad_shard_size(tmp_path, capsys):
    assert main(["checkpoint", "--model", "tiny", "--output", str(tmp_path / "c"), "--max-shard-size", "5XB"]) == 2
    assert "size must look like 5GB" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
