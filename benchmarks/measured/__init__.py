"""What the full-size benchmarks (`*_scale.py`) share: each pipeline step run as its own process and measured (wall
time, peak RSS, anonymous and file-backed peaks: steps.py), optionally inside a memory cgroup (memlimit.py). Not part
of the installed package: the scripts import it from beside them (`python benchmarks/engine_scale.py ...`)."""
