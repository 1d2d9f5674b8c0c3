"""The benchmarks harness (benchmarks/run.py) runs end to end on tiny sizes: every op, mode and provider it is
asked for, a CSV naming device, torch version and commit on every row, and a plot per op. Timings are not
checked here (speed targets are the harness's business, never a test's)."""
import csv
import importlib.util
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from conftest import DEVICES, HAS_CUDA

ROOT = Path(__file__).resolve().parent.parent


def load_script(name):
    """benchmarks/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"pyext_benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load_harness():
    return load_script("run")


@pytest.mark.parametrize("device", DEVICES)
def test_harness_runs_every_op_mode_and_provider(device, tmp_path, capsys):
    run = load_harness()
    ops = [op.name for op in run.OPS]
    providers = ["pyext", "eager", "foreach", "fused"] + (["graph"] if device == "cuda" else [])
    run.main(["--device", device, "--quick", "--ops", *ops, "sgd", "tutorial", "--sizes", "1000", "4096",
              "--dtypes", "float32", "bfloat16", "--providers", *providers, "--min-time", "0.001",
              "--out", str(tmp_path)])
    rows = list(csv.DictReader(open(tmp_path / f"quick_{device}.csv")))
    assert all(r["device"] and r["torch"] == torch.__version__ and r["commit"] for r in rows)
    measured = {(r["op"], r["mode"], r["provider"], r["dtype"], int(r["n"])) for r in rows}
    for op in ops:
        for mode in run.MODES:
            for provider in ("pyext", "eager"):
                for dtype in ("float32", "bfloat16"):
                    n = 1024 if op == "mul_row" else 1000  # whole rows of 1024
                    assert (op, mode, provider, dtype, n) in measured, (op, mode, provider, dtype)
        assert (tmp_path / f"{op}_{device}_quick.png").exists()
    for step in ("sgd_momentum", "sgd_nesterov"):
        assert {r["provider"] for r in rows if r["op"] == step} == {"pyext", "eager", "foreach", "fused"}
    for model, points in (("tutorial_linear", 20), ("tutorial_logistic", 200)):
        tutorial = {r["provider"] for r in rows if r["op"] == model}
        assert tutorial == ({"pyext", "eager", "graph"} if device == "cuda" else {"pyext", "eager"}), model
        assert {int(r["n"]) for r in rows if r["op"] == model} == {points}  # the data set's size
    assert all(float(r["median_us"]) > 0 for r in rows)
    assert all(float(r["faults_per_call"]) >= 0 for r in rows)
    assert "copy bandwidth" in capsys.readouterr().out


def test_samples_count_page_faults_per_call():
    """Each measurement counts the process's minor page faults per call: a fresh 64 MB output (past glibc's mmap
    threshold, at most 32 MB) is given its pages on every call; one written again is not."""
    run = load_harness()
    out = torch.empty(1 << 24)
    fresh = run.measure(lambda i: torch.ones(1 << 24), "cpu", 1, 0.05)
    reused = run.measure(lambda i: out.fill_(1.0), "cpu", 1, 0.05)
    assert fresh.calls >= len(fresh) and reused.calls >= len(reused)
    assert fresh.faults_per_call > 10 and reused.faults_per_call < 1
    both = run.Samples()
    both += fresh
    both += reused
    assert both == fresh + reused and both.faults == fresh.faults + reused.faults


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux's /proc/self/smaps")
def test_library_pages_are_mapped_in_before_timing():
    """Every page of libtorch_cpu's readable mappings is in the process's page tables after map_library_pages()
    (a masked load from one that is not takes a microcode assist on AMD's CPUs: Sleef's log1p 10x slower)."""
    run = load_harness()
    run.map_library_pages()
    sizes = {}  # each readable mapping of libtorch_cpu: [size, resident] in kB
    current = None
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            current = None
            if len(fields) >= 6 and fields[5].endswith("libtorch_cpu.so") and fields[1].startswith("r"):
                current = sizes.setdefault(fields[0], [0, 0])
        elif current is not None and fields[0] in ("Size:", "Rss:"):
            current[fields[0] == "Rss:"] = int(fields[1])
    assert sizes, "libtorch_cpu.so is not mapped"
    assert all(resident == size for size, resident in sizes.values()), sizes


@pytest.mark.parametrize("argv, bad", [(["--modes", "forward"], "--modes"), (["--ops", "adds"], "--ops"),
                                       (["--dtypes", "float64"], "--dtypes"), (["--providers", "inductor"],
                                                                             "--providers")])
def test_harness_names_an_unknown_choice_before_measuring(argv, bad, capsys):
    # argparse's usage error (exit 2) naming the argument, not a KeyError after the copy bandwidth's measurement
    with pytest.raises(SystemExit) as stop:
        load_harness().main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr()
    assert f"argument {bad}: invalid choice" in err.err and "copy bandwidth" not in err.out


# The tutorial step captured in a CUDA graph, its replays after the function that made it has returned and other
# tensors have taken whatever memory it freed: the data, the parameters and the optimizer's state must still be the
# graph's (else the replayed BCE reads whatever the allocator put there, and asserts on NaN targets). A subprocess:
# a device-side assertion ends the process's CUDA context.
GRAPH_REPLAY_SCRIPT = f"""
import gc, importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("run", {str(ROOT / "benchmarks" / "run.py")!r})
run = importlib.util.module_from_spec(spec)
sys.modules["run"] = run
spec.loader.exec_module(run)
replay, n = run.tutorial_callable("logistic", "graph", "cuda")
gc.collect()
taken = [torch.full((k,), float("nan"), device="cuda") for k in range(1, 1025) for _ in range(4)]
for i in range(20):
    replay(i)
torch.cuda.synchronize()
assert all(torch.isfinite(t).all() for t in replay.keeps[2].parameters())
print("replayed", flush=True)
"""


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU (or pyext built without CUDA)")
def test_tutorial_graph_keeps_what_it_replays_on():
    done = subprocess.run([sys.executable, "-c", GRAPH_REPLAY_SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "replayed" in done.stdout, done.stdout + done.stderr


def test_cuda_timing_is_a_steady_loop(monkeypatch):
    """On CUDA a sample is a block of calls between two events, enqueued behind a call still on the GPU and
    with no wait between blocks: the time per call of a loop whose host launches ahead, not one call's time
    from an idle GPU (which adds the launch from Python). Here a fake GPU clock advances 1 ms per call."""
    run = load_harness()
    log, clock = [], [0.0]

    class Event:
        def __init__(self, enable_timing):
            assert enable_timing

        def record(self):
            log.append("record")
            self.at = clock[0]

        def elapsed_time(self, end):
            return end.at - self.at

    def call(i):
        log.append(("call", i))
        clock[0] += 1.0

    monkeypatch.setattr(run.torch.cuda, "Event", Event)
    monkeypatch.setattr(run.torch.cuda, "synchronize", lambda: log.append("sync"))
    samples = run.measure(call, "cuda", 3, 0.05)

    assert 10 <= len(samples) <= 200
    assert samples == [pytest.approx(1e-3)] * len(samples)  # seconds per call, whatever the block's length
    first, last = log.index("record"), len(log) - 1 - log[::-1].index("record")
    assert log[first - 1][0] == "call" and "sync" in log[:first - 1]  # enqueued behind a call, after the warm-up
    assert "sync" not in log[first:last] and log[last + 1:] == ["sync"]  # no wait inside the timed loop
    assert [entry[1] for entry in log if entry[0] == "call"][:7] == [0, 1, 2, 0, 1, 2, 0]  # the input sets in turn
    assert samples.calls == sum(isinstance(entry, tuple) for entry in log[first:last])  # the timed calls' faults


def test_gpu_quick_runs_every_case(tmp_path, monkeypatch, capsys):
    """benchmarks/gpu_quick.py, the GPU check's timing, run end to end on this machine's CPU at small sizes
    (its device, large copy and SGD tensors made small): a torch copy and every case at each size and dtype,
    and the three SGD steps, in its CSV."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # where the script finds run.py
    quick = load_script("gpu_quick")
    monkeypatch.setattr(quick, "DEVICE", "cpu")
    monkeypatch.setattr(quick, "COPY_ELEMENTS", 2**20)
    monkeypatch.setattr(quick, "SGD_SIZES", [4096] * 3 + [7] * 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "this CPU")
    quick.main(["--sizes", "10", "12", "--out", str(tmp_path)])
    rows = list(csv.DictReader(open(tmp_path / "gpu_quick.csv")))
    cases = ["torch_copy", "add", "mul_row_broadcast", "sigmoid", "bce_none", "bce_mean", "bce_fwd_bwd",
             "bce_logits_mean", "mse_mean"]
    assert [(r["op"], r["dtype"], r["n"]) for r in rows[:-3]] == [
        (op, dtype, n) for n in ("2^10", "2^12") for dtype in ("float32", "bfloat16") for op in cases]
    assert [r["op"] for r in rows[-3:]] == [f"sgd_540_tensors[{p}]" for p in ("pyext", "torch fused", "torch foreach")]
    assert all(float(r["torch_ms"] or r["pyext_ms"]) > 0 for r in rows)
    assert all(r["device"] == "this CPU" for r in rows)
    assert "copy bandwidth" in capsys.readouterr().out


def test_every_compile_row_times_a_compiled_graph(tmp_path, monkeypatch):
    """Dynamo keeps one cache of 8 graphs for all of torch.nn.functional's losses; a harness reusing it
    would time torch eager in the 'compile' rows past the eighth case. Here 29 cases each compile (27 losses,
    and the SGD step with momentum and with nesterov)."""
    run = load_harness()
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    monkeypatch.setattr(run, "COMPILE_BACKEND", counting_backend)
    ops = ["bce_mean", "bce_logits_mean", "mse_mean"]
    sizes = [1000, 2000, 3000]
    run.main(["--device", "cpu", "--ops", *ops, "sgd", "--sizes", *map(str, sizes), "--dtypes", "float32",
              "--providers", "eager", "compile", "--min-time", "0.001", "--out", str(tmp_path)])
    rows = list(csv.DictReader(open(tmp_path / "full_cpu.csv")))
    cases = {(r["op"], r["mode"], int(r["n"])) for r in rows if r["provider"] == "compile"}
    numel = sum(run.SGD_SIZES["cpu"])
    assert cases == {(op, mode, n) for op in ops for mode in run.MODES for n in sizes} | {
        ("sgd_momentum", "step", numel), ("sgd_nesterov", "step", numel)}
    assert len(graphs) >= len(cases)


def test_compare_variants_lines_up_the_runs_of_one_gpu_check(tmp_path, capsys):
    """benchmarks/compare_variants.py over gpu_check.sh's output layout (the main run, variant_*/, again/):
    one column per run in that order, torch's times of the first and last runs, a legend for long names."""
    compare = load_script("compare_variants")
    fields = ["device", "torch", "commit", "op", "dtype", "n", "pyext_ms", "torch_ms", "pyext_gbs", "pct_copy",
              "speedup"]

    def write(folder, pyext_ms, torch_ms):
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "gpu_quick.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerow(dict(device="GPU", torch="2", commit="c", op="torch_copy", dtype="float32", n="2^24",
                                 pyext_ms="", torch_ms=torch_ms / 2, pyext_gbs="", pct_copy=75, speedup=""))
            writer.writerow(dict(device="GPU", torch="2", commit="c", op="add", dtype="float32", n="2^24",
                                 pyext_ms=pyext_ms, torch_ms=torch_ms, pyext_gbs=1, pct_copy=1, speedup=1))

    write(tmp_path, 1.0, 2.0)
    write(tmp_path / "variant_PYEXT_CUDA_WAVES_64", 1.5, 2.5)
    write(tmp_path / "variant_PYEXT_CUDA_MIN_BLOCKS_4_PYEXT_CUDA_PACKS_2", 1.25, 2.25)
    write(tmp_path / "again", 1.125, 3.0)
    compare.main([str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == ["#0: main", "#1: MIN_BLOCKS_4_PACKS_2", "#2: WAVES_64", "#3: again"]
    copy_row = next(line.split() for line in lines if line.startswith("torch_copy"))
    assert copy_row[3:] == ["1.0000", "1.1250", "1.2500", "1.5000", "1.0000", "1.5000"]  # torch's copy times
    add_row = next(line.split() for line in lines if line.startswith("add"))
    assert add_row[3:] == ["1.0000", "1.2500", "1.5000", "1.1250", "2.0000", "3.0000"]
    with pytest.raises(SystemExit, match="LABEL=CSV"):
        compare.main(["no-such-folder"])


def test_layouts_sweep_compares_builds_over_every_layout_and_op():
    """benchmarks/layouts.py --builds: each build's process runs every op on every layout (each layout's operands
    broadcast for every op), and the table gives one row per case, a time per build, torch's, and the ratios."""
    layouts = load_script("layouts")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "layouts.py"), "--builds", str(ROOT), str(ROOT), "--rounds", "1",
           "--dtypes", "float32", "--min-run-time", "0.001"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:3] == ["op", "layout", "dtype"]
    cases = {(row.split()[0], row.split()[1]) for row in rows}
    assert cases == {(op, layout) for op in layouts.OPS for layout in layouts.LAYOUTS}
    for row in rows:
        first, second, torch_us, first_ratio, second_ratio = map(float, row.split()[3:])
        assert min(first, second, torch_us) > 0
        assert first_ratio == pytest.approx(first / torch_us, abs=0.01)
        assert second_ratio == pytest.approx(second / torch_us, abs=0.01)


def test_emulated_math16_log_stays_within_half_an_ulp(capsys):
    # benchmarks/emulate_math16.py's model of the GPU's 16-bit log (no GPU needed): at MUFU.LG2's error bound,
    # BCE's -ln x rounds to the nearest bfloat16 and float16 but for a few in 10^4
    emulate = load_script("emulate_math16")
    emulate.main()
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4
    for row in rows:
        worst, not_nearest = float(row[5]), float(row[9])
        assert worst <= 0.505 and not_nearest <= 5e-4, row


def test_targets_name_cases_the_harness_measures():
    """Every target reads rows that run.py writes: its op, mode, providers and, for the GPU, the sizes the GPU
    check runs (a misspelt case would be 'not measured' for ever)."""
    run, targets = load_harness(), load_script("targets")
    ops = {op.name for op in run.OPS} | {"sgd_momentum", "tutorial_logistic"}
    providers = {"pyext", "eager", "compile", "foreach", "fused", "graph"}
    gpu_check = (ROOT / "tests" / "gpu_check.sh").read_text()
    for t in targets.targets():
        assert t.op in ops and t.mode in set(run.MODES) | {"step", "iter"}, t
        assert t.provider in providers and t.against in providers | {"copy"}, t
        assert t.n is None or t.device == "cpu" or str(t.n) in gpu_check, t
    assert {t.device for t in targets.targets()} == {"cpu", "cuda"}


def test_targets_verdicts(tmp_path, capsys):
    """Met at the bound, missed below it, not measured where a row is missing; the committed full CPU run has
    every CPU target's rows."""
    targets = load_script("targets")
    fields = ["device", "torch", "commit", "op", "mode", "provider", "dtype", "n", "median_us", "p20_us", "p80_us",
              "gbs", "pct_copy"]
    rows = [("add", "fwd", "pyext", 4194304, 100.0), ("add", "fwd", "eager", 4194304, 100.0),  # 1.00x: met
            ("mul", "fwd", "pyext", 4194304, 100.0), ("mul", "fwd", "eager", 4194304, 99.0),  # 0.99x: missed
            ("sigmoid", "fwd", "pyext", 4194304, 100.0),  # no eager row: not measured
            ("bce_mean", "full", "pyext", 1048576, 10.0), ("bce_mean", "full", "eager", 1048576, 100.0),
            ("bce_mean", "full", "compile", 1048576, 19.9),  # 10x met, 1.99x missed
            ("sgd_momentum", "step", "pyext", 3891200, 50.0), ("sgd_momentum", "step", "fused", 3891200, 60.0)]
    path = tmp_path / "quick_cpu.csv"

    def write(rows):
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for op, mode, provider, n, us in rows:
                writer.writerow(dict(device="cpu", torch="x", commit="x", op=op, mode=mode, provider=provider,
                                     dtype="float32", n=n, median_us=us, p20_us=us, p80_us=us, gbs=1, pct_copy=1))
    write(rows)
    counts = targets.main([str(path)])
    out = capsys.readouterr().out
    assert counts == {"met": 3, "missed": 2, "not measured": 3}
    for line in ("met           add fwd float32 2^22", "missed        mul fwd float32 2^22",
                 "not measured  sigmoid fwd float32 2^22", "met           bce_mean full float32 2^20",
                 "missed        bce_mean full float32 2^20", "met           sgd_momentum step float32"):
        assert line in out, line
    assert "1.20x fused" in out and "0.99x eager" in out and "1.99x compile" in out
    # a miss that two decimals would show as its bound gets a third
    rows[3] = ("mul", "fwd", "eager", 4194304, 99.9)
    write(rows)
    assert targets.main([str(path)])["missed"] == 2
    assert "0.999x eager" in capsys.readouterr().out
    full = targets.main([str(ROOT / "benchmarks" / "results" / "amd_epyc_x2_threads" / "full_cpu.csv")])
    assert full["not measured"] == 0 and sum(full.values()) == 8


def test_gpu_check_script_parses():
    """tests/gpu_check.sh runs only on the lent GPU machine, in one call that cannot be repeated at will: a
    syntax error must show here first."""
    done = subprocess.run(["bash", "-n", str(ROOT / "tests" / "gpu_check.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# Stands in for python on the GPU machine: records what gpu_check.sh asks of it, and writes what run.py and
# targets.py would.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "$PWD|$PYEXT_COMMIT|${PYTHONPATH%%:*}|$*" >> "$CALLS"
case "$1" in
  benchmarks/run.py) while [ $# -gt 0 ]; do [ "$1" = --out ] && mkdir -p "$2" && echo row > "$2/quick_cuda.csv"; shift; done;;
  benchmarks/targets.py) echo "1 met, 0 missed, 0 not measured";;
  -m) echo "=== 3 passed in 1.00s ===";;
esac
exit 0
"""


def test_gpu_check_runs_each_variant_through_the_harness(tmp_path):
    """The whole of gpu_check.sh with stand-ins for python, nvidia-smi and the CUDA tools (the real run needs
    the lent GPU, one call a session): each variant is built in its own copy with its knobs, tested, timed,
    and with VARIANT_RUNS=1 run through run.py and targets.py from that copy, its commit named with its
    knobs; everything comes back in one archive."""
    tree, bin_dir, out, scratch = (tmp_path / d for d in ("tree", "bin", "out", "scratch"))
    for d in (tree, bin_dir, scratch):
        d.mkdir()
    for d in ("tests", "cuda", "benchmarks"):
        subprocess.run(["cp", "-r", str(ROOT / d), str(tree / d)], check=True)
    (bin_dir / "python").write_text(FAKE_PYTHON)
    for tool in ("nvidia-smi", "compute-sanitizer", "ncu", "git"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    calls = tmp_path / "calls"
    variants = ["PYEXT_CUDA_BCE_REGISTERS=64", "PYEXT_CUDA_ELEMS_AHEAD=8,PYEXT_CUDA_SMALL_PARAMS=1"]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHON": str(bin_dir / "python"), "CALLS": str(calls),
           "OUT": str(out), "SCRATCH": str(scratch), "PYEXT_COMMIT": "abc1234", "GPU_CHECK_SECONDS": "400",
           "NCU_SECONDS": "0", "SANITIZERS": "memcheck", "VARIANTS": " ".join(variants), "VARIANT_TESTS": "bce",
           "VARIANT_RUNS": "1"}
    done = subprocess.run(["bash", str(tree / "tests" / "gpu_check.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "GPU CHECK PASSED" in done.stdout, done.stdout + done.stderr

    lines = [line.split("|") for line in calls.read_text().splitlines()]
    runs = [c for c in lines if c[3].startswith("benchmarks/run.py")]
    tags = ["", "variant_PYEXT_CUDA_BCE_REGISTERS_64", "variant_PYEXT_CUDA_ELEMS_AHEAD_8_PYEXT_CUDA_SMALL_PARAMS_1"]
    for define, tag in zip(["", *variants], tags):
        where = str(scratch / tag) if define else str(tree)
        commit = "abc1234" + (f"+{define}" if define else "")
        assert [(c[0], c[2]) for c in runs if c[1] == commit] == [(where, where)], (define, runs)
        assert any(c[0] == where and c[3].startswith("setup.py build_ext") for c in lines), define
        csv_path = out / tag / "results" / "quick_cuda.csv"
        assert any(c[3] == f"benchmarks/targets.py {csv_path}" for c in lines), define
        if define:
            assert any(c[0] == where and c[3].startswith("-m pytest") and "-k bce" in c[3] for c in lines)
            assert f"{define}: 1 met, 0 missed, 0 not measured" in done.stdout
    with tarfile.open(out / "gpu_check.tgz") as archive:
        names = archive.getnames()
    for tag in tags:
        assert str(Path(".", tag, "results", "quick_cuda.csv")) in [str(Path(n)) for n in names], names


def test_gpu_check_leaves_out_unknown_knobs():
    """A variant naming a macro that no CUDA file reads (misspelt, or renamed as PACKS_PER_THREAD was) would
    time the default build under the variant's name: gpu_check.sh leaves it out and says so. Runs the
    script's own block that sorts the variants."""
    script = (ROOT / "tests" / "gpu_check.sh").read_text().splitlines()
    first = next(i for i, line in enumerate(script) if line.startswith("tag()"))
    last = next(i for i, line in enumerate(script) if line == "VARIANTS=$variants")
    block = "\n".join(script[first : last + 1]) + '\necho "kept:$VARIANTS"'
    variants = ("PYEXT_CUDA_DOMAIN_FLAG=2 PYEXT_CUDA_PACKS_PER_THREAD=4 "
                "PYEXT_CUDA_THREADS=128,PYEXT_CUDA_ELEMS_PER_THREAD=8 PYEXT_CUDA_THREADS=128,PYEXT_CUDA_ELEM=8")
    done = subprocess.run(["bash", "-c", block], cwd=ROOT, env={"VARIANTS": variants, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "VARIANT PYEXT_CUDA_PACKS_PER_THREAD=4 LEFT OUT: no CUDA file reads PYEXT_CUDA_PACKS_PER_THREAD",
        "VARIANT PYEXT_CUDA_THREADS=128,PYEXT_CUDA_ELEM=8 LEFT OUT: no CUDA file reads PYEXT_CUDA_ELEM",
        "kept: PYEXT_CUDA_DOMAIN_FLAG=2 PYEXT_CUDA_THREADS=128,PYEXT_CUDA_ELEMS_PER_THREAD=8",
    ]
