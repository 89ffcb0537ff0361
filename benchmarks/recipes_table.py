"""Print the README's recipe table from the precision.json files of one export (not typed by hand):

    python benchmarks/recipes_table.py export/tiny
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(export_dir: Path) -> str:
    rows = ["| recipe | min cosine | p1 cosine | mean cosine | max abs | top-10 agreement | size | quantised nodes |",
            "|---|---|---|---|---|---|---|---|"]
    for meta_file in sorted(export_dir.glob("*/precision.json")):
        meta = json.loads(meta_file.read_text())
        p = meta["parity"]
        quantised = ", ".join(f"{k} {v}" for k, v in meta["quantized_nodes"].items()) or "–"
        rows.append(f"| {meta['recipe']['name']} | {p['cosine_min']:.6f} | {p['cosine_p1']:.6f} | "
                    f"{p['cosine_mean']:.6f} | {p['max_abs']:.2e} | {p['top10_agreement']:.3f} | "
                    f"{meta['model_bytes'] / 1e6:.1f} MB | {quantised} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "export/tiny")))
