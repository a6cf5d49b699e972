"""Helpers of ``.ci/mutate`` around a cosmic-ray session database.

    python .ci/mutate_db.py prune  SESSION.sqlite FILE.py            # after `cosmic-ray init`
    python .ci/mutate_db.py report SESSION.sqlite [--json OUT.json]  # after `cosmic-ray exec`

``prune`` marks as skipped (never run) the mutants that sit inside a type annotation of a file
with ``from __future__ import annotations``: such annotations are never evaluated, so those
mutants are equivalent by construction. With ``MUTATE_SAMPLE=N`` it also keeps only a random
(``random.Random(0)``) sample of N of the remaining mutants; with ``MUTATE_ONLY=survivors.json``
(an earlier report's ``--json``) only the mutants that survived that run.

``report`` prints ``killed / run (score)``, then each surviving mutant as ``line: operator``
with its diff. Mutants that time out count as killed (the test run did not pass).
"""

from __future__ import annotations

import ast
import json
import os
import random
import sys
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions, as (line, col), of every annotation node in ``source``."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        found = []
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            found.append(node.returns)
        spans += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in found]
    return spans


def prune(db_path: str, file: str, sample: int | None, only: str | None = None) -> None:
    source = Path(file).read_text()
    wanted = None
    if only:  # re-test the survivors of an earlier run (same file, same operators)
        wanted = {(s["operator"], s["occurrence"]) for s in json.loads(Path(only).read_text())[
            "survivors"]}
    lazy = "from __future__ import annotations" in source
    spans = annotation_spans(source) if lazy else []
    with use_db(db_path, WorkDB.Mode.open) as db:
        pending = list(db.pending_work_items)
        keep, n_annotation = [], 0
        for item in pending:
            start = tuple(item.mutations[0].start_pos)
            m = item.mutations[0]
            if any(lo <= start < hi for lo, hi in spans):
                db.set_result(item.job_id, WorkResult(
                    output="annotation (never evaluated)", worker_outcome=WorkerOutcome.SKIPPED))
                n_annotation += 1
            elif wanted is not None and (m.operator_name, m.occurrence) not in wanted:
                db.set_result(item.job_id, WorkResult(
                    output="not an earlier survivor", worker_outcome=WorkerOutcome.SKIPPED))
            else:
                keep.append(item)
        if sample is not None and sample < len(keep):
            chosen = {i.job_id for i in random.Random(0).sample(keep, sample)}
            for item in keep:
                if item.job_id not in chosen:
                    db.set_result(item.job_id, WorkResult(
                        output="not sampled", worker_outcome=WorkerOutcome.SKIPPED))
        print(f"{len(pending)} mutants, {n_annotation} inside annotations skipped, "
              f"{len(pending) - n_annotation - len(keep)} not earlier survivors skipped"
              + (f", a sample of {sample} kept" if sample is not None else ""))


def report(db_path: str, json_out: str | None) -> None:
    rows, survivors = {"killed": 0, "survived": 0, "skipped": 0, "other": 0}, []
    with use_db(db_path, WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                rows["skipped"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                rows["survived"] += 1
                m = item.mutations[0]
                survivors.append({"line": m.start_pos[0], "operator": m.operator_name,
                                  "occurrence": m.occurrence, "job_id": item.job_id,
                                  "diff": result.diff or ""})
            elif result.test_outcome == TestOutcome.KILLED:
                rows["killed"] += 1
            else:  # abnormal/exception/incompetent: the mutant could not be tested
                rows["other"] += 1
        pending = db.num_work_items - db.num_results
    run = rows["killed"] + rows["survived"]
    score = 100.0 * rows["killed"] / run if run else float("nan")
    survivors.sort(key=lambda s: s["line"])
    for s in survivors:
        print(f"--- survived: line {s['line']}: {s['operator']} #{s['occurrence']} "
              f"(job {s['job_id']})")
        print("\n".join(ln for ln in s["diff"].splitlines()
                        if ln[:1] in "+-" and ln[:3] not in ("+++", "---")))
    print(f"mutation score: {rows['killed']} killed of {run} run ({score:.1f} %); "
          f"{rows['survived']} survived, {rows['skipped']} skipped, "
          f"{rows['other']} not testable, {pending} pending")
    if json_out:
        Path(json_out).write_text(json.dumps({**rows, "score": score, "survivors": survivors},
                                             indent=1))


if __name__ == "__main__":
    cmd, db_file, *rest = sys.argv[1:]
    if cmd == "prune":
        sample = os.environ.get("MUTATE_SAMPLE")
        prune(db_file, rest[0], int(sample) if sample else None, os.environ.get("MUTATE_ONLY"))
    else:
        report(db_file, rest[1] if rest[:1] == ["--json"] else None)
