"""Deployment: the serving/builder Dockerfiles (dockerfile) and the images beside NVIDIA's Triton image (images),
Kubernetes manifests from a repository (spec, k8s, bundle: `nvembed-trt deploy k8s`) and the pod's init step (ensure).
Which Triton release serves an engine is a Triton fact (triton/images.py), read from the release table (ngc_triton.py).

Nothing is imported here: every module on use (the serving image has no torch)."""
