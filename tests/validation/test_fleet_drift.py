"""`nvembed-trt validate --compare A B` between two model repositories of one model and two recipes (tiny fp32, the
serving tests' repository, and tiny fp16 from the precision tests' gated graph: the mixed fleet of the issue, an
index built on one and queried on the other), each served by a real `nvembed-trt serve` on free ports, one after the
other. Cost: ~1 s for the fp16 repository (its graph is the session's gated recipe, shared with the precision and
engine tests) and ~13 s for the comparison (two server starts). The bad-argument tests start nothing; those against a
stdlib http.server standing in for a URL side ~6 s together; SIGTERM: ~0.5 s with a stand-in serve, ~8 s with a real
serve and Triton."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import replace
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from conftest import SERVING_MAX_LENGTH, tritonservers_with
from nvembed_trt.calibration.corpus import stdlib_retrieval_set
from nvembed_trt.cli.main import main
from nvembed_trt.errors import InputError
from nvembed_trt.recipes import get_recipe
from nvembed_trt.serving.process import ServeProcess
from nvembed_trt.triton.meta import RepoMeta
from nvembed_trt.triton.server import pytriton_root
from nvembed_trt.validation.drift import DriftBudget


@pytest.fixture(scope="module")
def fp16_repo(gated_recipes, tmp_path_factory):
    """tiny's fp16 recipe (ModelOpt AutoCast, gated) as a repository with the serving tests' settings."""
    from nvembed_trt.triton.repository import RepoSettings, repo_from_encoder

    settings = RepoSettings(max_batch_size=8, max_length=SERVING_MAX_LENGTH, max_request_rows=64)
    return repo_from_encoder("tiny", gated_recipes["fp16"].directory, tmp_path_factory.mktemp("fleet") / "tiny-fp16",
                             settings).directory


def test_validate_compare_two_repositories_reports_the_drift_against_a_budget(tiny_repos, fp16_repo, tmp_path,
                                                                              capsys):
    try:
        pytriton_root()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"nvidia-pytriton is not installed ({exc})")
    fp32_repo = tiny_repos["engine"]
    args = ["validate", "--compare", str(fp32_repo), str(fp16_repo), "--pairs", "40"]
    assert main([*args, "--report", str(tmp_path / "drift.json")]) == 0
    report = json.loads((tmp_path / "drift.json").read_text())
    floor = get_recipe("fp16").min_cosine                      # 0.999: the registry's gate for the recipe
    assert floor <= report["cosine"]["min"] <= report["cosine"]["mean"] < 1.0
    assert all(0.0 <= v <= 1.0 for v in report["top10_agreement"].values())
    assert report["top10_agreement"]["index_a_queries_b"] >= 0.9 and report["set"]["queries"] == 40
    for side, repo, recipe in (("a", fp32_repo, "fp32"), ("b", fp16_repo, "fp16")):
        meta = RepoMeta.read(repo)
        assert report[side]["repository"] == repo.name and report[side]["url"] is None
        assert report[side]["engine"].startswith(f"plan={meta.encoder_sha256[:16]}; ")
        assert f"recipe={recipe};" in report[side]["engine"]
    out = capsys.readouterr().out
    assert f"A: repository {fp32_repo.name}: plan=" in out and "within budget" in out
    # past the budget: exit 1 naming it, test_drift_past_the_budget_exits_1_naming_it (stand-in front doors)


def test_compare_refuses_bad_sides_before_serving_anything(tiny_repos, tmp_path, capsys):
    repo = tiny_repos["engine"]
    wide = tmp_path / "wide"                    # a sidecar of the same repository, 128 dims wide: another model
    meta = RepoMeta.read(repo)
    wide.mkdir()
    meta.model_copy(update={"spec": replace(meta.spec, hidden_size=128)}).write(wide)
    (tmp_path / "empty").mkdir()
    cases = [
        (["--compare", str(tmp_path / "nowhere"), str(repo)],
         f"compare side A: '{tmp_path / 'nowhere'}' is neither a model repository folder nor a front-door URL"),
        (["--compare", str(repo), "ftp://host/v1"], "compare side B: 'ftp://host/v1' is neither"),
        (["--compare", str(repo), str(tmp_path / "empty")], f"compare side B: '{tmp_path / 'empty'}' is not a model "
                                                            f"repository ("),
        (["--compare", str(repo), str(wide)], f"A ({repo}) gives 64-dimensional embeddings and B ({wide}) 128"),
        (["--compare", str(repo), str(repo), "--pairs", "10"], "--pairs must be above 10"),
        (["--compare", str(repo), str(repo), "--model", "tiny"], "--compare measures two deployments against each "
                                                                 "other and takes no --model (got 'tiny')"),
        ([], "validate needs --model (a preset name or checkpoint directory), or --compare A B"),
        (["--model", "tiny", "--min-cosine", "0.9"], "--min-cosine: only with --compare A B"),
    ]
    for args, message in cases:
        assert main(["validate", *args]) == 2, args
        assert message in capsys.readouterr().err, args
    assert main(["client", "compare", "--a", str(tmp_path / "nowhere"), "--b", str(repo)]) == 2
    assert "compare side A:" in capsys.readouterr().err


# ---- what is checked before anything is served, and what a foreign server's answer gives (no Triton) ------------
# A stdlib http.server on a free loopback port stands in for what a URL side can be: a web server that is not our
# front door (HTML on every path, an empty model list, a 404 page), and a minimal OpenAI-style front door whose rows
# are a hash of the text (deterministic, so the drift between two of them is 0). Cost: ~1 s for the four tests.

def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255 - 0.5 for b in digest[:8]]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D102 (quiet)
        pass

    def _send(self, status: int, body: bytes | dict, kind: str = "application/json"):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        site, _, path = self.path.lstrip("/").partition("/")
        if site == "html":
            return self._send(200, b"<html><body><h1>Welcome</h1>\n<p>hello</p></body></html>", "text/html")
        if site == "empty" and path == "v1/models":
            return self._send(200, {"data": []})
        if site == "blank":
            return self._send(404, b"", "text/plain")
        if site in ("front", "noisy", "nometa", "badrows") and path == "v1/models":
            return self._send(200, {"object": "list", "data": [{"id": "fake", "dimensions": 8}]})
        if site in ("front", "noisy", "badrows") and path == "v1/metadata":
            return self._send(200, {"fingerprint": {"header": f"plan=fake-{site}"}})
        if site == "nometa" and path == "v1/metadata":
            return self._send(200, {"model": "fake"})
        self.send_error(404)                                # http.server's own HTML page

    def do_POST(self):  # noqa: N802
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/badrows/v1/embeddings":
            return self._send(200, {"data": [{"index": 0, "embedding": "not base64!"}]})
        noise = 0.05 if self.path == "/noisy/v1/embeddings" else 0.0      # another engine: rows a little off
        vectors = [np.asarray(_vector(t), "<f4") + noise * np.asarray(_vector(t[::-1]), "<f4")
                   for t in request["input"]]
        rows = [{"object": "embedding", "index": i, "embedding": base64.b64encode(v.tobytes()).decode()}
                for i, v in enumerate(vectors)]
        return self._send(200, {"object": "list", "data": rows, "model": "fake"})


@pytest.fixture(scope="module")
def web():
    """The stand-in server's base URL (http://127.0.0.1:PORT)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def nothing_served(monkeypatch):
    """Any repository side served fails the test at once."""
    def refuse(self, timeout=0):
        raise AssertionError(f"{self.repo} was served: the failure should come before anything is served")
    monkeypatch.setattr(ServeProcess, "start", refuse)


def _refused_url() -> str:
    with socket.socket() as s:                      # a port nobody listens on (bound, closed: refused)
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_url_sides_are_checked_before_a_repository_is_served_and_errors_name_side_url_and_answer(
        tiny_repos, web, nothing_served, capsys):
    repo = str(tiny_repos["engine"])
    dead = _refused_url()
    cases = [
        (f"{web}/html/v1", f"compare side B: {web}/html/v1 is not an nvembed-trt / OpenAI-style front door: GET "
                           f"{web}/html/v1/models answered 200 without a JSON object: Welcome hello"),
        (f"{web}/empty/v1", f"compare side B: {web}/empty/v1 is not an nvembed-trt / OpenAI-style front door: GET "
                            f"{web}/empty/v1/models answered 200 without `data` as a non-empty list: {{\"data\": []}}"),
        (f"{web}/nometa/v1", f"GET {web}/nometa/v1/metadata answered 200 without `fingerprint` as an object: "
                             f"{{\"model\": \"fake\"}}"),
        (f"{web}/v1", f"compare side B: GET {web}/v1/models: [404] Error response Error code: 404 Message: Not "
                      f"Found."),
        (f"{web}/blank/v1", f"compare side B: GET {web}/blank/v1/models: [404] (an empty body)"),
        (dead, f"compare side B: GET {dead}/models: cannot reach it ("),
    ]
    for url, message in cases:
        started = time.monotonic()
        assert main(["validate", "--compare", repo, url, "--pairs", "16"]) == 2, url
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and len(err) < 400, err
        assert time.monotonic() - started < 5, url
    assert main(["client", "compare", "--a", f"{web}/html/v1", "--b", repo]) == 2
    assert "compare side A: " in capsys.readouterr().err


def test_a_bad_embeddings_answer_names_the_side(web, capsys):
    assert main(["client", "compare", "--a", f"{web}/badrows/v1", "--b", f"{web}/front/v1", "--pairs", "11"]) == 2
    err = capsys.readouterr().err
    assert f"compare side A: {web}/badrows/v1 is not an nvembed-trt / OpenAI-style front door: POST " \
           f"{web}/badrows/v1/embeddings answered 200 with a row that is not" in err and err.count("\n") == 1, err


def test_budgets_and_the_report_path_are_refused_before_anything_is_served(tiny_repos, tmp_path, nothing_served,
                                                                           capsys):
    repo = str(tiny_repos["engine"])
    (tmp_path / "file").write_text("")
    cases = [
        (["--min-cosine", "2"], "--min-cosine must be in [-1, 1], got 2.0"),
        (["--min-cosine", "nan"], "--min-cosine must be in [-1, 1], got nan"),
        (["--min-top10", "-1"], "--min-top10 must be in [0, 1], got -1.0"),
        (["--report", str(tmp_path / "nowhere" / "x.json")],
         f"--report {tmp_path / 'nowhere' / 'x.json'}: its folder {tmp_path / 'nowhere'} does not exist"),
        (["--report", str(tmp_path / "file" / "x.json")], f"--report {tmp_path / 'file' / 'x.json'}: its folder"),
        (["--report", str(tmp_path)], f"--report {tmp_path} is a directory"),
    ]
    for args, message in cases:
        assert main(["validate", "--compare", repo, repo, *args]) == 2, args
        assert message in capsys.readouterr().err, args
        assert main(["client", "compare", "--a", repo, "--b", repo, *args]) == 2, args
        assert message in capsys.readouterr().err, args
    with pytest.raises(InputError, match=r"--min-top10 must be in \[0, 1\], got 1.5"):
        DriftBudget(min_top10=1.5)                   # the library refuses too


def test_the_report_says_how_many_pairs_were_asked_and_names_no_host_path(web, tmp_path, capsys):
    front = f"{web}/front/v1"
    available = len(stdlib_retrieval_set(100_000)[0])
    assert main(["client", "compare", "--a", front, "--b", front, "--pairs", "100000",
                 "--report", str(tmp_path / "drift.json")]) == 0
    report = json.loads((tmp_path / "drift.json").read_text())
    assert report["set"] == {"source": "stdlib-docstrings", "python": platform.python_version(), "asked": 100_000,
                             "queries": available, "passages": available}
    assert report["cosine"]["min"] > 0.99999 and report["a"]["engine"] == "plan=fake-front"
    assert sysconfig.get_paths()["stdlib"] not in json.dumps(report)
    out = capsys.readouterr().out
    assert f"{available} queries, {available} passages (100000 asked, {available} available from the standard " \
           f"library of Python {platform.python_version()})" in out


def test_sigterm_while_a_repository_is_served_stops_its_server(tiny_repos, monkeypatch, sigterm_later):
    """`nvembed-trt serve` stood in by a program that is never ready (fails in 3 s should SIGTERM be ignored):
    SIGTERM to the comparison stops it and exits 143 (a CI timeout, a Kubernetes Job)."""
    started = []
    original = ServeProcess.start

    def start(self, timeout=240.0):
        started.append(self)
        sigterm_later(0.3)                  # while the side is being served, however long the way there took
        return original(self, timeout)
    monkeypatch.setattr(ServeProcess, "command", property(lambda self: [sys.executable, "-c", "import time, sys; "
                                                                        "time.sleep(3); sys.exit(1)"]))
    monkeypatch.setattr(ServeProcess, "start", start)
    repo = str(tiny_repos["engine"])
    with pytest.raises(SystemExit) as info:
        main(["validate", "--compare", repo, repo, "--pairs", "16"])
    assert info.value.code == 143 and len(started) == 1
    assert started[0].process.poll() == -signal.SIGTERM            # stopped before the exit went on
    Path(started[0].stderr.name).unlink()


def test_sigterm_to_the_command_leaves_no_tritonserver(tiny_repos):
    """The whole chain with real processes: SIGTERM to `validate --compare` once its first side's tritonserver
    runs -> exit 143, serve stopped, and serve stopped its Triton. Cost: ~8 s (one Triton start and stop)."""
    try:
        pytriton_root()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"nvidia-pytriton is not installed ({exc})")
    repo = tiny_repos["engine"]
    flag = f"--model-repository={repo}"
    command = subprocess.Popen([sys.executable, "-m", "nvembed_trt", "validate", "--compare", str(repo), str(repo),
                                "--pairs", "16"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not tritonservers_with(flag) and command.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tritonservers_with(flag), "no tritonserver started"
        command.send_signal(signal.SIGTERM)
        assert command.wait(90) == 143
        assert tritonservers_with(flag) == []
        assert "terminated (SIGTERM): stopping the servers started here" in command.stderr.read()
    finally:
        command.kill()
        for pid in tritonservers_with(flag):          # what a failure left behind
            os.killpg(pid, signal.SIGKILL)


def test_drift_past_the_budget_exits_1_naming_it(web, capsys):
    args = ["client", "compare", "--a", f"{web}/front/v1", "--b", f"{web}/noisy/v1", "--pairs", "40"]
    assert main(args) == 0                                                    # within the default budget (0.99)
    assert main([*args, "--min-cosine", "0.99999"]) == 1
    out = capsys.readouterr().out
    assert "B: " + f"{web}/noisy/v1: plan=fake-noisy" in out
    assert re.search(r"over budget: min cosine 0\.99\d+ < 0\.99999 \(--min-cosine\)", out), out
