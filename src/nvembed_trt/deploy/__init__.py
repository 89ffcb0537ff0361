"""Deployment: the NGC Triton image for an engine (images), the serving/builder Dockerfiles (dockerfile), Kubernetes
manifests from a repository (spec, k8s, bundle: `nvembed-trt deploy k8s`) and the pod's init step (ensure).

Only the light image helpers are imported here; the rest on use (the serving image has no torch)."""

from .images import ImageError, check_triton_engine, image_table, ngc_commands, triton_image_for_engine

__all__ = ["ImageError", "check_triton_engine", "image_table", "ngc_commands", "triton_image_for_engine"]
