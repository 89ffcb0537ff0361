"""Labelled retrieval sets and what is measured on them, with no encoder: BEIR's layout (beir), the project's own
stdlib docstring set (stdlib_set), exact search (search), the metrics (metrics), vectors in -> rankings and metrics
out (scoring), and the precision gate's ranking slice (ranking). The precision gate, `validate` and `nvembed-trt
eval` (evaluation/, which runs encoders over these sets) all read them here."""
