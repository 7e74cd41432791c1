"""`meta-dist bench`'s table (the JSON report is checked end to end in tests/integration/test_bench.py)."""
from meta_dist.bench_report import format_table


def _report(rows: list[dict]) -> dict:
    workload = {"config": "sinusoid_maml", "algorithm": "maml", "first_order": False, "task": "sinusoid",
                "ways": 5, "shots": 10, "num_query": 10, "meta_batch_size": 25, "inner_steps": 1,
                "model": "mlp", "data": "generated", "driver_worker": True, "compiled_graph": True,
                "reference_threads": 2, "scaling_base_workers": 1,
                "hardware": {"cpu": "AMD EPYC", "cores": 2, "torch": "2.14.1", "ray": "2.58.1"}}
    results = []
    for workers, step_ms, channels, *still_open in rows:
        results.append({"workers": workers, "tasks_per_s": 25e3 / step_ms, "speedup_vs_reference": 7.0,
                        "speedup_vs_vmap": 1.25 if workers == 1 else None,
                        "scaling_efficiency": 1.0, "step_ms": step_ms, "step_ms_median": step_ms - 0.05,
                        "overhead_ms_per_step": 0.5, "driver_chunks_per_step": 2.0 / workers,
                        "compiled_channels": channels, "channels_open_at_end": (still_open or [channels])[0],
                        "nodes": 1,
                        "driver_ingress": {"updates_per_step": workers - 1.0, "bytes_per_step": 6884.0 * (workers - 1)},
                        "time_split": {"compute_s": 0.0028, "wait_s": 0.0, "communication_s": 0.0001,
                                       "aggregation_s": 0.0002, "specs_s": 0.00025}})
    references = {"loop": {"kind": "per-task loop", "threads": 2, "device": "cpu", "tasks_per_s": 1000.0},
                  "vmap": [{"kind": "torch.func vmap", "threads": 1, "device": "cpu", "tasks_per_s": 6097.6}]}
    return {"workload": workload, "reference_tasks_per_s": 1000.0, "references": references, "results": results}


def test_table_names_the_channels_and_prints_each_row_in_milliseconds():
    table = format_table(_report([(1, 3.28, 0), (2, 2.43, 1)]))
    assert "the driver computes as worker 0, the others are actors; actors reached through compiled channels" in table
    assert "reference (one process, per-task loop, 2 torch threads): 1000.0 tasks/s" in table
    assert "reference (one process, torch.func vmap, 1 torch thread): 6097.6 tasks/s" in table
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.split()[:1] in (["1"], ["2"])}
    # workers, tasks/s, vs ref, vs vmap, efficiency, step ms, median, overhead ms, driver chunks | compute, ...
    assert rows["1"][:9] == ["1", "7622.0", "7.00x", "1.25x", "1.00", "3.28", "3.23", "0.50", "2.00"]
    assert rows["2"][3:9] == ["-", "1.00", "2.43", "2.38", "0.50", "1.00"]
    assert rows["2"][9:13] == ["|", "2.80", "0.00", "0.10"]
    assert "took longer" not in table
    assert "driver ingress per step (updates from actors): 1 worker(s) on 1 node(s) 0.0 x 0 KiB, " \
           "2 worker(s) on 1 node(s) 1.0 x 7 KiB" in table


def test_table_says_ordinary_calls_and_flags_a_slower_step():
    table = format_table(_report([(1, 3.28, 0), (2, 3.34, 0)]))
    assert "; ordinary actor calls" in table
    assert "note: a step with 2 workers took longer than with 1" in table


def test_a_meta_rl_table_shows_environment_steps_instead_of_the_references():
    report = _report([(1, 3.28, 0), (2, 2.43, 1)])
    report["references"] = None
    report["workload"].update(algorithm="rl2", task="metaworld_ml1", model="policy_gru", env_steps_per_task=1000)
    for r in report["results"]:
        r["env_steps_per_s"] = r["tasks_per_s"] * 1000
    table = format_table(report)
    assert "workload: sinusoid_maml (rl2, metaworld_ml1, meta-batch 25, 1000 environment steps per task" in table
    assert "reference (one process" not in table and "env st/s: environment steps per second" in table
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.split()[:1] in (["1"], ["2"])}
    assert rows["1"][:3] == ["1", "7622.0", "7621951"]


def test_table_says_when_long_steps_gave_up_the_channels():
    table = format_table(_report([(1, 3.28, 0), (2, 2.43, 1, 0), (3, 2.0, 2, 2)]))
    assert "actors reached through compiled channels (ordinary calls by the end with 2 workers: " \
           "steps waited long on them)" in table
    assert "ordinary actor calls" in format_table(_report([(1, 3.28, 0)]))
