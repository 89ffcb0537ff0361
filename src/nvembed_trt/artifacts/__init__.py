"""The typed sidecars every stage writes beside its artifact, one model and one reader per kind: export.json
(ExportMeta) and precision.json (PrecisionMeta) beside a graph, engine.json (EngineMeta) beside a plan; repo.json
(RepoMeta) lives with the repository (nvembed_trt.triton.meta). Light: pydantic and the standard library."""

from .engine import EngineMeta
from .graph import DTYPE_RECIPES, ExportMeta, GraphSidecars, ModelFacts, PrecisionMeta, graph_sidecars
from .sidecar import Sidecar, SidecarError

__all__ = ["DTYPE_RECIPES", "EngineMeta", "ExportMeta", "GraphSidecars", "ModelFacts", "PrecisionMeta", "Sidecar",
           "SidecarError", "graph_sidecars"]
