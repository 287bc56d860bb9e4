"""The README is the truth: every command it shows works as written.

(a) every `liveloop ...` command (fenced blocks and the commands table) parses against the real click app, each
variant of its synopsis ([optional] parts left out and put in, each a|b|c alternative), placeholders
like DIR filled by the option's type; and every command of the app is in the README;
(b) the others run on a temp workspace, from its root as on a fresh clone: `.venv/bin/liveloop --help`, simulate
--out twice, validate, drift with a repeated --reference, both importers, models, rollback, show-config, and (its
only test) benchmark on tiny data;
(c) the expensive ones (make run/test/ui/serve/monitor/repro, the curl calls, bentoml serve, train, evaluate, loop,
package) name the test that runs them, and that test must exist and run the same thing;
and every `make` target and variable the README names exists in the Makefile.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import typing
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.core import TyperArgument
from typer.exceptions import TyperException
from typer.testing import CliRunner

from liveloop.cli import app
from tests.integration.conftest import REPO, write_params

README = (REPO / "README.md").read_text()
MAKEFILE = (REPO / "Makefile").read_text()
CLICK_APP = typer.main.get_command(app)
# option name -> Python type, from the command functions' own annotations (Optional[...] and list[...] unwrapped)
HINTS = {c.name or c.callback.__name__.replace("_", "-"): typing.get_type_hints(c.callback) for c in app.registered_commands}
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(,[A-Z0-9_]+)*(\.[a-z]+)?$")  # N, DIR, C1,C2, FILE.json, BATCH_DIR


def fenced_commands(text: str = README) -> list[str]:
    """Shell commands of the ```bash blocks: continuation lines joined, comments dropped, `a; b` and pipes split."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";|&")
            lexer.whitespace_split, lexer.commenters = True, "#"
            words = list(lexer)
            command: list[str] = []
            for word in words + [";"]:
                if word in (";", "|", "&&"):
                    if command:
                        commands.append(shlex.join(command))
                    command = []
                else:
                    command.append(word)
    return [c for c in commands if not c.startswith("head")]  # `| head` only trims what is shown


def liveloop_synopses(text: str = README) -> list[str]:
    """Every `liveloop ...` the README shows: inline code (the commands table) and fenced blocks."""
    inline = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = [s.replace("\\|", "|") for s in re.findall(r"`((?:\.venv/bin/)?liveloop [^`]+)`", inline)]
    fenced = [c for c in fenced_commands(text) if re.match(r"(\.venv/bin/)?liveloop\b", c)]
    return [re.sub(r"^\.venv/bin/", "", s) for s in spans + fenced]


def _parse(tokens: list[str], i: int = 0) -> tuple[list, int]:
    out: list = []
    while i < len(tokens):
        if tokens[i] == "[":
            group, i = _parse(tokens, i + 1)
            out.append(group)
        elif tokens[i] == "]":
            return out, i + 1
        else:
            out.append(tokens[i])
            i += 1
    return out, i


def _expand(items: list, optional: bool) -> list[str]:
    out: list[str] = []
    for item in items:
        if isinstance(item, list):
            out += _expand(item, True) if optional else []
        elif item != "...":
            out.append(item)
    return out


def variants(synopsis: str) -> list[list[str]]:
    """Concrete argument lists of a synopsis (after `liveloop`): without and with its [optional] parts (a lone `...`
    dropped: `--x A [--x A ...]` gives --x twice; `A...` gives A twice), each a|b|c alternative once."""
    items, _ = _parse(synopsis.replace("[", " [ ").replace("]", " ] ").split()[1:])
    out = []
    for optional in (False, True):
        # DIR... is "one or more": given twice, as a reader would type it
        tokens = [w for t in _expand(items, optional) for w in ([t[:-3]] * 2 if t.endswith("...") else [t])]
        width = max([len(t.split("|")) for t in tokens if "|" in t] or [1])
        for j in range(width):
            out.append([t.split("|")[j % len(t.split("|"))] if "|" in t else t for t in tokens])
    return out


def fill(command, args: list[str], values) -> list[str]:
    """Replace placeholders by `values(param, placeholder)`; an option the command lacks fails naming it."""
    options = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    positional = iter([p for p in command.params if isinstance(p, TyperArgument)])
    out, pending = [], None
    for token in args:
        if token.startswith("-"):
            param = options.get(token)
            assert param is not None, f"README: `{token}` is not an option of `liveloop {command.name}`"
            pending = None if param.is_flag or param.count else param
            out.append(token)
            continue
        param, pending = pending or next(positional, None), None
        assert param is not None, f"README: `liveloop {command.name}` takes no argument {token!r}"
        out.append(values(param, token) if PLACEHOLDER.match(token) else token)
    return out


def _python_type(command_name: str, param) -> type:
    kind = HINTS[command_name][param.name]
    while typing.get_args(kind):  # Optional[int] -> int, list[Path] -> Path
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return kind


def typed_value(command_name: str, tmp: Path):
    """A value of the parameter's type for a placeholder: a number where it takes one, else a path under tmp."""
    def value(param, placeholder: str) -> str:
        kind = _python_type(command_name, param)
        return {int: "2", float: "1.5"}.get(kind) or str(tmp / placeholder.lower())
    return value


def _split(synopsis: str):
    name = synopsis.split()[1]
    command = CLICK_APP.commands.get(name)
    assert command is not None, f"README shows `liveloop {name}`, which is not a command ({sorted(CLICK_APP.commands)})"
    return name, command


# ---------------------------------------------------------------------------------------------- (a) parse
def test_the_extractors_see_every_kind_of_command():
    """Guards the parsing itself: the table, the fenced blocks, repeated options and alternatives are all found."""
    synopses = liveloop_synopses()
    assert any(s.startswith("liveloop drift --reference DIR [--reference DIR ...]") for s in synopses)
    assert "liveloop --help" in synopses and len(synopses) >= 12
    assert ["train", "--init-from", "champion"] in variants("liveloop train --init-from scratch|champion|PATH")
    assert variants("liveloop x --a A [--a A ...] [--b]") == [["x", "--a", "A"], ["x", "--a", "A", "--a", "A", "--b"]]
    assert {"make run", "make test", "make serve", "make ui"} <= set(fenced_commands())


def check_parses(synopsis: str, tmp: Path) -> None:
    """Every variant of the synopsis, placeholders filled, parses with the real command (AssertionError if not)."""
    name, command = _split(synopsis)
    for args in variants(synopsis):
        filled = fill(command, args[1:], typed_value(name, tmp))
        try:
            command.make_context(f"liveloop {name}", list(filled))  # click consumes the list it parses
        except TyperException as exc:
            raise AssertionError(f"README `{synopsis}` as `liveloop {name} {shlex.join(filled)}`: {exc}") from None


@pytest.mark.parametrize("synopsis", sorted(set(liveloop_synopses())))
def test_every_readme_liveloop_command_parses(synopsis: str, tmp_path: Path):
    if synopsis == "liveloop --help":
        assert CliRunner().invoke(app, ["--help"]).exit_code == 0
    else:
        check_parses(synopsis, tmp_path)


@pytest.mark.parametrize("wrong, words", [
    ("liveloop drift --reference DIR... --current DIR --out DIR", "takes no argument"),  # the README until fa8a3ba
    ("liveloop validate BATCH_DIR...", "takes no argument"),  # until ebea7e8
    ("liveloop simulate --days N --out DIR --truth-dir DIR", "`--truth-dir` is not an option"),
    ("liveloop drift --reference DIR --out DIR", "Missing parameter: current"),
    ("liveloop simulate --days three --out DIR", "valid integer"),
])
def test_the_check_refuses_what_the_readme_once_got_wrong(wrong: str, words: str, tmp_path: Path):
    with pytest.raises(AssertionError, match=re.escape(words)):
        check_parses(wrong, tmp_path)


def test_every_command_of_the_app_is_in_the_readme_and_help_names_only_real_ones():
    shown = {s.split()[1] for s in liveloop_synopses() if s != "liveloop --help"}
    assert set(CLICK_APP.commands) <= shown, f"not in the README: {sorted(set(CLICK_APP.commands) - shown)}"
    for name in ["", *CLICK_APP.commands]:
        text = CliRunner().invoke(app, [name, "--help"] if name else ["--help"], terminal_width=200).stdout
        for named in re.findall(r"\bliveloop ([a-z][a-z-]+)", text):
            assert named in CLICK_APP.commands, f"`liveloop {name} --help` names `liveloop {named}`, not a command"


# ---------------------------------------------------------------------------------------------- make
def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", MAKEFILE, re.M))


def test_every_make_target_and_variable_the_readme_names_exists():
    named = {c.split()[1] for c in fenced_commands() + re.findall(r"`(make [\w-]+)`", README) if c.startswith("make ")}
    assert named and named <= make_targets(), f"not in the Makefile: {sorted(named - make_targets())}"
    for target in sorted(named):  # a dry run: the target resolves (nothing is executed)
        done = subprocess.run(["make", "-n", "-C", str(REPO), target], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"make -n {target}: {done.stderr}"
    for variable in set(re.findall(r"\b([A-Z_]+)=\.\.\.", README)):  # "PORT=... to change"
        assert re.search(rf"^{variable}\s*\?=", MAKEFILE, re.M), f"README sets {variable}=..., the Makefile lacks it"


# ---------------------------------------------------------------------------------------------- (b) run
def _synopsis(name: str) -> str:
    return next(s for s in liveloop_synopses() if s.split()[1] == name)


def as_written(name: str, values: dict[str, list[str]], optional: bool = True) -> list[str]:
    """The README's synopsis of `liveloop name` with its placeholders replaced, in order, by values[option or
    placeholder] (a list consumed left to right, so a repeated --reference takes the next folder)."""
    _, command = _split(_synopsis(name))
    queues = {k: list(v) for k, v in values.items()}

    def value(param, placeholder: str) -> str:
        key = next((o for o in param.opts if o in queues), placeholder)
        assert queues.get(key), f"no value for {placeholder} of liveloop {name} ({param.opts})"
        return queues[key].pop(0)

    args = variants(_synopsis(name))[-1 if optional else 0]
    return [name, *fill(command, args[1:], value)]


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> Path:
    """A fresh workspace root with the tiny params.yaml, as the current folder (the README's commands run there)."""
    write_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(args: list[str], code: int = 0) -> str:
    """stdout of `liveloop args` (stderr, where errors and warnings go, is in the failure message)."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, f"liveloop {shlex.join(args)} -> {result.exit_code}: {result.output}"
    return result.stdout if code == 0 else result.stderr


def test_help_runs_as_written_from_the_repo_root():
    command = next(c for c in fenced_commands() if c.endswith("liveloop --help"))
    done = subprocess.run(shlex.split(command), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in CLICK_APP.commands:
        assert name in done.stdout


@pytest.mark.slow
def test_readme_commands_run_on_a_fresh_workspace(workspace: Path):
    """simulate --out (twice, elsewhere: each run keeps its truth beside it, nothing lands in data/), validate each
    day, drift with the reference repeated, models / rollback / show-config on the empty registry."""
    _run(as_written("simulate", {"--days": ["3"], "--scenario": ["seasonal-shift"], "--drift-day": ["1"],
                                 "--seed": ["3"], "--out": ["landing"]}))
    days = sorted(p.name for p in (workspace / "landing").iterdir())
    assert len(days) == 3 and (workspace / "landing-truth" / "truth.json").is_file()
    assert not (workspace / "data").exists(), "simulate --out wrote into the workspace's data/"
    truth = (workspace / "landing-truth" / "truth.json").read_text()
    _run(as_written("simulate", {"--days": ["2"], "--scenario": ["stable"], "--seed": ["4"], "--out": ["elsewhere"]},
                    optional=False))
    assert len(list((workspace / "elsewhere").iterdir())) == 2 and (workspace / "elsewhere-truth").is_dir()
    assert (workspace / "landing-truth" / "truth.json").read_text() == truth

    for day in days:
        assert "accepted" in _run(as_written("validate", {"BATCH_DIR": [f"landing/{day}"]}))
    accepted = [f"data/accepted/{d}" for d in days]
    assert [p.name for p in sorted((workspace / "data" / "accepted").iterdir())] == days

    out = _run(as_written("drift", {"--reference": accepted[:2], "--current": [accepted[2]], "--out": ["drift-out"]}))
    verdict = json.loads((workspace / "drift-out" / "drift.json").read_text())
    assert out.startswith(f"drift: {'yes' if verdict['drift'] else 'no'}")
    assert verdict["reference"] == accepted[:2] and (workspace / "drift-out" / "drift_report.html").is_file()

    assert _run(as_written("models", {})).strip() == "no models registered yet"
    assert "no champion to roll back from" in _run(as_written("rollback", {}, optional=False), code=1)
    assert "history_window" in _run(as_written("show-config", {}))


def test_readme_import_commands_run_on_small_files(workspace: Path):
    retail = workspace / "retail.csv"
    pd.DataFrame({"InvoiceNo": ["1", "2", "C3"], "StockCode": ["A", "B", "A"], "Description": ["RED MUG", "TEA", "RED MUG"],
                  "Quantity": [2, 1, -1], "InvoiceDate": ["2011-01-01 09:00", "2011-01-01 10:00", "2011-01-02 10:00"],
                  "UnitPrice": [1.5, 2.0, 1.5], "CustomerID": [17850.0, 12000.0, 17850.0],
                  "Country": ["United Kingdom"] * 3}).to_csv(retail, index=False)
    summary = json.loads(_run(as_written("import-online-retail", {"PATH": [str(retail)], "--out": ["retail"]})))
    assert summary["days"] == 2 and sorted(p.name for p in (workspace / "retail").iterdir()) == ["2011-01-01", "2011-01-02"]

    pd.DataFrame({"uid": ["u1", "u2"], "sku": ["a", "b"], "when": ["2024-05-01 10:00", "2024-05-02 11:00"],
                  }).to_csv(workspace / "events.csv", index=False)
    pd.DataFrame({"sku": ["a", "b"], "name": ["red mug", "tea"], "about": ["stoneware", "green"]}).to_csv(
        workspace / "items.csv", index=False)
    args = as_written("import-interactions", {"--events": ["events.csv"], "--items": ["items.csv"], "--user-col": ["uid"],
                                              "--item-col": ["sku"], "--time-col": ["when"], "--text-cols": ["name,about"],
                                              "--out": ["own"]})
    assert json.loads(_run(args))["days"] == 2 and len(list((workspace / "own").iterdir())) == 2
    assert not (workspace / "data").exists()


@pytest.mark.slow
def test_readme_benchmark_runs_on_tiny_data(workspace: Path):
    """The only run of `liveloop benchmark`: fine-tune on simulated days, then model vs baselines after the cut."""
    _run(as_written("simulate", {"--days": ["3"], "--scenario": ["stable"], "--seed": ["5"], "--out": ["days"]},
                    optional=False))
    report = _run(as_written("benchmark", {"--data": ["days"], "--out": ["bench/result.json"]}))
    result = json.loads((workspace / "bench" / "result.json").read_text())
    assert {"model", "popularity", "mf_als"} <= set(result["models"]) and "Benchmark on days" in report
    assert (workspace / "bench" / "result-model" / "config.json").is_file()


# ---------------------------------------------------------------------------------------------- (c) elsewhere
# command (as the README shows it, up to its arguments) -> (file, function) of the test that runs it, and a string
# that function (or the Makefile recipe / dvc.yaml it goes through) must hold, so the mapping cannot rot
EXPENSIVE = {
    "make run": ("tests/integration/test_flows.py", "test_replay_timeline_runs_the_whole_loop", "replay_timeline"),
    "make test": (".ci/run", None, "make test"),
    "make ui": ("tests/integration/test_prefect_server.py", "test_served_deployment_completes_with_artifacts",
                "flows.serve"),
    "make serve": ("tests/integration/conftest.py", "start_liveloop", "liveloop.serving.service:LiveRecommender"),
    "make monitor": ("tests/integration/test_dashboard.py", "test_evidently_ui_serves_the_recorded_batches_and_dashboard",
                     '"ui"'),
    "make repro": ("tests/integration/test_dvc_pipeline.py",
                   "test_dvc_repro_builds_the_pipeline_and_reruns_only_what_changed", '"repro"'),
    "curl -s localhost:3000/recommend": ("tests/integration/test_serving.py",
                                         "test_recommend_known_user_gets_live_items_with_reasons", '"/recommend"'),
    "curl -s localhost:3000/score": ("tests/integration/test_serving.py",
                                     "test_score_returns_ctr_probabilities_in_request_order", '"/score"'),
    "curl -s localhost:3000/feedback": ("tests/integration/test_serving.py",
                                        "test_feedback_is_logged_and_the_next_recommend_reflects_it", '"/feedback"'),
    "curl -s localhost:3000/items": ("tests/integration/test_serving.py",
                                     "test_item_upsert_is_recommendable_at_once_and_availability_applies", '"/items"'),
    "curl -s localhost:3000/v1/ready": ("tests/integration/test_serving.py", "test_health_readiness_and_metrics",
                                        '"/v1/ready"'),
    "curl -s localhost:3000/metrics": ("tests/integration/test_serving.py", "test_health_readiness_and_metrics",
                                       '"/metrics"'),
    "bentoml serve liveloop:latest": ("tests/integration/test_bento_build.py",
                                      "test_bentoml_serve_of_the_built_bento_and_the_gpu_variant", '"serve"'),
    "liveloop train": ("tests/model/test_training.py", "test_killed_run_resumes_from_its_last_checkpoint", '"train"'),
    # the command wraps evaluate_model, which this test runs on a trained model (the CLI itself only parses here)
    "liveloop evaluate": ("tests/model/test_evaluation.py", "test_train_then_evaluate_scores_model_baselines_and_oracle",
                          "evaluate_model("),
    "liveloop loop": ("tests/integration/test_flows.py", "test_loop_command_runs_the_same_steps_without_prefect",
                      '"loop"'),
    "liveloop package": ("tests/integration/test_bento_build.py", "_package", '"package"'),
}
RUN_HERE = {"--help", "simulate", "validate", "drift", "models", "rollback", "show-config", "import-online-retail",
            "import-interactions", "benchmark"}


def _function_source(path: Path, name: str) -> str:
    tree = ast.parse(path.read_text())
    node = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name),
                None)
    assert node is not None, f"{path.relative_to(REPO)} has no function {name}"
    return ast.get_source_segment(path.read_text(), node)


def test_every_readme_command_is_run_here_or_by_a_named_test():
    shown = [c for c in fenced_commands() if not c.startswith((".venv/bin/liveloop", "liveloop"))]
    shown += [s for s in liveloop_synopses() if s.split()[1] not in RUN_HERE]
    shown += re.findall(r"`(bentoml serve [^`]+)`", README)
    for command in shown:
        key = next((k for k in EXPENSIVE if command == k or command.startswith(k + " ")), None)
        assert key is not None, f"README command `{command}` is neither run here nor mapped to a test in EXPENSIVE"
        words = shlex.split(command)
        if "-d" in words:  # a request body the README shows is JSON
            json.loads(words[words.index("-d") + 1])
    for key, (file, function, needle) in EXPENSIVE.items():
        path = REPO / file
        assert path.is_file(), f"{key}: {file} is gone"
        source = _function_source(path, function) if function else path.read_text()
        assert needle in source, f"{key}: {file}{'::' + function if function else ''} no longer holds {needle!r}"
    # the make targets run what their tests run
    for target, needle in {"run": "flows.replay_timeline", "ui": "flows.serve", "monitor": "evidently ui",
                           "serve": "liveloop.serving.service:LiveRecommender", "repro": "dvc repro"}.items():
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", MAKEFILE, re.M)
        assert recipe and needle in recipe.group(1), f"make {target} no longer runs {needle}"
