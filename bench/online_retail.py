"""Online Retail benchmark: import the UCI log as daily batches (once), then `run_benchmark` on them.

    .venv/bin/python bench/online_retail.py [--source FILE] [--data DIR] [--out FILE.json] [--params params.yaml]

Progress goes to the console and to <out>.log. The result JSON, a markdown table and the fine-tuned model dir land
beside --out. Same protocol as the floors in /work/shared/data/online_retail/README.md (cut at the 90% time quantile,
first item a returning user buys after the cut, full ranking over all items).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "online_retail" / "online_retail.parquet"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="Online Retail parquet/csv file")
    parser.add_argument("--data", type=Path, default=REPO / ".liveloop" / "bench" / "online_retail" / "batches",
                        help="folder of imported daily batches (imported from --source when empty)")
    parser.add_argument("--out", type=Path, default=REPO / ".liveloop" / "bench" / "online_retail" / "result.json",
                        help="result JSON (a .md table, a .log and a -model/ dir are written beside it)")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml", help="params.yaml to use")
    args = parser.parse_args(argv)

    from liveloop.config import ConfigError, load_config
    from liveloop.data.adapters import DataImportError, import_online_retail
    from liveloop.data.batches import list_batches
    from liveloop.evaluation import run_benchmark
    from liveloop.evaluation.evaluate import EvaluationError
    from liveloop.evaluation.report import markdown_report
    from liveloop.training import TrainError
    from liveloop.workspace import Workspace

    args.out.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.StreamHandler(), logging.FileHandler(args.out.with_suffix(".log"))])
    log = logging.getLogger("bench.online_retail")
    try:
        cfg = load_config(args.params)
        ws = Workspace.from_config(cfg)
        ws.apply_env()
        if not list_batches(args.data):
            if not args.source.exists():
                log.error("error: Online Retail file not found at %s (give --source)", args.source)
                return 2
            log.info("importing %s into %s", args.source, args.data)
            summary = import_online_retail(args.source, args.data)
            log.info("imported %d events, %d users, %d items", summary["events"], summary["users"], summary["items"])
        started = time.perf_counter()
        result = run_benchmark(cfg, ws, args.data, args.out)
    except (ConfigError, DataImportError, EvaluationError, TrainError, ValueError) as exc:
        log.error("error: %s", exc)
        return 2
    result["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                         "cpus": _cpu_count(), "wall_seconds": round(time.perf_counter() - started, 1)}
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(markdown_report(result, "Online Retail benchmark"))
    return 0


def _cpu_count() -> int | None:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    sys.exit(main())
