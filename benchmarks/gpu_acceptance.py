"""The first hour on a GPU host with only pip (no Docker): one prepared run, about 10 minutes on an H100/H200.

    python benchmarks/gpu_acceptance.py [--out build/gpu-acceptance] [--dry-run] [--no-install] [--budget-s 600]
    make gpu-acceptance

Steps, each reported (passed / failed / skipped with its reason); a failed step never stops the next, and a step
that needs a failed one is skipped saying which:
  setup      CUDA torch (the venv has the CPU wheel) and the tensorrt flavor pinned to the NGC table, with pip
  doctor     nvembed-trt doctor for the GPU profile of the card present
  gpu-tests  the suite's `gpu` / `cuda_torch` tests
  engines    tiny (fp16, int8, fp8 where the card has it: compute capability 8.9+) and full-width-2l (fp16) built with
             the `tensorrt` flavor for the present card; EngineRunner against the PyTorch fp32 reference on the GPU,
             per recipe, at the recipe's gate
  triton     the tiny fp16 engine served by the bundled tritonserver through the python-backend TensorRT encoder
             (triton-repo --encoder-backend python), KServe answers against EngineRunner
  latency    EngineRunner p50 per (batch, sequence) beside its physical floor (validation/floors.py)
It writes report.json and report.md into --out. Without a GPU (or with --dry-run) every GPU step is skipped with its
reason and the report is still written. Offline hosts: pip honours PIP_FIND_LINKS / PIP_NO_INDEX for local wheels."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nvembed_trt.hostgpu import TORCH_CUDA_INDEX, detect_gpus, gpu_run_problem, torch_build

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODELS = {"tiny": ("fp16", "int8", "fp8"), "full-width-2l": ("fp16",)}
FP8_MIN_CC = (8, 9)
SHAPES = {"batch": (1, 8), "seq": (32, 128, 512)}


@dataclass
class Step:
    name: str
    status: str = "skipped"          # passed | failed | skipped
    seconds: float = 0.0
    reason: str = ""
    details: dict = field(default_factory=dict)


class StepFailed(Exception):
    """A step's own verdict (a gate missed, a command failed): reported, the run goes on."""


def sh(cmd: list[str], timeout: float, log: Path) -> str:
    """Run a command, its output appended to log; StepFailed with the output's tail when it fails."""
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(1.0, timeout), cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"timed out after {exc.timeout:.0f} s: {' '.join(cmd[:4])}") from None
    with log.open("a") as fh:
        fh.write(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-4:])
        raise StepFailed(f"exit {done.returncode}: {' '.join(cmd[:4])}...: {tail[-600:]}")
    return done.stdout


class Acceptance:
    def __init__(self, args: argparse.Namespace):
        self.args, self.out = args, args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = self.out / "commands.log"
        self.start = time.monotonic()
        self.steps: list[Step] = []
        self.gpus = detect_gpus(fresh=True)
        gpu = self.gpus.first()
        self.no_gpu = "--dry-run: GPU steps not run" if args.dry_run else (
            None if gpu else f"no NVIDIA GPU on this host ({self.gpus.problem})")
        self.cc = tuple(int(x) for x in gpu.compute_capability.split(".")) if gpu else None
        self.profile: str | None = None   # after setup: the registry imports torch, which setup may replace
        self.engines: dict[tuple[str, str], Path] = {}

    def choose_profile(self) -> None:
        """The registry profile of the present card: its compute capability, the largest memory it has. Called after
        setup: the registry imports torch, which setup may have replaced with the CUDA build."""
        from nvembed_trt.engines.gpus import gpu_registry

        gpu = self.gpus.first()
        if gpu is None or self.no_gpu:
            return
        fits = [g for g in gpu_registry().values()
                if g.compute_capability == gpu.compute_capability and g.memory_mib <= gpu.memory_mib]
        self.profile = max(fits, key=lambda g: g.memory_mib).name if fits else None

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.start)

    def run(self, name: str, fn, needs_gpu: bool = True, after: tuple[str, ...] = ()) -> Step:
        step = Step(name)
        failed = [s.name for s in self.steps if s.name in after and s.status != "passed"]
        if needs_gpu and self.no_gpu:
            step.reason = self.no_gpu
        elif failed:
            step.reason = f"needs {', '.join(failed)}, which did not pass"
        elif self.left() <= 0:
            step.reason = f"the {self.args.budget_s:.0f} s budget is spent"
        else:
            began = time.monotonic()
            try:
                step.details = fn() or {}
                step.status = "passed"
            except StepFailed as exc:
                step.status, step.reason = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - any step's crash is reported and the next step runs
                step.status = "failed"
                step.reason = f"{type(exc).__name__}: {exc}"
                step.details = {"traceback": traceback.format_exc().splitlines()[-8:]}
            step.seconds = round(time.monotonic() - began, 1)
        self.steps.append(step)
        print(f"[{step.status:>7}] {name} ({step.seconds:.0f} s){': ' + step.reason if step.reason else ''}",
              flush=True)
        return step

    # --- the steps ----------------------------------------------------------------------------------------------

    def setup(self) -> dict:
        from nvembed_trt.ngc_triton import tensorrt_pin
        from nvembed_trt.doctor import module_version

        done = {}
        torch = torch_build()
        if torch.problem() and not self.args.no_install:
            base = (torch.version or "2.13.0").split("+")[0]
            sh([str(BIN / "python"), "-m", "pip", "install", "--quiet", "--force-reinstall", "--index-url",
                TORCH_CUDA_INDEX, "--extra-index-url", "https://pypi.org/simple", f"torch=={base}",
                "numpy>=1.26,<2"], self.left(), self.log)
            done["torch"] = f"installed torch=={base} from {TORCH_CUDA_INDEX}"
        if module_version("tensorrt") is None and not self.args.no_install:
            sh([str(BIN / "python"), "-m", "pip", "install", "--quiet", tensorrt_pin()], self.left(), self.log)
            done["tensorrt"] = f"installed {tensorrt_pin()}"
        problem = gpu_run_problem(needs_torch=True, torch=torch_build())
        if problem or module_version("tensorrt") is None:
            raise StepFailed(problem or f"tensorrt is not installed ({tensorrt_pin()})")
        return {**done, "torch": torch_build().version, "tensorrt": module_version("tensorrt")}

    def doctor(self) -> dict:
        from nvembed_trt.doctor import diagnose

        result = diagnose(self.profile, workdir=self.out)
        (self.out / "doctor.json").write_text(json.dumps(result.to_json(), indent=2))
        if self.profile is None and self.gpus.first() is not None:
            raise StepFailed(f"no GPU profile for {self.gpus.first().name}: nvembed-trt gpus lists them")
        if result.profile is not None and not result.ok:
            raise StepFailed("; ".join(result.profile["why"]))
        return {"profile": result.profile, "missing": [f"{c.stage}/{c.item}" for c in result.checks if c.ok is False]}

    def gpu_tests(self) -> dict:
        out = sh([str(BIN / "python"), "-m", "pytest", "-m", "gpu or cuda_torch", "-q", "-rs", "-p", "no:cacheprovider",
                  "tests"], min(self.left(), 240), self.log)
        return {"summary": out.strip().splitlines()[-1]}

    def engines_step(self, model: str) -> dict:
        from nvembed_trt.recipes import RECIPES

        export, calibration = self.out / "export" / model, self.out / "calibration" / model
        sh([str(BIN / "nvembed-trt"), "export", "--model", model, "--output", str(export), "--overwrite"],
           self.left(), self.log)
        sh([str(BIN / "nvembed-trt"), "calibrate", "--model", model, "--output", str(calibration), "--overwrite"],
           self.left(), self.log)
        if self.profile is None:
            raise StepFailed(f"no GPU profile for {self.gpus.first().name} ({self.gpus.first().compute_capability}): "
                             f"nvembed-trt gpus lists them")
        results, failures = {}, []
        for recipe in MODELS[model]:
            if recipe == "fp8" and self.cc < FP8_MIN_CC:
                results[recipe] = {"skipped": f"fp8 needs compute capability 8.9+, this card is {self.cc}"}
                continue
            try:
                graph = export / recipe
                sh([str(BIN / "nvembed-trt"), "precision", "--onnx", str(export / "model.onnx"), "--recipe", recipe,
                    "--calibration", str(calibration), "--output", str(graph), "--overwrite"], self.left(), self.log)
                engine = self.out / "engines" / self.profile / model / recipe
                sh([str(BIN / "nvembed-trt"), "build", "--onnx", str(graph / "model.onnx"), "--gpu", self.profile,
                    "--flavor", "tensorrt", "--output", str(engine), "--overwrite"], self.left(), self.log)
                results[recipe] = parity(model, engine, RECIPES[recipe].min_cosine)
                self.engines[(model, recipe)] = engine
                if not results[recipe]["passed"]:
                    failures.append(f"{recipe}: min cosine {results[recipe]['cosine_min']:.5f} < "
                                    f"{RECIPES[recipe].min_cosine}")
            except StepFailed as exc:
                results[recipe], failures = {"failed": str(exc)}, failures + [f"{recipe}: {exc}"]
        if failures:
            raise StepFailed("; ".join(failures))
        return results

    def triton(self) -> dict:
        from nvembed_trt.client import EmbeddingClient
        from nvembed_trt.engines.runner import EngineRunner
        from nvembed_trt.serving.process import free_ports
        from nvembed_trt.triton import TritonServer
        from nvembed_trt.triton.meta import RepoMeta
        from nvembed_trt.triton.repository import RepoSettings, repo_from_encoder

        if ("tiny", "fp16") not in self.engines:
            raise StepFailed("the tiny fp16 engine was not built (see engines tiny)")
        engine = self.engines[("tiny", "fp16")]
        repo = repo_from_encoder("tiny", engine, self.out / "triton_repo" / "tiny",
                                 RepoSettings(max_length=128, encoder_backend="python", overwrite=True)).directory
        texts = sample_texts()
        with TritonServer(repo, *free_ports(3), log_path=self.out / "tritonserver.log") as server:
            served = EmbeddingClient(server.endpoints["http"]).embed(texts, batch_size=8)
        runner = EngineRunner(engine)
        from nvembed_trt.embedder import Embedder

        tokenizer = Embedder.from_model("tiny", progress=False).tokenizer
        direct = [runner.run(tokenizer(texts[i:i + 8], "", 128)) for i in range(0, len(texts), 8)]
        cos = cosine_rows(served, _concat(direct))
        if cos.min() < 0.9999:
            raise StepFailed(f"served embeddings differ from EngineRunner's: min cosine {cos.min():.6f}")
        return {"repository": str(repo), "encoder_runtime": RepoMeta.read(repo).encoder_runtime,
                "texts": len(texts), "cosine_min_vs_engine": float(cos.min())}

    def latency(self) -> dict:
        from nvembed_trt.embedder import Embedder
        from nvembed_trt.presets import PRESETS
        from nvembed_trt.validation.bench import bench_grid
        from nvembed_trt.validation.floors import measure_floors
        from nvembed_trt.validation.runtimes import engine_runtime

        rows = []
        for (model, recipe), engine in sorted(self.engines.items()):
            cfg = PRESETS[model].config
            tokenizer = Embedder.from_model(model, progress=False).tokenizer
            runtime = engine_runtime(engine, tokenizer)
            try:
                rows += [{"model": model, **r} for r in bench_grid(
                    runtime, tokenizer, SHAPES["batch"], SHAPES["seq"], 3, 20, measure_floors(cfg, {recipe}), cfg)]
            finally:
                runtime.close()
        if not rows:
            raise StepFailed("no engine was built")
        return {"rows": rows}

    # --- report ---------------------------------------------------------------------------------------------

    def report(self) -> dict:
        gpu = self.gpus.first()
        report = {"kind": "gpu-acceptance", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "host": {"platform": platform.platform(), "python": platform.python_version(),
                           "gpus": self.gpus.describe(), "profile": self.profile},
                  "dry_run": self.args.dry_run, "budget_s": self.args.budget_s,
                  "total_s": round(time.monotonic() - self.start, 1),
                  "passed": all(s.status != "failed" for s in self.steps) and not self.no_gpu,
                  "steps": [asdict(s) for s in self.steps]}
        (self.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (self.out / "report.md").write_text(markdown(report, gpu.name if gpu else "no GPU"))
        return report


def sample_texts() -> list[str]:
    lines = (ROOT / "examples" / "sample.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()][:32]


def _concat(parts):
    import numpy as np

    return np.concatenate(parts)


def cosine_rows(a, b):
    from nvembed_trt.pooling import cosine_rows as rows

    return rows(a, b)


_REFERENCES: dict = {}


def parity(model: str, engine: Path, gate: float) -> dict:
    """EngineRunner against the PyTorch fp32 reference on the GPU, on the sample texts in batches the engine takes."""
    from nvembed_trt.embedder import Embedder
    from nvembed_trt.engines.runner import EngineRunner

    if model not in _REFERENCES:
        _REFERENCES.clear()                     # one reference model on the GPU at a time
        _REFERENCES[model] = Embedder.from_model(model, device="cuda", progress=False)
    reference, runner = _REFERENCES[model], EngineRunner(engine)
    texts, step = sample_texts(), min(8, runner.meta.serving.max_batch_size)
    got = _concat([runner.run(reference.tokenizer(texts[i:i + step], "", 128)) for i in range(0, len(texts), step)])
    want = _concat([reference.embed_batch(texts[i:i + step], "", 128) for i in range(0, len(texts), step)])
    cos = cosine_rows(got, want)
    return {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "gate": gate,
            "passed": bool(cos.min() >= gate), "rows": len(texts), "engine_bytes": (engine / "model.plan").stat().st_size}


def markdown(report: dict, device: str) -> str:
    lines = [f"# GPU acceptance: {device} ({report['host']['profile'] or 'no profile'})", "",
             f"{report['date']}, {report['total_s']} s of a {report['budget_s']:.0f} s budget"
             + (", dry run" if report["dry_run"] else "") + f"; verdict: {'passed' if report['passed'] else 'NOT passed'}",
             "", "| step | status | seconds | reason |", "| --- | --- | --- | --- |"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} | {s['reason'] or ''} |" for s in report["steps"]]
    for s in report["steps"]:
        if s["name"] == "doctor" and s["details"].get("missing"):
            lines += ["", f"doctor (doctor.json): missing {', '.join(s['details']['missing'])}"]
        if s["name"].startswith("engines") and s["details"]:
            lines += ["", f"## {s['name']}: EngineRunner vs PyTorch fp32", "", "| recipe | min cosine | gate |",
                      "| --- | --- | --- |"]
            lines += [f"| {r} | {d.get('cosine_min', d.get('skipped', d.get('failed', '')))} | {d.get('gate', '')} |"
                      for r, d in s["details"].items()]
        if s["name"] == "latency" and s["details"]:
            lines += ["", "## Latency beside its floor (EngineRunner, CUDA events)", "",
                      "| model | recipe | batch | seq | p50 ms | floor ms | floor / p50 | bound |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- |"]
            lines += [f"| {r['model']} | {r['recipe']} | {r['batch']} | {r['seq']} | {r['p50_ms']:.3f} | "
                      f"{r.get('floor_ms', float('nan')):.3f} | {r.get('floor_fraction', float('nan')):.2f} | "
                      f"{r.get('floor_kind', '')} |" for r in s["details"]["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "build" / "gpu-acceptance")
    p.add_argument("--dry-run", action="store_true", help="run no GPU step (each skipped, saying so); write the report")
    p.add_argument("--no-install", action="store_true", help="install nothing with pip (report what is missing)")
    p.add_argument("--budget-s", type=float, default=600.0, help="steps not started by then are skipped")
    args = p.parse_args(argv)
    run = Acceptance(args)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run.run("setup", run.setup)
    run.choose_profile()
    run.run("doctor", run.doctor, needs_gpu=False)
    run.run("gpu-tests", run.gpu_tests, after=("setup",))
    for model in MODELS:
        run.run(f"engines {model}", lambda m=model: run.engines_step(m), after=("setup",))
    run.run("triton", run.triton, after=("setup",))
    run.run("latency", run.latency, after=("setup",))
    report = run.report()
    print(f"report: {run.out / 'report.md'} and report.json ({'passed' if report['passed'] else 'not passed'})")
    if args.dry_run:    # the dry run itself: every step ran or was skipped, none failed
        return 0 if all(s.status != "failed" for s in run.steps) else 1
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
