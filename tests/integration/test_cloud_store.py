"""Task stores in S3: pushed and read through a real S3-compatible server (moto's server mode) on
127.0.0.1, with Arrow's own S3 client; the same run on the local store and on its S3 copy agrees bit for
bit, each process reuses the node's cached copy, and a broken remote store is a one-line error."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meta_dist.tasks import remote
from meta_dist.tasks.synthetic import write_synthetic_store
from tests.conftest import cli
from tests.helpers.runs import final_digest
from tests.helpers.jobs import free_port

pytestmark = pytest.mark.integration

BUCKET = "stores"
TRAIN = ["--config", "omniglot_protonet", "--steps", "4", "--workers", "2", "--set", "task.ways=5",
         "--set", "eval.num_tasks=10", "--set", "checkpoint.every=2"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on loopback with one bucket; yields the environment that reaches it."""
    import boto3

    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and proc.poll() is None, "moto_server did not start"
            time.sleep(0.2)
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=BUCKET)
        yield {**env, "store": write_synthetic_store(tmp_path_factory.mktemp("s3") / "store", split_name="vinyals"),
               "client": client}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def env_of(s3: dict, cache: Path) -> dict:
    return {**{k: v for k, v in s3.items() if k.startswith("AWS_")}, remote.CACHE_ENV: str(cache)}


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir()) if cache.exists() else []


def test_a_run_on_the_s3_store_equals_the_run_on_the_local_store(s3, tmp_path):
    uri = f"s3://{BUCKET}/omniglot"
    cache = tmp_path / "cache"
    pushed = cli("data", "push", str(s3["store"]), uri, env=env_of(s3, cache))
    assert pushed.returncode == 0, pushed.stderr
    runs = {}
    for name, data in (("local", str(s3["store"])), ("s3", uri)):
        done = cli("train", *TRAIN, "--data", data, "--run-dir", str(tmp_path / name), env=env_of(s3, cache),
                   timeout=600)
        assert done.returncode == 0, done.stderr
        runs[name] = tmp_path / name
    assert json.loads((runs["s3"] / "eval.json").read_text())["curve"] == \
        json.loads((runs["local"] / "eval.json").read_text())["curve"]
    assert final_digest(runs["s3"]) == final_digest(runs["local"])
    # The driver and both workers read one cached copy, fetched once; evaluating again reuses it.
    (entry,) = entries(cache)
    assert sorted(p.name for p in entry.iterdir()) == ["classes.parquet", "images.arrow", "store.json"]
    fetched = entry.stat().st_mtime_ns
    again = cli("eval", "--run-dir", str(runs["s3"]), "--tasks", "5", "--json", env=env_of(s3, cache))
    assert again.returncode == 0, again.stderr
    assert entries(cache) == [entry] and entry.stat().st_mtime_ns == fetched


def _open(uri: str, env: dict) -> str:
    os.environ.update(env)
    from meta_dist.tasks.store import open_store

    return str(open_store(uri).path)


def test_processes_of_one_node_fetch_the_store_once_between_them(s3, tmp_path):
    uri = f"s3://{BUCKET}/shared"
    env = env_of(s3, tmp_path / "cache")
    assert cli("data", "push", str(s3["store"]), uri, env=env).returncode == 0
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        paths = pool.starmap(_open, [(uri, env)] * 3)
    assert len(set(paths)) == 1 and entries(tmp_path / "cache") == [Path(paths[0])]
    assert not list((tmp_path / "cache").glob("*.part*"))


def _train_error(s3: dict, uri: str, cache: Path, run_dir: Path) -> str:
    done = cli("train", *TRAIN, "--backend", "local", "--data", uri, "--run-dir", str(run_dir), env=env_of(s3, cache))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("meta-dist: error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_missing_or_corrupted_remote_store_is_a_one_line_error_and_caches_nothing(s3, tmp_path):
    cache = tmp_path / "cache"
    assert "has no store.json; upload a whole store with `meta-dist data push" in \
        _train_error(s3, f"s3://{BUCKET}/absent", cache, tmp_path / "a")
    uri = f"s3://{BUCKET}/corrupt"
    assert cli("data", "push", str(s3["store"]), uri, env=env_of(s3, cache)).returncode == 0
    images = bytearray((s3["store"] / "images.arrow").read_bytes())
    images[-100] ^= 0xFF  # same size, other bytes: only the checksum can tell
    s3["client"].put_object(Bucket=BUCKET, Key="corrupt/images.arrow", Body=bytes(images))
    assert "does not match the sha256 in its manifest" in _train_error(s3, uri, cache, tmp_path / "b")
    s3["client"].delete_object(Bucket=BUCKET, Key="corrupt/classes.parquet")
    assert "is incomplete (missing classes.parquet)" in _train_error(s3, uri, cache, tmp_path / "c")
    assert entries(cache) == [] and not list(cache.glob("*.part*"))


def test_push_checks_the_local_store_and_the_address(s3, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(s3["store"], broken)
    (broken / "classes.parquet").unlink()
    for args, message in (((str(broken), f"s3://{BUCKET}/x"), "is incomplete (missing classes.parquet)"),
                          ((str(s3["store"]), "/tmp/not-a-bucket"), "is not a cloud store address")):
        done = cli("data", "push", *args, env=env_of(s3, tmp_path / "cache"))
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
