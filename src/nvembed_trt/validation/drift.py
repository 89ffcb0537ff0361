"""Fleet drift: what a mixed fleet's clients see when two deployments of the same model answer differently (H100
fp8 and L40S fp16 behind one service, an index built on one and queried on the other). Each side is a running front
door (a URL) or a model repository, served here on free loopback ports for the comparison (one at a time: A's set is
embedded and its server stopped before B's starts). Both embed the held-out retrieval set (standard-library
docstrings: summary lines as queries, bodies as passages, never the calibration text); the report gives the row
cosine between them, the top-10 agreement of retrieval when the index is A's and the queries B's (the mixed fleet)
and when both are B's, each engine's fingerprint, and whether the drift is within the budget. Every error from a
side says which ("compare side A: ..."), and every URL side is asked for its models and its engine before any
repository is served."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..calibration.corpus import stdlib_retrieval_set, stdlib_shortfall
from ..client import EmbeddingClient, is_front_door
from ..errors import InputError, NVEmbedError
from ..pooling import cosine_rows
from ..precision.verify import top_k_agreement
from ..serving.process import ServeProcess
from ..triton.meta import RepoMeta

CHECK_TIMEOUT_S = 10.0     # a URL side's models and metadata, asked before anything is served


@dataclass(frozen=True)
class DriftBudget:
    min_cosine: float = 0.99       # every row, queries and passages
    min_top10: float = 0.9         # mean top-10 agreement of the mixed fleet (A's index, B's queries) with A alone

    def __post_init__(self):
        for flag, value, low in (("--min-cosine", self.min_cosine, -1.0), ("--min-top10", self.min_top10, 0.0)):
            if not low <= value <= 1.0:       # NaN fails too
                raise InputError(f"{flag} must be in [{low:g}, 1], got {value}")


class SideError(NVEmbedError):
    """What went wrong on one side of a comparison, the side named first."""


@dataclass(frozen=True)
class DriftSide:
    """One side of the comparison: a running front door (url), or a model repository served for it."""

    name: str                            # "A" or "B"
    url: str | None = None
    repository: Path | None = None
    meta: RepoMeta | None = None

    @classmethod
    def parse(cls, name: str, value: str | Path) -> DriftSide:
        text = str(value)
        if is_front_door(text):
            return cls(name, url=text)
        if not Path(text).is_dir():
            raise InputError(f"compare side {name}: {text!r} is neither a model repository folder nor a front-door "
                             f"URL (http(s)://host:port/v1)")
        try:
            meta = RepoMeta.read(text)
        except InputError as exc:
            raise InputError(f"compare side {name}: {text!r} is not a model repository ({exc})") from exc
        return cls(name, repository=Path(text), meta=meta)

    @contextmanager
    def named(self) -> Iterator[None]:
        """Errors raised inside, prefixed with the side's name."""
        try:
            yield
        except NVEmbedError as exc:
            if str(exc).startswith("compare side "):
                raise
            raise SideError(f"compare side {self.name}: {exc}") from exc

    def check(self, api_key: str | None = None) -> int | None:
        """A URL side answers GET /v1/models and /v1/metadata (with an engine fingerprint), within seconds: the
        width of its rows when its models say (None for a repository, whose sidecar says)."""
        if self.url is None:
            return None
        with self.named():
            client = EmbeddingClient(self.url, timeout_s=CHECK_TIMEOUT_S, api_key=api_key)
            client.front_door.metadata()
            width = client.front_door.models()[0].get("dimensions")
        return width if isinstance(width, int) else None

    def describe(self) -> dict:
        """How the report names the side: the repository's folder name, or the URL."""
        return {"repository": self.repository.name if self.repository else None, "url": self.url}

    @contextmanager
    def front_door(self, tritonserver: Path | str | None = None) -> Iterator[str]:
        """The side's front-door URL; a repository is served (and stopped on the way out, failure or not)."""
        if self.url is not None:
            yield self.url
            return
        with ServeProcess(self.repository, ("--tritonserver", str(tritonserver)) if tritonserver else ()) as served:
            yield served.api_url


def same_width(a: str, dims_a: int | None, b: str, dims_b: int | None) -> None:
    """Two deployments of one model give rows of one width; anything else is two models, not drift (None: not
    known yet)."""
    if None not in (dims_a, dims_b) and dims_a != dims_b:
        raise InputError(f"A ({a}) gives {dims_a}-dimensional embeddings and B ({b}) {dims_b}: these are two "
                         f"different models; compare two deployments of one model")


def embed_set(side: DriftSide, queries: list[str], passages: list[str], api_key: str | None = None,
              tritonserver: Path | str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The set through one side's front door: (queries, passages, the engine's fingerprint header)."""
    with side.named(), side.front_door(tritonserver) as url:
        client = EmbeddingClient(url, api_key=api_key)
        engine = client.front_door.metadata()["fingerprint"]["header"]
        return (client.embed(queries, "query", truncate="END"), client.embed(passages, "passage", truncate="END"),
                engine)


def fleet_drift(a: str | Path, b: str | Path, budget: DriftBudget = DriftBudget(), pairs: int = 160,
                api_key: str | None = None, tritonserver: Path | str | None = None) -> dict:
    """a, b: front-door URLs or model repository folders (served one after the other on free loopback ports,
    with `tritonserver` if given). Both sides are checked before anything is served: a repository's sidecar is read,
    a URL is asked for its models and its engine."""
    if pairs <= 10:
        raise InputError(f"--pairs must be above 10 (top-10 agreement over 10 passages or fewer is always 1), "
                         f"got {pairs}")
    side_a, side_b = DriftSide.parse("A", a), DriftSide.parse("B", b)
    widths = [side.meta.spec.hidden_size if side.meta else side.check(api_key) for side in (side_a, side_b)]
    same_width(str(a), widths[0], str(b), widths[1])
    queries, passages, source = stdlib_retrieval_set(pairs)
    held_out = {**{k: source[k] for k in ("source", "python", "asked")},   # no host path: the report is shared
                "queries": len(queries), "passages": len(passages)}
    qa, pa, engine_a = embed_set(side_a, queries, passages, api_key, tritonserver)
    qb, pb, engine_b = embed_set(side_b, queries, passages, api_key, tritonserver)
    same_width(str(a), qa.shape[1], str(b), qb.shape[1])
    cosines = np.concatenate([cosine_rows(qa, qb), cosine_rows(pa, pb)])
    mixed, both_b = top_k_agreement(qa, pa, qb, pa), top_k_agreement(qa, pa, qb, pb)
    failures = []
    if cosines.min() < budget.min_cosine:
        failures.append(f"min cosine {cosines.min():.5f} < {budget.min_cosine} (--min-cosine)")
    if mixed < budget.min_top10:
        failures.append(f"mixed-fleet top-10 agreement {mixed:.3f} < {budget.min_top10} (--min-top10)")
    return {"a": {**side_a.describe(), "engine": engine_a}, "b": {**side_b.describe(), "engine": engine_b},
            "set": held_out,
            "cosine": {"min": float(cosines.min()), "mean": float(cosines.mean())},
            "top10_agreement": {"index_a_queries_b": mixed, "all_b": both_b},
            "budget": {"min_cosine": budget.min_cosine, "min_top10": budget.min_top10},
            "within_budget": not failures, "failures": failures}


def drift_summary(report: dict) -> str:
    """The lines `validate --compare` and `client compare` print."""
    def side(s: dict) -> str:
        return f"repository {s['repository']}" if s["repository"] else s["url"]

    top10, held_out = report["top10_agreement"], report["set"]
    short = stdlib_shortfall(held_out["asked"], held_out["queries"], held_out["python"])
    short = f" ({short})" if short else ""
    lines = [f"A: {side(report['a'])}: {report['a']['engine']}", f"B: {side(report['b'])}: {report['b']['engine']}",
             f"{held_out['queries']} queries, {held_out['passages']} passages{short}: cosine min "
             f"{report['cosine']['min']:.5f} mean {report['cosine']['mean']:.5f}; top-10 agreement: A's index with "
             f"B's queries {top10['index_a_queries_b']:.3f}, all B {top10['all_b']:.3f}",
             "within budget" if report["within_budget"] else "over budget: " + "; ".join(report["failures"])]
    return "\n".join(lines)
