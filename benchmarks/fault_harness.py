"""Kill-anywhere fault harness: SIGKILL a real `lstm-pipelines tune` anywhere, resume, check nothing is lost.

Each round runs what a user runs, `lstm-pipelines tune stock_forecasting --trials 2r --study kill
--storage sqlite:///... --register --force` and then `lstm-pipelines export --model
models:/stock_forecasting@champion --format keras`, on SYNTHETIC prices with a tiny config. One of the
two commands is killed (SIGKILL to its process group) at a seeded random moment inside a phase the
round aims at (data loading, an epoch, model logging, registration, export), and rerun at once; then
the invariants are checked (`check_invariants`). Where each kill landed is read from a stack probe
(`benchmarks/fault_probe/sitecustomize.py`, put on the workers' PYTHONPATH) that logs the chain of
this project's functions on the worker's main thread whenever it changes (sampled every 10 ms); the
phase reported is the one on the stack at the last sample before the kill, not the one aimed at.

Then: two workers on one PostgreSQL study where one is killed (the other must finish the study); an
`mlflow server` stopped in the middle of a trial and started again; and a full disk under the
artifact store (a 2 MiB tmpfs, when mounting is permitted).

Usage:
    .venv/bin/python benchmarks/fault_harness.py                # 30 rounds and the other scenarios
    .venv/bin/python benchmarks/fault_harness.py --quick        # 5 rounds, 1 PostgreSQL round
    .venv/bin/python benchmarks/fault_harness.py --only kill --rounds 3 --keep

The summary (rounds, kills by phase, recovered, lost, invariant violations with details, wall time,
machine and versions) is printed and written to `<workdir>/summary.md` and `summary.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.services import BIN, MlflowServer, postgres, postgres_binary  # noqa: E402

PROBE_DIR = REPO / "benchmarks" / "fault_probe"
TASK = "stock_forecasting"
ALIAS = "champion"
TINY = [
    "train.verbose=0",
    "model.units=4",
    "features.window=10",
    "forecast.horizon=3",
    "data.eval_folds=2",
    "train.epochs=2",
    "search.heartbeat_interval=1",
    "search.grace_period=5",
    "search.space={model.variant: {type: categorical, choices: [lstm, gru]}, "
    "train.learning_rate: {type: float, low: 0.001, high: 0.01, log: true}}",
]
GRACE = 5
# Phases aimed at, and the most seconds a kill waits after entering one (drawn uniformly).
AIMS = {"data loading": 0.08, "epoch": 1.5, "model logging": 1.0, "registration": 0.3, "export": 1.5}
COMMAND_TIMEOUT = 600


def phase_of(chain: list[str]) -> str:
    """Name the phase a worker was in from the chain of this project's functions on its stack.

    Args:
        chain: `module:function` entries, outermost first, from the stack probe.

    Returns:
        One of: start-up, data loading, model build, epoch, evaluation, model logging, study
        summary, registration, export, other.
    """
    # An import names its module's frames `<module>`: what runs inside one is the import, not the
    # phase that module's name suggests (importing `stock_forecasting.data` loads no data).
    imports = [i for i, entry in enumerate(chain) if entry.endswith(":<module>")]
    chain = chain[: imports[0]] if imports else chain
    text = " > ".join(chain)

    def has(*names: str) -> bool:
        return any(name in text for name in names)

    if has("pipelines.workflows:export", "pipelines.export:"):
        return "export"
    if has("pipelines.workflows:register_best"):
        return "registration"
    if has("tuning:_log_study_summary", "tuning:_close_orphan_runs", "tuning:_fail_lost_trials"):
        return "study summary"
    if has("pipelines.training:fit"):
        return "epoch"
    if has(":load_source", "task:prepare", "stock_forecasting.data:", "stock_forecasting.features:prepare_dataset"):
        return "data loading"
    if has("build_model", "build_and_compile"):
        return "model build"
    if has("runner:evaluate_and_log_model"):
        return "evaluation" if has("task:evaluate") else "model logging"
    if has("tracking:log_config", "tuning:objective", "tuning:_parent_run", "tuning:tune"):
        return "trial set-up"
    if not chain or has("workflows:tune", "pipelines.cli:"):
        return "start-up"
    return "other"


def read_probe(path: Path, offset: int = 0) -> tuple[list[tuple[float, list[str]]], int]:
    """The complete lines of a probe log from byte `offset`.

    Args:
        path: The probe log.
        offset: Where the last read stopped. Default: `0`.

    Returns:
        `([(timestamp, chain), ...], new offset)`.
    """
    if not path.exists():
        return [], offset
    with open(path, "rb") as log:
        log.seek(offset)
        data = log.read()
    end = data.rfind(b"\n") + 1
    lines = []
    for line in data[:end].decode().splitlines():
        stamp, _, chain = line.partition("\t")
        lines.append((float(stamp), chain.split(" > ") if chain else []))
    return lines, offset + end


@dataclasses.dataclass
class Kill:
    """Where a kill landed."""

    aimed: str
    phase: str
    chain: list[str]
    seconds_in: float  # since the worker started
    chain_age: float  # seconds the stack had shown this chain when the kill came
    running_trials: list[int] = dataclasses.field(default_factory=list)


def worker_env(tracking_uri: str, probe: Path | None = None) -> dict[str, str]:
    """The environment of a worker: the tracking URI, quiet TensorFlow, and the stack probe."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["PYTHONPATH"] = os.pathsep.join([str(PROBE_DIR), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("FAULT_PROBE_FILE", None)
    if probe is not None:
        env["FAULT_PROBE_FILE"] = str(probe)
    return env


def tune_command(study: str, storage: str, trials: int, data: Path, register: bool = True) -> list[str]:
    command = [str(BIN / "lstm-pipelines"), "tune", TASK, "--trials", str(trials), "--study", study]
    command += ["--storage", storage, "--set", f"data.path={data}"]
    for override in TINY:
        command += ["--set", override]
    return [*command, "--register", "--force"] if register else command


def export_command(output: Path) -> list[str]:
    model = f"models:/{TASK}@{ALIAS}"
    return [str(BIN / "lstm-pipelines"), "export", "--model", model, "--format", "keras", "--output", str(output)]


def start(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        # Its own process group, so the kill reaches everything the worker started.
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def run(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> int:
    process = start(command, env, log, cwd)
    try:
        return process.wait(timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def kill_in_phase(
    process: subprocess.Popen, probe: Path, aim: str, occurrence: int, delay: float, started: float
) -> Kill | None:
    """Kill `process`'s group with SIGKILL `delay` s after its `occurrence`-th entry into phase `aim`.

    Returns:
        Where the kill landed, or None when the process exited first.
    """
    offset, entries, current, deadline = 0, 0, None, None
    history: list[tuple[float, list[str]]] = []
    while process.poll() is None:
        lines, offset = read_probe(probe, offset)
        for stamp, chain in lines:
            history.append((stamp, chain))
            phase = phase_of(chain)
            if phase == aim and current != aim:
                entries += 1
                if entries == occurrence and deadline is None:
                    deadline = time.time() + delay
            current = phase
        if deadline is not None and time.time() >= deadline:
            moment = time.time()
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            lines, offset = read_probe(probe, offset)
            history += lines
            before = [(stamp, chain) for stamp, chain in history if stamp <= moment] or [(started, [])]
            stamp, chain = before[-1]
            return Kill(aim, phase_of(chain), chain, round(moment - started, 3), round(moment - stamp, 3))
        time.sleep(0.01)
    return None


# ---------------------------------------------------------------------------------------------
# Invariants


@dataclasses.dataclass
class Ledger:
    """What earlier rounds saw: finished trials and their runs, the best value, checked models."""

    finished: dict[int, str] = dataclasses.field(default_factory=dict)  # trial number -> run id
    best: float | None = None
    models_checked: set[str] = dataclasses.field(default_factory=set)


def check_invariants(
    storage: str, tracking_uri: str, study_name: str, ledger: Ledger, killed: list[int], export_dir: Path | None
) -> list[str]:
    """Check a study and its MLflow store once no worker is alive.

    Args:
        storage: The Optuna storage URL.
        tracking_uri: The MLflow tracking URI.
        study_name: The study.
        ledger: What earlier checks saw; updated.
        killed: Numbers of the trials that were RUNNING when their worker was killed.
        export_dir: The export folder to check, or None.

    Returns:
        One line per violated invariant.
    """
    import mlflow
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    problems = []
    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    if len(set(numbers)) != len(numbers) or sorted(numbers) != list(range(len(numbers))):
        problems.append(f"trial numbers not unique and contiguous: {numbers}")
    by_number = {t.number: t for t in trials}
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            problems.append(f"trial {trial.number} RUNNING with no live worker")
    client = MlflowClient(tracking_uri=tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    for trial in trials:
        if trial.state != TrialState.COMPLETE:
            continue
        run_id = trial.user_attrs.get("mlflow_run_id")
        model_uri = trial.user_attrs.get("model_uri")
        try:
            run = client.get_run(run_id)
        except Exception as error:
            problems.append(f"trial {trial.number} COMPLETE but its run {run_id} is unreadable: {error}")
            continue
        if run.info.status != "FINISHED" or run.info.lifecycle_stage != "active":
            problems.append(f"trial {trial.number} COMPLETE, its run {run_id} is {run.info.status}")
        missing = [name for name in ("val_mase", "test_mase", "train_loss") if name not in run.data.metrics]
        if missing:
            problems.append(f"trial {trial.number} run {run_id} lacks metrics {missing}")
        if not model_uri:
            problems.append(f"trial {trial.number} COMPLETE without a model_uri")
        elif model_uri not in ledger.models_checked:
            try:
                model = client.get_logged_model(model_uri.removeprefix("models:/"))
                files = {item.path for item in client.list_logged_model_artifacts(model.model_id)}
                if str(model.status).split(".")[-1] != "READY" or not {"MLmodel", "artifacts"} <= files:
                    problems.append(f"trial {trial.number} model {model_uri}: status {model.status}, files {files}")
                else:
                    ledger.models_checked.add(model_uri)
            except Exception as error:
                problems.append(f"trial {trial.number} model {model_uri} unreadable: {error}")
    for number, run_id in ledger.finished.items():
        trial = by_number.get(number)
        if trial is None or trial.state != TrialState.COMPLETE or trial.user_attrs.get("mlflow_run_id") != run_id:
            problems.append(f"finished trial {number} (run {run_id}) lost or changed")
    for number in killed:
        trial = by_number.get(number)
        if trial is None or trial.state != TrialState.FAIL:
            problems.append(f"killed trial {number} is {trial.state.name if trial else 'missing'}, not FAIL")
        elif trial.user_attrs.get("mlflow_run_id"):
            run = client.get_run(trial.user_attrs["mlflow_run_id"])
            if run.info.status != "FAILED" or "worker lost" not in run.data.tags.get("error", ""):
                problems.append(f"killed trial {number} run {run.info.run_id} {run.info.status}: {run.data.tags}")
    experiment = client.get_experiment_by_name(TASK)
    if experiment is not None:
        for run in client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'"):
            problems.append(f"run {run.info.run_id} ({run.info.run_name}) RUNNING with no live worker")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = min(t.value for t in complete)
        if ledger.best is not None and best > ledger.best:
            problems.append(f"best value went backwards: {ledger.best} -> {best}")
        ledger.best = best if ledger.best is None else min(best, ledger.best)
    ledger.finished.update({t.number: t.user_attrs.get("mlflow_run_id") for t in complete})
    if export_dir is not None:
        problems += _check_alias_and_export(client, export_dir)
    return problems


def _check_alias_and_export(client: Any, export_dir: Path) -> list[str]:
    import keras
    import mlflow

    problems = []
    try:
        version_ = client.get_model_version_by_alias(TASK, ALIAS)
        mlflow.pyfunc.load_model(f"models:/{TASK}@{ALIAS}")
    except Exception as error:
        return [f"alias {TASK}@{ALIAS} does not load: {type(error).__name__}: {str(error)[:300]}"]
    try:
        keras.models.load_model(export_dir / "model.keras")
    except Exception as error:
        problems.append(f"export {export_dir} (alias at version {version_.version}) does not load: {error}")
    return problems


def running_trials(storage: str, study_name: str) -> list[int]:
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return []
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]


# ---------------------------------------------------------------------------------------------
# Scenarios


def write_prices(folder: Path, series: int = 2, days: int = 2000) -> Path:
    from pipelines.stock_forecasting.synthetic import synthetic_ohlcv, write_csv

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(series):
        write_csv(synthetic_ohlcv(days, seed=index), folder / f"series{index}.csv", name=f"S{index}")
    return folder


def scenario_kills(work: Path, rounds: int, rng: random.Random, data: Path) -> dict[str, Any]:
    """The kill rounds on one SQLite study: kill, rerun at once, check."""
    work.mkdir(parents=True, exist_ok=True)
    storage, tracking_uri = f"sqlite:///{work / 'optuna.db'}", f"sqlite:///{work / 'mlflow.db'}"
    export_dir, log = work / "export", work / "workers.log"
    ledger, records = Ledger(), []
    aims = [list(AIMS)[i % len(AIMS)] for i in range(rounds)]
    rng.shuffle(aims)
    for number in range(1, rounds + 1):
        aim = aims[number - 1]
        tune = tune_command("kill", storage, 2 * number, data)
        commands = [tune, export_command(export_dir)]
        target = 1 if aim == "export" else 0
        occurrence = 1 if aim in ("registration", "export") else rng.randint(1, 2)
        delay = rng.uniform(0, AIMS[aim])
        began = time.monotonic()
        record: dict[str, Any] = {"round": number, "aimed": aim, "occurrence": occurrence, "delay_s": round(delay, 3)}
        codes = [run(command, worker_env(tracking_uri), log, work) for command in commands[:target]]
        probe = work / f"probe-{number}.log"
        process = start(commands[target], worker_env(tracking_uri, probe), log, work)
        kill = kill_in_phase(process, probe, aim, occurrence, delay, time.time())
        if kill is None:
            record["killed"] = False
            record["first_exit"] = process.returncode
        else:
            kill.running_trials = running_trials(storage, "kill")
            record.update(killed=True, **dataclasses.asdict(kill))
        # Rerun at once: the killed command, then the ones after it.
        codes += [run(command, worker_env(tracking_uri), log, work) for command in commands[target:]]
        record["rerun_exit_codes"] = codes
        problems = [f"command {i} exited {code}" for i, code in enumerate(codes) if code != 0]
        try:
            problems += check_invariants(
                storage, tracking_uri, "kill", ledger, kill.running_trials if kill else [], export_dir
            )
        except Exception as error:
            problems.append(f"invariant check failed: {type(error).__name__}: {error}")
        record.update(violations=problems, recovered=not problems, seconds=round(time.monotonic() - began, 1))
        records.append(record)
        print(
            f"round {number}/{rounds}: aimed {aim}, "
            + (f"killed in {kill.phase} at {kill.seconds_in:.1f} s" if kill else "worker finished before the kill")
            + f"; {'recovered' if not problems else 'VIOLATIONS: ' + '; '.join(problems)} ({record['seconds']} s)",
            flush=True,
        )
    return {"rounds": records, "finished_trials": len(ledger.finished), "best_value": ledger.best}


def scenario_two_workers(work: Path, rounds: int, rng: random.Random, data: Path) -> dict[str, Any]:
    """Two workers on one PostgreSQL study (MLflow on PostgreSQL too); one is killed, the other finishes."""
    if not (postgres_binary("initdb") and postgres_binary("pg_ctl")):
        return {"skipped": "PostgreSQL server binaries not installed"}
    from mlflow import MlflowClient

    work.mkdir(parents=True, exist_ok=True)
    records = []
    with postgres(work / "pg") as url:
        storage, tracking_uri = f"{url}/optuna", f"{url}/mlflow"
        MlflowClient(tracking_uri=tracking_uri).search_experiments()  # MLflow's tables, once
        ledger = Ledger()
        aims = ["epoch", "model logging", "data loading"]
        for number in range(1, rounds + 1):
            aim = aims[(number - 1) % len(aims)]
            command = tune_command("pg", storage, 3 * number, data, register=False)
            began = time.monotonic()
            probe = work / f"probe-{number}.log"
            victim = start(command, worker_env(tracking_uri, probe), work / "victim.log", work)
            survivor = start(command, worker_env(tracking_uri), work / "survivor.log", work)
            kill = kill_in_phase(victim, probe, aim, rng.randint(1, 2), rng.uniform(0, AIMS[aim]), time.time())
            running = running_trials(storage, "pg") if kill is not None else []
            try:
                code = survivor.wait(timeout=COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(survivor.pid, signal.SIGKILL)
                code = survivor.wait()
            problems = [] if code == 0 else [f"survivor exited {code}"]
            if kill is None:
                problems.append(f"victim finished before the kill (exit {victim.returncode})")
            # Trials RUNNING at the kill that did not finish were the victim's (a survivor's trial
            # ends COMPLETE or PRUNED): each must now be FAIL with its run closed as lost.
            lost = [n for n in running if n not in _finished_numbers(storage, "pg")]
            if kill is not None:
                kill.running_trials = lost
            try:
                problems += check_invariants(storage, tracking_uri, "pg", ledger, lost, None)
            except Exception as error:
                problems.append(f"invariant check failed: {type(error).__name__}: {error}")
            record = {"round": number, "aimed": aim, "survivor_exit": code, "violations": problems}
            if kill is not None:
                record.update(killed=True, **dataclasses.asdict(kill))
            record.update(recovered=not problems, seconds=round(time.monotonic() - began, 1))
            records.append(record)
            print(
                f"postgres round {number}/{rounds}: victim killed in {kill.phase if kill else '-'}; "
                f"{'recovered' if not problems else 'VIOLATIONS: ' + '; '.join(problems)} ({record['seconds']} s)",
                flush=True,
            )
    return {"rounds": records, "finished_trials": len(ledger.finished)}


def _finished_numbers(storage: str, study_name: str) -> set[int]:
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=study_name, storage=storage)
    return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))}


def _log_lines(log: Path, since: int, *needles: str) -> list[str]:
    text = log.read_text(errors="replace")[since:]
    return [line.strip()[:400] for line in text.splitlines() if any(n.lower() in line.lower() for n in needles)]


def scenario_server_restart(work: Path, rng: random.Random, data: Path) -> dict[str, Any]:
    """An `mlflow server` stopped during a trial's epoch and started again; the same tune rerun."""
    work.mkdir(parents=True, exist_ok=True)
    server = MlflowServer(f"sqlite:///{work / 'server.db'}", work / "artifacts", work / "server.log")
    storage, log = f"sqlite:///{work / 'optuna.db'}", work / "worker.log"
    result: dict[str, Any] = {"server": server.url}
    server.start()
    try:
        env = worker_env(server.url)
        result["first_exit"] = run(tune_command("http", storage, 2, data, register=False), env, log, work)
        ledger = Ledger()
        before = check_invariants(storage, server.url, "http", ledger, [], None)
        probe, since = work / "probe.log", log.stat().st_size
        worker = start(tune_command("http", storage, 4, data, register=False), worker_env(server.url, probe), log, work)
        offset, seen = 0, False
        while worker.poll() is None and not seen:
            lines, offset = read_probe(probe, offset)
            seen = any(phase_of(chain) == "epoch" for _, chain in lines)
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 1.0))
        in_flight = running_trials(storage, "http")
        stopped = time.monotonic()
        server.stop()
        try:
            code = worker.wait(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            code = worker.wait()
        result.update(
            stopped_during_trials=in_flight,
            worker_exit=code,
            seconds_to_exit=round(time.monotonic() - stopped, 1),
            error_lines=[line for line in _log_lines(log, since, "error") if line.startswith("error:")],
        )
        result["error_names_server"] = any(server.url in line for line in result["error_lines"])
        server.start()
        result["rerun_exit"] = run(tune_command("http", storage, 4, data, register=False), env, log, work)
        after = check_invariants(storage, server.url, "http", ledger, [], None)
        problems = before + after
        problems += [] if result["rerun_exit"] == 0 else [f"rerun exited {result['rerun_exit']}"]
        problems += [] if result["error_names_server"] else ["the worker's error does not name the server"]
        result["violations"] = problems
    finally:
        server.stop()
    return result


def scenario_full_disk(work: Path, data: Path) -> dict[str, Any]:
    """Artifacts on a 2 MiB tmpfs that fills during the study; then more room, and the same tune rerun."""
    from mlflow import MlflowClient

    work.mkdir(parents=True, exist_ok=True)
    disk = work / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        return {"skipped": f"cannot mount a tmpfs: {mounted.stderr.strip() or mounted.stdout.strip()}"}
    storage, tracking_uri, log = (
        f"sqlite:///{work / 'optuna.db'}",
        f"sqlite:///{work / 'mlflow.db'}",
        work / "worker.log",
    )
    result: dict[str, Any] = {"artifact_root": str(disk), "size": "2 MiB tmpfs"}
    try:
        # The experiment's artifacts go to the small disk, as a user's artifact location would.
        MlflowClient(tracking_uri=tracking_uri).create_experiment(TASK, artifact_location=str(disk))
        env = worker_env(tracking_uri)
        result["first_exit"] = run(tune_command("disk", storage, 3, data, register=False), env, log, work)
        result["error_lines"] = [line for line in _log_lines(log, 0, "no space") if line.startswith("error:")]
        result["error_names_path"] = any(str(disk) in line for line in result["error_lines"])
        ledger = Ledger()
        full = check_invariants(storage, tracking_uri, "disk", ledger, [], None)
        counts = _state_counts(storage, "disk")
        result["trials_when_full"] = counts
        subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)
        result["rerun_exit"] = run(tune_command("disk", storage, 3, data, register=False), env, log, work)
        after = check_invariants(storage, tracking_uri, "disk", ledger, [], None)
        result["trials_after"] = _state_counts(storage, "disk")
        problems = full + after
        problems += [] if result["error_lines"] else ["no 'No space left on device' error in the worker's output"]
        problems += [] if result["error_names_path"] else ["the disk-full error does not name the path"]
        problems += [] if result["rerun_exit"] == 0 else [f"rerun exited {result['rerun_exit']}"]
        if result["trials_after"].get("COMPLETE", 0) < 3:
            problems.append(f"study did not reach 3 complete trials after the disk had room: {result['trials_after']}")
        result["violations"] = problems
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
    return result


def _state_counts(storage: str, study_name: str) -> dict[str, int]:
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage)
    return dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))


# ---------------------------------------------------------------------------------------------
# Summary


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    pg = postgres_binary("pg_ctl")
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        **{name: version(name) for name in ("tensorflow", "keras", "mlflow", "optuna")},
        "postgresql": subprocess.run([pg, "--version"], capture_output=True, text=True).stdout.strip() if pg else "-",
    }


def summarise(results: dict[str, Any], seconds: float, command: str) -> str:
    lines = [f"# Fault harness: `{command}`", ""]
    kills = results.get("kill")
    if kills:
        rounds = kills["rounds"]
        landed = Counter(r["phase"] for r in rounds if r.get("killed"))
        killed = sum(bool(r.get("killed")) for r in rounds)
        recovered = sum(r["recovered"] for r in rounds)
        lost = sum(1 for r in rounds for v in r["violations"] if "lost" in v or "RUNNING" in v or "unreadable" in v)
        lines += [
            f"**{len(rounds)} rounds, {killed} kills, {recovered} recovered, {lost} lost** "
            f"({kills['finished_trials']} finished trials, best value {kills['best_value']})",
            "",
            "| phase the kill landed in | kills | aimed at it | recovered |",
            "|---|---:|---:|---:|",
        ]
        aimed = Counter(r["aimed"] for r in rounds)
        for phase in sorted(set(landed) | set(aimed)):
            ok = sum(r["recovered"] for r in rounds if r.get("phase") == phase)
            lines.append(f"| {phase} | {landed.get(phase, 0)} | {aimed.get(phase, 0)} | {ok} |")
        missed = [r["round"] for r in rounds if not r.get("killed")]
        if missed:
            lines.append(f"\nRounds whose worker finished before its kill: {missed}")
        lines.append("")
    for name in ("kill", "postgres", "server", "disk"):
        found = results.get(name)
        if not found:
            continue
        violations = (
            [f"round {r['round']}: {v}" for r in found["rounds"] for v in r["violations"]]
            if "rounds" in found
            else found.get("violations", [])
        )
        if "skipped" in found:
            lines.append(f"- {name}: skipped: {found['skipped']}")
        elif name == "postgres":
            rounds = found["rounds"]
            lines.append(
                f"- two workers on PostgreSQL: {len(rounds)} rounds, {sum(bool(r.get('killed')) for r in rounds)} "
                f"victims killed (in {dict(Counter(r.get('phase') for r in rounds if r.get('killed')))}), "
                f"{sum(r['recovered'] for r in rounds)} recovered"
            )
        elif name == "server":
            lines.append(
                f"- tracking server stopped during trial(s) {found.get('stopped_during_trials')}: worker exit "
                f"{found.get('worker_exit')} after {found.get('seconds_to_exit')} s; error names the server: "
                f"{found.get('error_names_server')}; rerun exit {found.get('rerun_exit')}"
            )
            lines += [f"  - `{line}`" for line in found.get("error_lines", [])[-2:]]
        elif name == "disk":
            lines.append(
                f"- full disk ({found.get('size')} at {found.get('artifact_root')}): first tune exit "
                f"{found.get('first_exit')}, trials {found.get('trials_when_full')}; error names the path: "
                f"{found.get('error_names_path')}; after remount, rerun exit {found.get('rerun_exit')}, trials "
                f"{found.get('trials_after')}"
            )
            lines += [f"  - `{line}`" for line in found.get("error_lines", [])[-2:]]
        lines += [f"  - VIOLATION ({name}) {v}" for v in violations]
    total = sum(len(r["violations"]) for f in results.values() if f and "rounds" in f for r in f["rounds"]) + sum(
        len(f.get("violations", [])) for f in results.values() if f and "rounds" not in f
    )
    lines += ["", f"Invariant violations: {total}. Wall time: {seconds / 60:.1f} min.", ""]
    lines += [f"- {key}: {value}" for key, value in machine().items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="kill rounds on the SQLite study (default 30)")
    parser.add_argument("--pg-rounds", type=int, default=3, help="two-worker PostgreSQL rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="a short check: 5 kill rounds, 1 PostgreSQL round")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    parser.add_argument("--only", action="append", choices=["kill", "postgres", "server", "disk"], help="repeatable")
    parser.add_argument("--workdir", type=Path, help="default: a new folder under the system's temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the databases and artifacts, not only the logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.pg_rounds = min(args.rounds, 5), min(args.pg_rounds, 1)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fault-harness-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rng = random.Random(args.seed)
    data = write_prices(work / "prices")
    wanted = args.only or ["kill", "postgres", "server", "disk"]
    began = time.monotonic()
    results: dict[str, Any] = {}
    scenarios = {
        "kill": lambda: scenario_kills(work / "kill", args.rounds, rng, data),
        "postgres": lambda: scenario_two_workers(work / "postgres", args.pg_rounds, rng, data),
        "server": lambda: scenario_server_restart(work / "server", rng, data),
        "disk": lambda: scenario_full_disk(work / "disk", data),
    }
    for name in wanted:
        print(f"== {name}", flush=True)
        try:
            results[name] = scenarios[name]()
        except Exception as error:  # a broken scenario is reported, the others still run
            results[name] = {"violations": [f"scenario failed: {type(error).__name__}: {error}"]}
        print(json.dumps(results[name], default=str)[:2000], flush=True)
    seconds = time.monotonic() - began
    command = "python benchmarks/fault_harness.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = summarise(results, seconds, command.strip())
    (work / "summary.md").write_text(summary)
    (work / "summary.json").write_text(json.dumps({"results": results, "seconds": seconds}, indent=1, default=str))
    if not args.keep:
        for path in work.rglob("*"):
            if path.is_dir() and path.name in ("artifacts", "mlruns", "export", "pg", "prices"):
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file() and path.suffix == ".db":
                path.unlink()
    print(summary)
    print(f"summary: {work / 'summary.md'}")
    return 1 if "VIOLATION" in summary else 0


if __name__ == "__main__":
    sys.exit(main())
