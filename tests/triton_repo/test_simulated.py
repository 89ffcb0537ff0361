"""`triton-repo --simulate [Nx]GPU:RECIPE`: the GPU-timed stand-in encoder. Generation (the engine's shapes and
limits for the profile, the timing numbers in the model config, "simulated" in the sidecar, refusals that write
nothing), the stand-in's vectors (deterministic per row, unit norm), and one `nvembed-trt serve` of a 2-device
simulated L40S shared by every face: the front door, KServe over gRPC, `client embed`, the corpus job's server
encoder, and Triton's encoder model directly (two instances run two batches at once; a batch takes at least the
card's time)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from nvembed_trt.cli.main import main
from nvembed_trt.client import EmbeddingClient
from nvembed_trt.engines.gpus import get_gpu
from nvembed_trt.errors import InputError
from nvembed_trt.performance import BatchTime
from nvembed_trt.provenance import sha256_file
from nvembed_trt.triton import RepoMeta, RepoSettings, repo_from_encoder
from nvembed_trt.triton.models.encoder_sim import StandIn
from nvembed_trt.triton.server import pytriton_root

MAX_LENGTH, MAX_BATCH = 128, 8
SIMULATION = "2xl40s:fp16"


@pytest.fixture(scope="module")
def sim_repo(tmp_path_factory):
    """The full-size model's dims and timing (no weights are made: the stand-in runs no model)."""
    return repo_from_encoder("nv-embed-v2", None, tmp_path_factory.mktemp("sim") / "repo",
                             RepoSettings(simulate=SIMULATION, max_length=MAX_LENGTH, max_batch_size=MAX_BATCH,
                                          max_request_rows=16))


def _timing(repo) -> BatchTime:
    return BatchTime(**RepoMeta.read(repo.directory).simulated["timing"])


def test_repository_has_the_profiles_shapes_and_says_simulated(sim_repo):
    repo, meta = sim_repo.directory, sim_repo.meta
    config = text_format.Parse((repo / "encoder" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.backend == "python" and config.max_batch_size == MAX_BATCH
    assert [(g.count, mc.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] == [(2, "KIND_CPU")]
    assert [i.name for i in config.input] == ["input_ids", "attention_mask", "pool_mask"]
    assert [(o.name, list(o.dims)) for o in config.output] == [("embeddings", [4096])]
    l40s = get_gpu("l40s")
    limits = json.loads(config.parameters["sim_shape_limits"].string_value)
    assert [(s["max_batch"], s["max_sequence"]) for s in limits] == [(p.batch.max, p.sequence.max)
                                                                    for p in l40s.profiles]
    assert [(s.max_batch, s.max_sequence) for s in sim_repo.spec.shape_limits] == [(8, 512), (2, 4096)]
    sim = meta.simulated
    assert (sim["simulated"], sim["name"], sim["devices"], meta.recipe) == (True, "2xl40s:fp16", 2, "fp16")
    assert meta.encoder_source == "simulated:2xl40s:fp16" and meta.spec.encoder_kind == "simulated"
    assert meta.engine is None and meta.onnx_dir is None    # a stand-in: no engine served, no plan to build
    assert "SIMULATED" in meta.encoder_runtime and "datasheet" in sim["figures"]["source"]
    assert meta.encoder_sha256 == sha256_file(repo / "encoder" / "1" / "simulation.json")
    assert sim["one_query_ms"]["32 tokens"] == pytest.approx(1000 * 15.702e9 / (864e9 * 0.896), rel=0.01)
    assert BatchTime.from_params({k: v.string_value for k, v in config.parameters.items()}) == _timing(sim_repo)


@pytest.mark.parametrize("simulate, kwargs, message", [
    ("h100", {}, r"expected \[Nx\]GPU:RECIPE"),
    ("h100:fp4", {}, "unknown recipe 'fp4'; recipes: fp32, fp16"),
    ("b200:fp8", {}, "unknown GPU profile 'b200'"),
    ("a100:fp8", {}, "recipe fp8 cannot run on a100: a100 has no fp8 matmul rate"),
    ("99xh100:fp8", {}, "99 devices; choose 1..64"),
    ("a10:fp32", {}, r"need \d+\.\d+ GiB on a10 .* more than its 22.49 GiB usable"),
    ("h100:fp8", {"encoder_instances": 2}, "one encoder instance per simulated device"),
    ("h100:fp8", {"encoder": "export/tiny"}, "an encoder folder or a simulation"),
])
def test_bad_simulations_are_refused_and_write_nothing(tmp_path, simulate, kwargs, message):
    args = {"encoder": None, **kwargs}
    with pytest.raises(InputError, match=message):
        repo_from_encoder("nv-embed-v2", args.pop("encoder"), tmp_path / "repo", RepoSettings(simulate=simulate, **args))
    assert list(tmp_path.iterdir()) == []


def test_node_of_eight_has_one_instance_per_device(tmp_path, capsys):
    assert main(["triton-repo", "--simulate", "8xh100:fp8", "--model", "tiny", "--output", str(tmp_path / "r")]) == 0
    assert "SIMULATED encoder: 8xh100:fp8 (8 device(s)" in capsys.readouterr().out
    config = text_format.Parse((tmp_path / "r" / "encoder" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.instance_group[0].count == 8


def test_stand_in_vectors_depend_on_the_row_alone():
    """The same row, alone or padded in a batch, gives the same unit vector; different rows, different vectors;
    the pool mask counts (a query and a passage of the same tokens differ)."""
    stand_in = StandIn(256, BatchTime(0.0, 0.0, 0.0, 0.0))
    rng = np.random.default_rng(1)
    ids = rng.integers(3, 32000, (5, 20)).astype(np.int32)
    attention = np.ones_like(ids)
    attention[2, 12:] = 0                       # a shorter row, right-padded
    pool = attention.copy()
    pool[0, :4] = 0
    batch = stand_in.embed({"input_ids": ids, "attention_mask": attention, "pool_mask": pool})
    alone = stand_in.embed({"input_ids": ids[2:3, :12], "attention_mask": attention[2:3, :12],
                            "pool_mask": pool[2:3, :12]})
    assert np.array_equal(alone[0], batch[2]) and np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-6)
    assert len({tuple(v) for v in batch.round(6).tolist()}) == 5
    unmasked = stand_in.embed({"input_ids": ids[:1], "attention_mask": attention[:1], "pool_mask": attention[:1]})
    assert not np.allclose(unmasked[0], batch[0])


def test_stand_in_takes_the_cards_time():
    timing = BatchTime(0.02, 1e-5, 0.0, 0.0)
    stand_in = StandIn(64, timing)
    ones = np.ones((4, 100), dtype=np.int32)
    start = time.perf_counter()
    stand_in.run({"input_ids": ones, "attention_mask": ones, "pool_mask": ones})
    assert 0.020 <= time.perf_counter() - start < 0.020 + 0.05           # 4 x 100 x 1e-5 = 4 ms < 20 ms memory
    start, cpu = time.perf_counter(), time.process_time()
    stand_in.run({"input_ids": np.ones((40, 100), np.int32), "attention_mask": np.ones((40, 100), np.int32),
                  "pool_mask": np.ones((40, 100), np.int32)})
    assert 0.040 <= time.perf_counter() - start and time.process_time() - cpu < 0.02   # asleep, not spinning


# ---- served: one `nvembed-trt serve` of the simulated repository -------------------------------------------------

@pytest.fixture(scope="module")
def served(sim_repo):
    try:
        pytriton_root()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"nvidia-pytriton is not installed ({exc})")
    from nvembed_trt.serving.process import ServeProcess

    with ServeProcess(sim_repo.directory) as process:
        yield process


TEXTS = ["What is the capital of France?", "A much longer passage about the river Seine, which flows through "
         "Paris and into the English Channel at Le Havre, carrying barges.", "short", "Paris"]


def test_front_door_answers_like_an_engine(served, sim_repo):
    client = EmbeddingClient(served.api_url)
    together = client.embed(TEXTS, "query", None, "END", len(TEXTS))
    alone = np.stack([client.embed([t], "query", None, "END", 1)[0] for t in TEXTS])
    assert together.shape == (4, 4096) and np.array_equal(together, alone)       # order kept, batch-independent
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(client.embed(TEXTS[:1], "passage", None, "END", 1)[0], together[0])
    meta = httpx.get(f"{served.api_url}/metadata").json()
    assert meta["encoder"]["kind"] == "simulated" and meta["encoder"]["artifact"]["name"] == "simulated:2xl40s:fp16"
    assert meta["simulated"]["name"] == "2xl40s:fp16" and meta["encoder"]["gpu_profile"] == "l40s"
    assert httpx.get(f"{served.api_url}/models").json()["data"][0]["simulated"] == "2xl40s:fp16"
    floor = _timing(sim_repo).memory_s
    start = time.perf_counter()
    client.embed(["one more query"], "query", None, "END", 1)
    assert time.perf_counter() - start >= floor                                 # the card's weight-streaming time


def test_kserve_client_cli_and_corpus_encoder_agree(served, tmp_path):
    from nvembed_trt.encoders.served import ServedEmbedder
    from nvembed_trt.tokenizer import INPUT_TYPES

    front = EmbeddingClient(served.api_url).embed(TEXTS, "passage", None, "END", len(TEXTS))
    kserve = EmbeddingClient(served.kserve["grpc"], "grpc").embed(TEXTS, "passage", None, "END")
    assert np.array_equal(front, kserve)
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    assert main(["client", "embed", "--url", served.api_url, "--input", str(tmp_path / "in.txt"), "--output",
                 str(tmp_path / "out.npy"), "--input-type", "passage", "--truncate", "END"]) == 0
    assert np.array_equal(np.load(tmp_path / "out.npy"), front)
    for url, protocol in ((served.api_url, "http"), (served.kserve["http"], "http")):   # a corpus job's encoder
        encoder = ServedEmbedder(url, protocol, truncate="END", batch_size=8)
        assert encoder.max_length == MAX_LENGTH
        assert np.array_equal(encoder.embed(TEXTS, INPUT_TYPES["passage"]), front)


def test_two_devices_run_two_batches_at_once(served, sim_repo):
    """Triton's encoder model directly: two 8 x 512 batches (about 0.22 s each on the simulated L40S) sent together
    finish in about the time of one, on the two instances; each still takes at least its own time."""
    from nvembed_trt.serving.backend import TritonEncoder

    seconds = _timing(sim_repo).seconds(8, 512)
    ones = np.ones((8, 512), dtype=np.int32)
    arrays = {"input_ids": ones * 7, "attention_mask": ones, "pool_mask": ones}

    async def run(count):
        encoder = TritonEncoder(served.kserve["grpc"], "encoder", tuple(arrays), "embeddings")
        await encoder.run(arrays)                                        # warm
        start = time.perf_counter()
        outs = await asyncio.gather(*[encoder.run(arrays) for _ in range(count)])
        wall = time.perf_counter() - start
        await encoder.close()
        return wall, outs
    from nvembed_trt.serving.duty import between, sample_from_text

    before = sample_from_text(httpx.get(served.kserve["metrics"]).text)
    wall, outs = asyncio.run(run(2))
    after = sample_from_text(httpx.get(served.kserve["metrics"]).text)
    assert seconds >= 0.2 and seconds <= wall < 1.5 * seconds, (wall, seconds)
    assert np.array_equal(outs[0], outs[1]) and outs[0].shape == (8, 4096)
    busy = {d: after.devices[d] - before.devices.get(d, 0.0) for d in after.devices}
    assert sorted(busy) == ["0", "1"] and all(b >= seconds for b in busy.values()), busy   # one batch each
    assert after.busy_s - before.busy_s >= 3 * seconds                                    # the warm-up's too
    assert between(before, after, 2)["overall"] > 0


def test_deploys_like_an_engine_without_a_gpu(sim_repo, tmp_path):
    """The Kubernetes bundle of a simulated repository validates strictly; its pod asks for no GPU (the stand-in
    runs on CPU) and the init step only copies the repository; --gpu is refused, naming the simulation."""
    import kubernetes_validate
    import yaml

    from nvembed_trt.deploy.bundle import deploy_k8s
    from nvembed_trt.deploy.ensure import ensure
    from nvembed_trt.deploy.spec import DeployOptions

    result = deploy_k8s(sim_repo.directory, tmp_path / "deploy")
    docs = {p.name: yaml.safe_load(p.read_text()) for p in (tmp_path / "deploy").glob("*.yaml")}
    for name in ("deployment.yaml", "service.yaml", "hpa.yaml", "pvc.yaml"):
        kubernetes_validate.validate(docs[name], "1.37.0", strict=True)
    pod = docs["deployment.yaml"]["spec"]["template"]["spec"]
    assert result.spec.encoder_kind == "simulated" and not result.spec.uses_gpu
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"].get("limits", {}) and "affinity" not in pod
    assert "Dockerfile.builder" not in result.files
    assert ensure(sim_repo.directory, tmp_path / "no-onnx", tmp_path / "models") == \
        f"copied {sim_repo.directory} to {tmp_path / 'models'}"
    with pytest.raises(InputError, match="encoder is SIMULATED .2xl40s:fp16. and needs no GPU"):
        deploy_k8s(sim_repo.directory, tmp_path / "again", DeployOptions(gpu="l40s"))


def test_open_loop_load_on_the_simulated_card(served, sim_repo, tmp_path, capsys):
    """`nvembed-trt loadgen` at 30 requests/s: every request answered 200, no answer faster than the card's
    weight-streaming time, and the achieved rate is the offered one (the card is far from saturated)."""
    (tmp_path / "q.txt").write_text("\n".join(TEXTS) + "\n")
    assert main(["loadgen", "--url", served.api_url, "--rate", "30", "--duration", "2", "--warmup", "0.3",
                 "--input", str(tmp_path / "q.txt"), "--output", str(tmp_path / "load.json")]) == 0
    report = json.loads((tmp_path / "load.json").read_text())
    assert set(report["statuses"]) == {"200"} and report["not_sent"] == 0 and report["model"] == "nv-embed-v2"
    assert report["p50_ms"] >= 1000 * _timing(sim_repo).memory_s
    assert report["achieved_per_s"] == pytest.approx(30, rel=0.35)
    assert "answered 200/s" in capsys.readouterr().out


def _metric(text: str, name: str) -> float | None:
    import re

    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.M)
    return float(match.group(1)) if match else None


def test_duty_cycle_on_the_front_doors_metrics(served):
    """/v1/metrics carries the encoder's busy time (Triton's counters, polled every 2 s), its devices and the duty
    cycle, overall and per simulated device."""
    EmbeddingClient(served.api_url).embed(TEXTS, "query", None, "END", 4)
    for _ in range(50):
        text = httpx.get(f"{served.api_url}/metrics").text
        if (_metric(text, "nvembed_encoder_busy_seconds") or 0) > 0 and "device_duty_cycle{" in text:
            break
        time.sleep(0.2)
    assert _metric(text, "nvembed_encoder_devices") == 2 and _metric(text, "nvembed_encoder_busy_seconds") > 0
    assert 0 <= _metric(text, "nvembed_encoder_duty_cycle") <= 1
    assert 'nvembed_encoder_device_duty_cycle{device="0"}' in text


def test_two_front_door_workers(sim_repo):
    """serve --workers 2: every answer right and in order under concurrency, /v1/metrics summed over both
    processes, a killed worker started again (ready before it serves), SIGTERM stops all."""
    import os
    import re
    import signal
    from concurrent.futures import ThreadPoolExecutor

    from nvembed_trt.serving.process import ServeProcess

    with ServeProcess(sim_repo.directory, ("--workers", "2")) as process:
        pids = [int(p) for p in re.search(r"2 front-door workers, pids (\d+), (\d+)", process.ready_line).groups()]
        client = EmbeddingClient(process.api_url)
        want = client.embed(TEXTS, "query", None, "END", 4)
        orders = [list(np.random.default_rng(i).permutation(4)) for i in range(24)]
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda o: EmbeddingClient(process.api_url).embed([TEXTS[i] for i in o], "query",
                                                                                  None, "END", 4), orders))
        assert all(np.array_equal(g, want[o]) for g, o in zip(got, orders))
        text = httpx.get(f"{process.api_url}/metrics").text
        assert _metric(text, 'nvembed_requests_total{route="/v1/embeddings",status="200"}') == 1 + len(orders)
        os.kill(pids[1], signal.SIGKILL)
        for _ in range(150):
            if "healed: front-door worker 1 ready again" in process.log():
                break
            time.sleep(0.1)
        assert "exited with -9" in process.log() and "healed: front-door worker 1 ready again" in process.log()
        assert all(np.array_equal(client.embed(TEXTS, "query", None, "END", 4), want) for _ in range(6))
        assert httpx.get(f"{process.api_url}/health/ready").json()["ready"] is True
    assert process.process.returncode == 0
    assert not [p for p in pids[:1] if os.path.exists(f"/proc/{p}")]


def test_open_loop_bench_capacity_is_the_model(sim_repo):
    """bench-serving --open-loop offers loads as shares of the simulated card's capacity: the devices' texts/s at
    full batches, from the same performance model the stand-in sleeps by."""
    from nvembed_trt.serving.service import read_repository
    from nvembed_trt.tokenizer import EmbeddingTokenizer
    from nvembed_trt.validation.open_loop_bench import capacity, workload

    meta, spec = read_repository(sim_repo.directory)
    tokenizer = EmbeddingTokenizer.from_dir(sim_repo.directory / "nv_embed" / "1" / "tokenizer")
    wl = workload(tokenizer, "queries", "nv-embed-v2", count=12)
    lengths = [t for row in wl["tokens"] for t in row]
    assert len(wl["bodies"]) == 12 and wl["texts"] == (1,) * 12 and 14 <= min(lengths) <= max(lengths) <= 52
    timing = _timing(sim_repo)
    cap = capacity(meta, spec, wl)
    low, high = 2 * 8 / timing.seconds(8, max(lengths)), 2 * 8 / timing.seconds(8, min(lengths))
    assert low * 0.999 <= cap["texts_per_s"] <= high * 1.001
    assert cap["devices"] == 2 and cap["requests_per_s"] == pytest.approx(cap["texts_per_s"])
