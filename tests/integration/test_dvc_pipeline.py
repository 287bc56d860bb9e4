"""`dvc repro` for real in temporary git repositories holding this project's files: the loop's chain of days with
tiny params, and the committed dvc.lock checked against the code and params of the working tree."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import REPO, TINY, _merge

BIN = Path(sys.executable).parent
DVC = [str(BIN / "dvc")]


def _run(args: list[str], cwd: Path, stdout_only: bool = False) -> str:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


def _dvc_json(root: Path, *args: str):
    return json.loads(_run(DVC + [*args, "--json"], root, stdout_only=True) or "{}")


def _clone(root: Path, params: dict | None = None) -> Path:
    """The project's tracked and not-ignored files (what a fresh clone of the working tree holds) committed in a new
    repo at `root`; `params` replace params.yaml, with dvc.yaml's days set to match them."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    if params is not None:
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
        pipeline["vars"] = [{"days": loop_days(params)}]
        (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
        (root / "dvc.lock").unlink(missing_ok=True)  # recorded for other params: nothing in it applies here
    _run(["git", "init", "-q"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "clone"], root)
    return root


def loop_days(params: dict) -> dict[str, dict]:
    """dvc.yaml's `days` for these params: each simulated day and the day whose workspace it continues."""
    first = date.fromisoformat(params["simulate"]["start_date"])
    days = [str(first + timedelta(days=i)) for i in range(params["simulate"]["days"])]
    return {day: {"after": prev} for day, prev in zip(days, ["start"] + days[:-1])}


def stale_stages(root: Path) -> dict[str, list[str]]:
    """What `dvc status` finds changed in the repo at `root` apart from outputs that are not there (a fresh clone has
    none, and a stage's dependency on another stage's output is then missing too): changed code, params or
    commands, i.e. what makes dvc.lock stale. {stage: [what changed]}."""
    status = _dvc_json(root, "status")
    lock = yaml.safe_load((root / "dvc.lock").read_text()) if (root / "dvc.lock").exists() else {"stages": {}}
    outs = [o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])]

    def is_output(path: str) -> bool:
        return any(path == o or path.startswith(o.rstrip("/") + "/") for o in outs)

    stale: dict[str, list[str]] = {}
    for stage, changes in status.items():
        found = []
        for change in changes:
            if isinstance(change, str):  # "changed command", "always changed"
                found.append(change)
                continue
            for path, what in change.get("changed deps", {}).items():
                if isinstance(what, dict):  # params file: {section or key: modified | new | deleted}
                    found += [f"{path}:{key} {state}" for key, state in what.items()]
                elif not (what == "deleted" and is_output(path)):
                    found.append(f"{path} {what}")
        if found:
            stale[stage] = found
    return stale


def test_dvc_yaml_days_are_the_simulated_days():
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    days = {k: v for entry in pipeline["vars"] for k, v in entry.get("days", {}).items()}
    assert days == loop_days(yaml.safe_load((REPO / "params.yaml").read_text())), \
        "dvc.yaml vars `days` must list params.yaml's simulate.start_date + simulate.days, each after the day before"


def test_committed_lock_matches_code_and_params(tmp_path: Path):
    """A fresh clone's dvc.lock records the code and params of every stage; a change to either makes it stale."""
    root = _clone(tmp_path / "clone")
    assert (root / "dvc.lock").exists(), "dvc.lock is not committed: run `make repro` and commit it"
    stale = stale_stages(root)
    assert not stale, ("dvc.lock is stale (a stage's code or params changed since it was recorded; run `make repro`"
                       f" on the default params and commit dvc.lock): {json.dumps(stale, indent=1)}")

    # the check is not blind: a code change and a params change show up, for the stages that read them
    with open(root / "src" / "liveloop" / "registry.py", "a") as f:
        f.write("\n# changed\n")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["promotion"]["confidence"] = 0.9
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = stale_stages(root)
    loop_stages = {f"loop@{day}" for day in loop_days(params)}
    assert set(stale) == loop_stages, stale
    for changes in stale.values():
        assert "src/liveloop/registry.py modified" in changes and "params.yaml:promotion modified" in changes, changes


@pytest.mark.slow
def test_dvc_repro_builds_the_pipeline_and_reruns_only_what_changed(tmp_path: Path):
    """The loop replayed day by day (two tiny days): the warm-start chain and the gate's decisions, lineage equal to
    DVC's md5s, a day rebuilt from git + DVC identical, and only what a change touches rerun."""
    params = _merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY)
    params = _merge(params, {"simulate": {"days": 2}})
    root = _clone(tmp_path / "clone", params)
    first, second = loop_days(params)
    out = _run(DVC + ["repro"], root)
    for stage in ("simulate", "start", f"loop@{first}", f"loop@{second}"):
        assert f"Running stage '{stage}'" in out, out[-3000:]
    assert out.index(f"Running stage 'loop@{first}'") < out.index(f"Running stage 'loop@{second}'")

    def workspace(day: str) -> tuple[list[dict], dict, dict]:
        ws = root / "data" / "pipeline" / "loop" / day
        summary = json.loads((root / "metrics" / "pipeline" / f"{day}.json").read_text())
        assert summary == json.loads((ws / "reports" / "loop" / f"{day}.json").read_text())
        return (json.loads((ws / "models" / "registry.json").read_text())["versions"],
                json.loads((ws / "models" / "champion.json").read_text()), summary)

    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    landed = {day: next(d["md5"] for d in lock[f"loop@{day}"]["deps"] if d["path"] == f"data/pipeline/landing/{day}")
              for day in (first, second)}

    # day 1: the first model from scratch becomes the champion; its workspace keeps that day's state
    versions, champion, summary = workspace(first)
    assert [(v["version"], v["parent"], v["status"]) for v in versions] == [("v0001", None, "champion")]
    assert champion["version"] == "v0001" and summary["status"] == "promoted"
    assert versions[0]["data_versions"] == {first: landed[first]}  # lineage = DVC's md5 of the landed batch

    # day 2 continues day 1's workspace: warm start from v0001, then the gate decides
    versions, champion, summary = workspace(second)
    assert [(v["version"], v["parent"]) for v in versions] == [("v0001", None), ("v0002", "v0001")]
    assert versions[1]["data_versions"] == {second: landed[second]}
    assert versions[1]["all_data_versions"] == landed
    assert summary["champion_before"] == "v0001" and summary["status"] in ("promoted", "rejected")
    assert summary["decision"]["checks"] and versions[1]["gate"] == summary["decision"]["checks"]
    assert champion["version"] == summary["champion_after"] == ("v0002" if summary["status"] == "promoted" else "v0001")

    def model_files(day: str, version: str) -> dict[str, str]:
        """sha256 of the registered version's files but state.json (its record holds the training wall time)."""
        folder = root / "data" / "pipeline" / "loop" / day / "models" / "versions" / version
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())
                if f.name != "state.json"}

    built = model_files(second, "v0002")
    assert {"model.safetensors", "ranker.json"} <= set(built)

    assert "up to date" in _run(DVC + ["repro"], root).lower()
    shown = json.dumps(_dvc_json(root, "metrics", "show"))
    assert f"metrics/pipeline/{second}.json" in shown and "ndcg@10" in shown

    # rebuilding day 2 from git + DVC gives the same candidate (its files byte for byte but state.json), the
    # same metrics and the same decision
    _run(DVC + ["repro", "--force", "--single-item", f"loop@{second}"], root)
    again_versions, again_champion, again = workspace(second)
    assert [(v["version"], v["status"]) for v in again_versions] == [(v["version"], v["status"]) for v in versions]
    assert model_files(second, "v0002") == built
    untimed = [{k: v for k, v in s["candidate_metrics"].items() if k != "seconds"} for s in (again, summary)]
    assert untimed[0] == untimed[1]
    assert again["decision"] == summary["decision"] and again_champion["version"] == champion["version"]
    assert _dvc_json(root, "status") == {}

    # a loop setting makes every day stale and leaves the simulated data alone
    params["promotion"]["confidence"] = 0.9
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(stale_stages(root)) == {f"loop@{first}", f"loop@{second}"}
