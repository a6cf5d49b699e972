"""Copy a ``lorakit generate report`` into ``demos/results``: the summary table, one row per
held-out task (with the nearest bank task), the command and the wall time.

    .venv/bin/python demos/generate_results.py --bank runs/wbank --name generate_whisper \\
        --command "lorakit generate bank --domain whisper --out runs/wbank --tasks 10 --held 4" \\
        --minutes 33
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bank", type=Path, required=True)
    p.add_argument("--name", required=True, help="file stem under demos/results")
    p.add_argument("--command", required=True, help="how the bank was built (shown)")
    p.add_argument("--minutes", type=float, required=True, help="wall time of the whole run")
    args = p.parse_args()
    rep = args.bank / "report"
    result = json.loads((rep / "report.json").read_text())
    columns = list(result["summary"]["columns"])
    metric = "accuracy" if result["summary"]["higher_is_better"] else "WER"
    head = (rep / "report.md").read_text().rstrip()
    lines = [head, "", f"Command: `{args.command}`, then `lorakit generate train --bank "
             f"{args.bank}` and `lorakit generate report --bank {args.bank}` (settings: "
             f"{json.dumps(result['spec'])}); {args.minutes:.0f} minutes on a busy 2-core CPU. "
             f"Per held-out task ({metric}):", "",
             "| held-out task | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for r in result["rows"]:
        cells = [f"{r[c]:.3f}" + (f" ({r['nearest bank task']})" if c == "nearest bank" else "")
                 for c in columns]
        lines.append(f"| {r['task']} | " + " | ".join(cells) + " |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{args.name}.json").write_text(json.dumps(
        {**result, "command": args.command, "minutes": args.minutes}, indent=1) + "\n")
    shutil.copyfile(rep / "report.png", RESULTS / f"{args.name}.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
