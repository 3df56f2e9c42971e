"""docs/team.md's tracking server for real (PostgreSQL, basic auth, artifacts proxied to S3): two
clones' `dvc repro` into one experiment, the search, predict from the champion, the champion
raced, the UI in Chromium. Its faults: test_team_server_faults.py."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ..conftest import copy_project, run_cli, user_env, write_mirror
from .team import ADMIN_PASSWORD, EXPERIMENT, MODEL, PASSWORDS

pytestmark = pytest.mark.slow

# two clones that differ in one knob, so their runs are told apart and one model is clearly better
CLONES = {"alice": {"optimizer.lr": 0.003}, "bob": {"model.activation": "sigmoid", "optimizer.lr": 1.0e-5}}


@pytest.fixture(scope="module")
def clones(team, tmp_path_factory, tiny):
    """Alice's and Bob's projects, each `dvc repro`-ed at the same time into the team server; each
    already had a local run (its mlflow.db), which stays local."""
    base = tmp_path_factory.mktemp("clones")
    mirror = write_mirror(base / "mirror", tiny.raw)
    projects, running = {}, {}
    for user, knobs in CLONES.items():
        project = projects[user] = copy_project(base / user)
        tiny.shrink(project, knobs)
        (project / "mlflow.db").write_bytes(b"")  # a local store from before (its runs stay there)
        env = user_env({"MNIST_MIRROR": str(mirror), **team.env(user)})
        running[user] = subprocess.Popen(["dvc", "repro"], cwd=project, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)  # fmt: skip
    logs = {user: process.communicate(timeout=600)[0] for user, process in running.items()}
    for user, process in running.items():
        assert process.returncode == 0, logs[user][-3000:]
    return projects, logs, mirror


def run_id(project: Path) -> str:
    return json.loads((project / "reports/mlflow_run.json").read_text())["run_id"]


def ranked_versions(admin, projects: dict) -> tuple[dict, str, str]:
    """Each clone's registered version, and which clone's is better and which worse by test/acc."""
    versions = {u: admin.search_model_versions(f"name = '{MODEL}' and run_id = '{run_id(p)}'")[0]
                for u, p in projects.items()}  # fmt: skip
    accuracy = {u: float(v.tags["test/acc"]) for u, v in versions.items()}
    better, worse = sorted(accuracy, key=accuracy.get, reverse=True)
    assert accuracy[better] > accuracy[worse]
    return versions, better, worse


def test_two_clones_log_to_one_experiment_with_artifacts_in_s3_and_no_password_anywhere(team, clones):
    projects, logs, _ = clones
    admin = team.client("admin")
    experiment = admin.get_experiment_by_name(EXPERIMENT)
    runs = {r.info.run_id: r for r in admin.search_runs([experiment.experiment_id])}
    for user, project in projects.items():
        run = runs[run_id(project)]
        assert run.info.status == "FINISHED" and run.info.user_id == user  # who logged it, from the login
        assert "test/acc" in run.data.metrics and "val/acc" in run.data.metrics
        artifacts = {a.path for a in admin.list_artifacts(run.info.run_id, "figures")}
        assert "figures/training_curves.png" in artifacts and "figures/confusion_matrix.png" in artifacts
        assert not (project / "mlruns").exists()  # proxied: nothing written beside the clone
        assert f"this project's earlier runs stay in sqlite:///{project / 'mlflow.db'}" in logs[user]
        assert (project / "mlflow.db").read_bytes() == b""  # the local store untouched
    keys = team.bucket_keys()  # the artifacts are in the bucket, under the runs' ids
    for project in projects.values():
        assert any(run_id(project) in key and key.endswith("training_curves.png") for key in keys)

    # the champion: the better of the two, whichever evaluate finished last
    accuracy = {u: runs[run_id(p)].data.metrics["test/acc"] for u, p in projects.items()}
    champion = admin.get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id == run_id(projects[max(accuracy, key=accuracy.get)])

    # no password in a param, tag, artifact, log line or file of either clone
    secrets = [p.encode() for p in (*PASSWORDS.values(), ADMIN_PASSWORD)]
    for run in runs.values():
        recorded = json.dumps([run.data.params, run.data.tags]).encode()
        assert not any(s in recorded for s in secrets)
        folder = Path(admin.download_artifacts(run.info.run_id, "", str(team.base / run.info.run_id)))
        for path in (p for p in folder.rglob("*") if p.is_file()):
            assert not any(s in path.read_bytes() for s in secrets), path
    for user, project in projects.items():
        assert not any(s in logs[user].encode() for s in secrets)
        for path in (p for p in project.rglob("*") if p.is_file() and ".git" not in p.parts):
            assert not any(s in path.read_bytes() for s in secrets), path


def test_predict_and_the_search_use_the_team_server(team, clones, tiny):
    projects, _, mirror = clones
    alice = projects["alice"]
    pngs = sorted((alice / "reports").glob("*.png"))[:1]  # any image: the answer's form is checked
    reader = run_cli(["python", "src/predict.py", "--model", f"models:/{MODEL}@champion", str(pngs[0])],
                     cwd=alice, env=team.env("reader"))  # fmt: skip
    assert reader.returncode == 0, reader.stderr[-2000:]  # READ is enough to load the champion
    assert reader.stdout.startswith(f"{pngs[0]}: ") and "(p=" in reader.stdout

    (alice / "conf" / "search" / "pair.yaml").write_text(
        "name: pair\nn_trials: 2\nspace:\n  optimizer.lr: {choices: [0.003, 0.001]}\n"
    )
    search = run_cli(["python", "src/search.py", "search=pair", "trainer.max_epochs=1", "search.pruner=none",
                      "search.train_winner=false", "callbacks.progress_bar.refresh_rate=0"], cwd=alice,
                     env={"MNIST_MIRROR": str(mirror), **team.env("alice")})  # fmt: skip
    assert search.returncode == 0, search.stderr[-3000:]
    admin = team.client("admin")
    experiment = admin.get_experiment_by_name(EXPERIMENT)
    (parent,) = admin.search_runs([experiment.experiment_id], "attributes.run_name = 'search: pair'")
    child_of = f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    children = admin.search_runs([experiment.experiment_id], child_of)
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert parent.info.user_id == "alice"


class RaceProxy(ThreadingHTTPServer):
    """Forwards to the tracking server, making two evaluate stages race: their first reads of
    @champion wait for each other, and the worse version's move of it waits for the better's."""

    def __init__(self, target: str, worse: str, better: str) -> None:
        self.target, self.worse, self.better = target, worse, better
        self.both_read, self.better_moved = threading.Barrier(2, timeout=60), threading.Event()
        self.reads, self.moves, self.lock = 0, [], threading.Lock()
        super().__init__(("127.0.0.1", 0), RaceHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class RaceHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.forward(None)

    def do_POST(self) -> None:
        self.forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    do_PUT = do_PATCH = do_POST  # artifact uploads and updates pass through as they are

    def do_DELETE(self) -> None:
        self.forward(None)

    def forward(self, body: bytes | None) -> None:
        proxy: RaceProxy = self.server
        if "/registered-models/alias" in self.path:
            if self.command == "GET":
                with proxy.lock:
                    proxy.reads += 1
                    first_two = proxy.reads <= 2
                if first_two:
                    with contextlib.suppress(threading.BrokenBarrierError):
                        proxy.both_read.wait()
            elif self.command == "POST":
                version = str(json.loads(body)["version"])
                proxy.moves.append(version)
                if version == proxy.worse:
                    proxy.better_moved.wait(timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(proxy.target + self.path, body, headers, method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, payload, kind = response.status, response.read(), response.headers.get("Content-Type")
        except urllib.error.HTTPError as err:
            status, payload, kind = err.code, err.read(), err.headers.get("Content-Type")
        moved = self.command == "POST" and "/registered-models/alias" in self.path
        if moved and str(json.loads(body)["version"]) == proxy.better:
            proxy.better_moved.set()
        self.send_response(status)
        self.send_header("Content-Type", kind or "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def test_two_evaluate_stages_finishing_at_once_leave_the_champion_on_the_better(team, clones):
    """Both read @champion before either moves it, and the worse moves it last: without a re-read,
    the worse one's move would be the last word (a lost update)."""
    projects, _, mirror = clones
    admin = team.client("admin")
    versions, better, worse = ranked_versions(admin, projects)
    admin.delete_registered_model_alias(MODEL, "champion")  # a fresh registry's first two evaluations
    proxy = RaceProxy(team.url, str(versions[worse].version), str(versions[better].version))
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        running = {
            user: subprocess.Popen(
                ["python", "src/evaluate.py"],
                cwd=project,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=user_env(
                    {"MNIST_MIRROR": str(mirror), **team.env(user), "MLFLOW_TRACKING_URI": proxy.url}
                ),
            )  # fmt: skip
            for user, project in projects.items()
        }
        outputs = {user: process.communicate(timeout=300) for user, process in running.items()}
    finally:
        proxy.shutdown()
    for user, process in running.items():
        assert process.returncode == 0, outputs[user][1][-3000:]
    assert proxy.reads >= 2 and not proxy.both_read.broken  # the race happened: both read first
    champion = admin.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == str(versions[better].version), proxy.moves
    assert f"@champion is version {versions[better].version}" in outputs[worse][0]
    assert admin.get_model_version(MODEL, versions[worse].version).tags["status"] == "candidate"


def test_a_first_champion_set_by_another_stage_at_the_same_moment_is_judged_not_a_failure(team, clones):
    """The server sets a new alias by a read and then an insert, so two first sets of @champion at
    once collide on its key (PostgreSQL's UniqueViolation, a BAD_REQUEST to the loser). Here the
    other stage's insert (of the worse version) is held open in the database until ours waits on
    it: the loser reads @champion again and moves it to the better, instead of failing."""
    from digitpipe.tracking.registry import settle_champion

    projects, _, _ = clones
    admin = team.client("admin")
    versions, better, worse = ranked_versions(admin, projects)
    for user in (better, worse):  # both claim, as two evaluate stages do before they read
        admin.set_model_version_tag(MODEL, versions[user].version, "status", "evaluating")
    admin.delete_registered_model_alias(MODEL, "champion")
    database = f"{Path(__file__).stem}_runs"  # the team fixture's database for this file
    other, watcher = team.database.connect(database), team.database.connect(database)
    watcher.autocommit = True
    outcome: dict = {}

    def settle() -> None:
        try:
            outcome["settled"] = settle_champion(team.client("admin"), MODEL)
        except Exception as err:  # noqa: BLE001 (the assertion below shows it)
            outcome["error"] = err

    try:
        with other.cursor() as cursor:  # the other stage's first set, not yet committed
            cursor.execute(
                "INSERT INTO registered_model_aliases (workspace, name, alias, version) VALUES (%s,%s,%s,%s)",
                ("default", MODEL, "champion", int(versions[worse].version)),
            )
        ours = threading.Thread(target=settle)
        ours.start()
        for _ in range(600):  # until the server's insert of ours waits on the other's key
            with watcher.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                if cursor.fetchone()[0]:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the server's set of @champion never waited on the other stage's insert")
        other.commit()
        ours.join(timeout=120)
    finally:
        other.close()
        watcher.close()
    assert "error" not in outcome, outcome.get("error")
    champion, replaced = outcome["settled"]
    assert str(champion.version) == str(versions[better].version)
    assert str(replaced.version) == str(versions[worse].version)  # judged: the other's set was read
    assert str(admin.get_model_version_by_alias(MODEL, "champion").version) == str(versions[better].version)
    for user, status in ((better, "champion"), (worse, "candidate")):  # as evaluate leaves them
        admin.set_model_version_tag(MODEL, versions[user].version, "status", status)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_the_ui_logs_in_shows_both_clones_runs_in_one_experiment_and_a_runs_figure(team, clones, tmp_path):
    from playwright.sync_api import sync_playwright

    projects, _, _ = clones
    admin = team.client("admin")
    experiment = admin.get_experiment_by_name(EXPERIMENT).experiment_id
    runs = {user: admin.get_run(run_id(project)) for user, project in projects.items()}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        anonymous = playwright.request.new_context()  # no login: the server asks for one
        assert anonymous.get(f"{team.url}/").status == 401
        anonymous.dispose()
        bob = {"username": "bob", "password": PASSWORDS["bob"]}
        context = browser.new_context(viewport={"width": 1400, "height": 900}, http_credentials=bob)
        page = context.new_page()
        page.goto(f"{team.url}/#/experiments/{experiment}?workflowType=machine_learning")
        for run in runs.values():  # both clones' runs, in one table
            page.get_by_text(run.info.run_name).first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "experiment.png"))
        alice = runs["alice"]
        page.goto(f"{team.url}/#/experiments/{experiment}/runs/{alice.info.run_id}")
        page.get_by_text(alice.info.run_name).first.wait_for(timeout=60_000)
        page.get_by_role("tab", name="Artifacts").click()
        page.get_by_text("figures", exact=True).first.click()
        page.get_by_text("training_curves.png").first.click()
        page.wait_for_function(  # the figure, fetched through the server from the bucket
            "() => [...document.images].some(i => i.src.startsWith('blob:') && i.naturalWidth > 600)",
            timeout=30_000,
        )
        page.screenshot(path=str(tmp_path / "figure.png"))
        browser.close()
    assert (tmp_path / "figure.png").stat().st_size > 10_000
