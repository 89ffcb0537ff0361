"""`nvembed-trt validate --compare A B` between two model repositories of one model and two recipes (tiny fp32, the
serving tests' repository, and tiny fp16 from the precision tests' gated graph: the mixed fleet of the issue, an
index built on one and queried on the other), each served by a real `nvembed-trt serve` on free ports, one after the
other. Cost: ~1 s for the fp16 repository (its graph is the session's gated recipe, shared with the precision and
engine tests) and ~13 s for the comparison (two server starts). The bad-argument test starts nothing."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from conftest import SERVING_MAX_LENGTH
from nvembed_trt.cli.main import main
from nvembed_trt.recipes import get_recipe
from nvembed_trt.triton.meta import RepoMeta
from nvembed_trt.triton.server import pytriton_root


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
    # past the budget: exit 1 naming it, the same report_drift path `client compare`'s test takes (one server)


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
