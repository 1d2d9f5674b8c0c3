"""Benchmarks: every pyext kernel against torch eager, torch.compile and (SGD) torch's foreach and fused
steps, and against the hardware limit measured in the same run (a large tensor copy).

    python benchmarks/run.py [--device cpu|cuda] [--quick] [--ops ...] [--dtypes ...] [--providers ...] [--sizes ...]
                             [--out DIR]

Timing: torch.utils.benchmark on CPU (on all of torch's threads); on GPU, CUDA events around blocks of calls
in a steady loop (measure()); warm-up first; inputs rotated among enough copies to exceed the last-level
cache; the providers of a case measured in turn, five rounds, so that host noise hits each alike; median with
p20-p80. Output: a console table, a CSV (device, torch version and git commit on every row) and PNG plots
(GB/s against size, a line per provider) under --out (default benchmarks/results/<device>/). Each row also
counts the process's minor page faults per call: where a call's output is a fresh mapping (glibc serves blocks
past its mmap threshold, at most 32 MB, from the kernel), the row times the kernel giving it pages, and which
provider gets fresh pages depends on the heap's history (benchmarks/NOTES.md).

Bytes each op must move (napkin math; n elements of b bytes, reads + writes):
  add, mul                 fwd 3nb (read 2, write 1)   bwd: add 0 (grad passes through), mul 5nb
  mul_row (N,1024)*(1024,) fwd 2nb                     bwd 3nb (grad_input; the row's grad is a reduction)
  sigmoid                  fwd 2nb                     bwd 3nb (read grad, output; write grad_input)
  bce_none                 fwd 3nb                     bwd 4nb (read grad, x, y; write grad_x)
  bce_mean, bce_logits_mean, mse_mean
                           fwd 2nb (read x, y; one scalar out)   bwd 3nb (read x, y; write grad_x)
  sgd (momentum/nesterov)  5b per parameter element (read p, g, buf; write p, buf)
  full = fwd + bwd, but for the reduced losses 3nb: read x, y once, write grad_x (the gradient from the
  forward's pass: csrc/autograd.cpp; torch.compile's partitioner does the like).
"""
from __future__ import annotations

import argparse
import csv
import ctypes
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyext.ops as P  # noqa: E402
import pyext.optim  # noqa: E402

CACHE_BYTES = 64 << 20  # rotate inputs past this (more than the H100's 50 MB L2 and this CPU's L3)


def input_sets(set_bytes: int) -> int:
    """How many copies of a case's inputs (set_bytes each) to cycle through: twice CACHE_BYTES, at most 16."""
    return max(1, min(16, math.ceil(2 * CACHE_BYTES / set_bytes)))


# --- ops: (pyext function, torch function, inputs, bytes per mode) ------------------------------

@dataclass
class Op:
    name: str
    ours: Callable
    theirs: Callable
    make: Callable  # (n, dtype, device) -> list of input tensors (those that take gradients first)
    grads: int  # how many leading inputs take gradients
    bytes: Dict[str, float]  # mode -> bytes per element (times the element size)


def _unit(n, dtype, device):
    return (torch.rand(n, device=device) * 0.98 + 0.01).to(dtype)


OPS = [
    Op("add", lambda a, b: P.add(a, b), lambda a, b: torch.add(a, b),
       lambda n, d, dev: [torch.randn(n, device=dev, dtype=d), torch.randn(n, device=dev, dtype=d)], 2,
       dict(fwd=3, bwd=0, full=3)),
    Op("mul", P.mul, torch.mul,
       lambda n, d, dev: [torch.randn(n, device=dev, dtype=d), torch.randn(n, device=dev, dtype=d)], 2,
       dict(fwd=3, bwd=5, full=8)),
    Op("mul_row", P.mul, torch.mul,
       lambda n, d, dev: [torch.randn(max(n // 1024, 1), 1024, device=dev, dtype=d),
                          torch.randn(1024, device=dev, dtype=d)], 1, dict(fwd=2, bwd=3, full=5)),
    Op("sigmoid", P.sigmoid, torch.sigmoid, lambda n, d, dev: [torch.randn(n, device=dev, dtype=d)], 1,
       dict(fwd=2, bwd=3, full=5)),
    Op("bce_none", lambda x, y: P.binary_cross_entropy(x, y, reduction="none"),
       lambda x, y: F.binary_cross_entropy(x, y, reduction="none"),
       lambda n, d, dev: [_unit(n, d, dev), _unit(n, d, dev)], 1, dict(fwd=3, bwd=4, full=7)),
    Op("bce_mean", P.binary_cross_entropy, F.binary_cross_entropy,
       lambda n, d, dev: [_unit(n, d, dev), _unit(n, d, dev)], 1, dict(fwd=2, bwd=3, full=3)),
    Op("bce_logits_mean", P.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits,
       lambda n, d, dev: [torch.randn(n, device=dev, dtype=d), _unit(n, d, dev)], 1, dict(fwd=2, bwd=3, full=3)),
    Op("mse_mean", P.mse_loss, F.mse_loss,
       lambda n, d, dev: [torch.randn(n, device=dev, dtype=d), torch.randn(n, device=dev, dtype=d)], 1,
       dict(fwd=2, bwd=3, full=3)),
]
MODES = ("fwd", "bwd", "full")


# --- timing -----------------------------------------------------------------------------------------

GPU_BLOCK_SECONDS = 2e-4  # a CUDA sample: a block of about this much work, at least one call


class Samples(list):
    """Seconds per call, one per sample, and the minor page faults of the process while they were taken."""

    def __init__(self, seconds=(), faults=0, calls=0):
        super().__init__(seconds)
        self.faults, self.calls = faults, calls

    def __iadd__(self, other):
        self.extend(other)
        self.faults, self.calls = self.faults + other.faults, self.calls + other.calls
        return self

    @property
    def faults_per_call(self) -> float:
        return self.faults / self.calls if self.calls else float("nan")


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(fn: Callable[[int], object], device: str, sets: int, min_time: float) -> Samples:
    """Seconds per call of fn(i), cycling i over the input sets: the samples, with the page faults of the calls
    timed (and of the timer's calibration calls, alike).

    On CUDA a sample is a block of calls between two events, and the blocks follow one another with no wait,
    the first enqueued while the GPU still runs a call before it: the time per call of a loop whose host
    launches ahead of the GPU, as a training loop's does. (A call timed alone from an idle GPU also counts its
    own launch from Python, several microseconds: a large share of a 2^24-element call on an H100 or H200.) A
    call that waits for the GPU itself (BCE's domain check) still pays its wait, and the launch after it, in
    every call of the block."""
    calls = [0]

    def call():
        fn(calls[0] % sets)
        calls[0] += 1

    for _ in range(3):
        call()
    if device == "cuda":
        torch.cuda.synchronize()
        began = time.perf_counter()
        call()
        torch.cuda.synchronize()
        per_call = time.perf_counter() - began  # the host's part included: more than the loop's per call
        block = max(1, min(64, round(GPU_BLOCK_SECONDS / per_call)))
        count = max(10, min(200, round(min_time / (block * per_call))))  # samples: about min_time in all
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(count)]
        call()  # the GPU's work while the host enqueues the first block
        faults, first = minor_faults(), calls[0]
        for start, end in events:
            start.record()
            for _ in range(block):
                call()
            end.record()
        torch.cuda.synchronize()
        return Samples([start.elapsed_time(end) / 1e3 / block for start, end in events],
                       minor_faults() - faults, calls[0] - first)
    import torch.utils.benchmark as tb

    # Timer would run on one thread: measure on every thread torch uses (the device name says how many).
    timer = tb.Timer("call()", globals={"call": call}, num_threads=torch.get_num_threads())
    faults, first = minor_faults(), calls[0]
    m = timer.blocked_autorange(min_run_time=min_time)
    return Samples(m.times, minor_faults() - faults, calls[0] - first)


ROUNDS = 5


_mapped_libraries = set()


def map_library_pages():
    """Maps in every page of the shared libraries loaded so far, each library once (Linux).

    A masked vector load whose mask is empty never faults, so it never maps in the page it points at, and on
    AMD's Zen CPUs each such load of a page not mapped in takes a microcode assist. Sleef's float log1p
    (torch.log1p; torch.compile's code for BCE and BCE-with-logits) does one a call, from a constant of
    libtorch_cpu: 545 instead of 60 us for 2^16 floats on one thread, until something maps that page in, which
    happens or not with the process's history (NOTES, session 26: the "slow log1p" hosts). Mapped in first,
    every provider runs at its own speed."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    populate_read = 22  # MADV_POPULATE_READ, Linux 5.14
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or not fields[1].startswith("r") or ".so" not in fields[5] or line in _mapped_libraries:
                continue
            start, end = (int(v, 16) for v in fields[0].split("-"))
            if libc.madvise(start, end - start, populate_read) != 0:  # an older kernel: a read of each page
                for page in range(start, end, resource.getpagesize()):
                    ctypes.c_char.from_address(page).value
            _mapped_libraries.add(line)


def measure_side_by_side(fns: Dict[str, Callable[[int], object]], device: str, sets: int,
                         min_time: float) -> Dict[str, Samples]:
    """Samples of each provider's fn, measured in turn for ROUNDS rounds of min_time / ROUNDS each: a slow
    spell of the host (this VM's neighbours) then hits every provider alike, not only the one it lands on.
    Each fn is called once first (a compiled one loads its code), then every library's pages mapped in."""
    for fn in fns.values():
        fn(0)
    map_library_pages()
    samples = {provider: Samples() for provider in fns}
    for _ in range(ROUNDS):
        for provider, fn in fns.items():
            samples[provider] += measure(fn, device, sets, min_time / ROUNDS)
    return samples


def quantiles(samples):
    s = sorted(samples)
    q = lambda f: s[min(len(s) - 1, int(f * (len(s) - 1) + 0.5))]  # noqa: E731
    return statistics.median(s), q(0.2), q(0.8)


def copy_bandwidth(device, min_time, n=None) -> float:
    """GB/s (read + write) of torch's copy of n floats (default 256 MB of them on CUDA, 128 MB on CPU)."""
    n = n or ((256 << 20) // 4 if device == "cuda" else (128 << 20) // 4)
    x = torch.randn(n, device=device)
    y = torch.empty_like(x)
    med, _, _ = quantiles(measure(lambda i: y.copy_(x), device, 1, min_time))
    return 2 * n * 4 / med / 1e9


# --- providers ----------------------------------------------------------------------------------------

COMPILE_BACKEND = "inductor"  # torch.compile's default; the tests swap in a counting one


def fresh_compile(fn):
    """torch.compile(fn) for one case (op, mode, dtype, size), from an empty cache.

    Dynamo keeps its compiled graphs per code object, and torch.nn.functional's losses all reach it through
    one wrapper, so every case of every op shares one cache of `recompile_limit` (8) entries; past that,
    Dynamo runs the function uncompiled and the 'compile' rows would time torch eager. So the cache is
    emptied before each case (each case has new shapes or dtypes: it would compile anyway), and main() makes
    hitting the limit an error rather than a silent fallback."""
    torch._dynamo.reset()
    return torch.compile(fn, dynamic=False, backend=COMPILE_BACKEND)


def op_callable(op: Op, provider: str, mode: str, inputs_sets):
    """fn(i) running `mode` of the op on input set i with one provider."""
    if provider == "pyext":
        fn = op.ours
    elif provider == "eager":
        fn = op.theirs
    elif provider == "compile":
        fn = fresh_compile(op.theirs)
    else:
        return None

    if mode == "fwd":
        def run(i):
            with torch.no_grad():
                return fn(*inputs_sets[i])
        return run

    prepared = []
    for inputs in inputs_sets:
        leaves = [t.detach().requires_grad_(k < op.grads) for k, t in enumerate(inputs)]
        grad_leaves = leaves[: op.grads]
        if mode == "bwd":
            out = fn(*leaves)
            prepared.append((out, grad_leaves, torch.ones_like(out)))
        else:
            prepared.append((leaves, grad_leaves))
    if mode == "bwd":
        return lambda i: torch.autograd.grad(prepared[i][0], prepared[i][1], prepared[i][2], retain_graph=True)

    def full(i):
        leaves, grad_leaves = prepared[i]
        out = fn(*leaves)
        return torch.autograd.grad(out, grad_leaves, torch.ones_like(out))
    return full


SGD_SIZES = {"cpu": [65536] * 50 + [4096] * 150, "cuda": [2**20] * 40 + [4096] * 400 + [7] * 100}


def sgd_callable(provider, device, dtype, nesterov):
    sizes = SGD_SIZES[device]
    params = [torch.randn(n, device=device, dtype=dtype, requires_grad=True) for n in sizes]
    for p in params:
        p.grad = torch.randn_like(p)
    kw = dict(lr=0.01, momentum=0.9, nesterov=nesterov)
    if provider == "pyext":
        opt = pyext.optim.SGD(params, **kw)
    elif provider == "eager":
        opt = torch.optim.SGD(params, foreach=False, **kw)
    elif provider == "foreach":
        opt = torch.optim.SGD(params, foreach=True, **kw)
    elif provider == "fused":
        opt = torch.optim.SGD(params, fused=True, **kw)
    elif provider == "compile":  # torch's recipe "compiling the optimizer": its default step, compiled
        opt = torch.optim.SGD(params, **kw)
    else:
        return None, 0
    opt.step()  # the momentum buffers (before a compiled step sees the state)
    step = fresh_compile(lambda: opt.step()) if provider == "compile" else opt.step
    return (lambda i: step()), sum(sizes)


TUTORIALS = ("linear", "logistic")


def tutorial_callable(kind, provider, device):
    """One training iteration of a tutorial model, as `python -m pyext.train <kind>` builds it (the linear
    regression on 20 points, gradient descent; the logistic regression on 200, SGD with momentum 0.9): with the
    pyext backend, with torch's modules and torch.optim.SGD's defaults ('eager'), or on CUDA with the pyext step
    captured once in a CUDA graph and replayed ('graph', as `--cuda-graph` trains)."""
    from pyext.train.data import tutorial_linear, tutorial_logistic
    from pyext.train.model import DEFAULTS, make_loss, make_model, make_optimizer

    if provider not in ("pyext", "eager", "graph") or (provider == "graph" and device != "cuda"):
        return None, 0
    x, y = (t.to(device) for t in (tutorial_linear(seed=0) if kind == "linear" else tutorial_logistic()))
    backend = "native" if provider == "eager" else "pyext"
    torch.manual_seed(0)
    model = make_model(kind, x.shape[1], backend).to(device)
    loss_fn = make_loss(kind, backend)
    lr, momentum = DEFAULTS[kind]["lr"], DEFAULTS[kind]["momentum"]
    opt = (make_optimizer(model.parameters(), backend, lr, momentum) if backend == "pyext"
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum))  # torch's default implementation

    def step(i=0):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    if provider != "graph":
        return step, len(x)
    # Warm-up on a side stream (the optimizer's state is created there), then one step captured.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()

    def replay(i=0):
        graph.replay()
    # The graph holds addresses, not tensors: what it reads and writes outside its own pool (the data, the
    # parameters, the optimizer's state) must live as long as it is replayed, or the allocator hands that memory
    # to other tensors and the replays train on them.
    replay.keeps = (x, y, model, opt)
    return replay, len(x)


# --- the run ------------------------------------------------------------------------------------------

def git_commit():
    """HEAD's short hash; PYEXT_COMMIT names it where the tree has no .git (a copy on a GPU machine)."""
    if os.environ.get("PYEXT_COMMIT"):
        return os.environ["PYEXT_COMMIT"]
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip() or "unknown"


def device_name(device):
    if device == "cuda":
        return torch.cuda.get_device_name()
    # The model name, with the family and model numbers where cpuinfo has them: a virtual machine's name may be
    # only "AMD EPYC", which two CPUs of very different speed share (benchmarks/NOTES.md).
    fields = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "model name" not in fields:
        return "cpu"
    generation = f" (family {fields['cpu family']} model {fields['model']})" if "cpu family" in fields else ""
    return f"{fields['model name']}{generation} x{torch.get_num_threads()} threads"


def slug(name):
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:60]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="a few sizes, float32 (CPU: under 5 minutes)")
    op_names = [o.name for o in OPS] + ["sgd", "tutorial"]
    parser.add_argument("--ops", nargs="+", choices=op_names, metavar="OP", help=f"of {op_names}")
    parser.add_argument("--dtypes", nargs="+", default=None, choices=("float32", "bfloat16"))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                        help="fwd, bwd, full (forward + backward); the losses' and maps' modes")
    providers = ("pyext", "eager", "compile", "foreach", "fused", "graph")
    parser.add_argument("--providers", nargs="+", default=list(providers), choices=providers,
                        help="graph: the tutorial's step captured in a CUDA graph (CUDA only)")
    parser.add_argument("--out", help="folder for the CSV and plots (default benchmarks/results/<device>)")
    parser.add_argument("--min-time", type=float, default=None, help="seconds of timing per measurement")
    parser.add_argument("--sizes", nargs="+", type=int, help="element counts (instead of the mode's)")
    args = parser.parse_args(argv)
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):  # see fresh_compile
        run_benchmarks(args)


def run_benchmarks(args):
    """The run main() parsed: measures, prints, writes the CSV and the plots."""
    device = args.device
    cpu = device == "cpu"
    if args.quick:
        sizes = [2**14, 2**20, 2**22] if cpu else [2**20, 2**24, 2**28]
        dtypes = args.dtypes or ["float32"]
        min_time = args.min_time or (0.1 if cpu else 0.05)
    else:
        sizes = [2**k for k in range(10, 25 if cpu else 29, 2)]
        dtypes = args.dtypes or ["float32", "bfloat16"]
        min_time = args.min_time or 0.3
    sizes = args.sizes or sizes
    if args.quick and cpu and "compile" in args.providers and args.ops is None:
        print("quick CPU run: torch.compile only for bce_mean and bce_logits_mean (compiling is slow here)")
    names = args.ops or [o.name for o in OPS] + ["sgd", "tutorial"]
    name = device_name(device)
    commit = git_commit()
    out_dir = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / slug(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy = copy_bandwidth(device, min_time)
    print(f"{name}, torch {torch.__version__}, commit {commit}: copy bandwidth {copy:.1f} GB/s (read + write)")
    header = f"{'op':<18}{'mode':<5}{'provider':<9}{'dtype':<9}{'n':>9} {'median us':>10} {'p20-p80 us':>17} " \
             f"{'GB/s':>7} {'%copy':>6} {'faults':>7}  speed-up of pyext"
    print(header)
    rows = []

    csv_path = out_dir / f"{'quick' if args.quick else 'full'}_{device}.csv"

    def save():
        """The CSV of every row so far (written after each op too, so that a run stopped early keeps them)."""
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def emit(op, mode, provider, dtype, n, samples, nbytes, ref_times):
        med, p20, p80 = quantiles(samples)
        gbs = nbytes / med / 1e9 if nbytes else float("nan")
        row = dict(device=name, torch=torch.__version__, commit=commit, op=op, mode=mode, provider=provider,
                   dtype=dtype, n=n, median_us=round(med * 1e6, 3), p20_us=round(p20 * 1e6, 3),
                   p80_us=round(p80 * 1e6, 3), gbs=round(gbs, 2), pct_copy=round(100 * gbs / copy, 1),
                   faults_per_call=round(samples.faults_per_call, 1))
        ref_times[provider] = med
        rows.append(row)
        speed = ""
        if provider != "pyext" and "pyext" in ref_times:
            speed = f"{med / ref_times['pyext']:.2f}x vs {provider}"
        print(f"{op:<18}{mode:<5}{provider:<9}{dtype:<9}{n:>9} {med * 1e6:>10.1f} {p20 * 1e6:>8.1f}-{p80 * 1e6:<8.1f} "
              f"{gbs:>7.1f} {row['pct_copy']:>5.1f}% {samples.faults_per_call:>7.0f}  {speed}", flush=True)

    # SGD and the tutorial first: short, and a run stopped at a time limit keeps them
    if "sgd" in names:
        for dtype_name in dtypes:
            for nesterov in (False, True):
                fns = {}
                for provider in ("pyext", "eager", "foreach", "fused", "compile"):
                    # (compiling the step takes 20 s on this 2-core machine: not in its quick runs)
                    if provider in args.providers and not (provider == "compile" and args.quick and cpu):
                        fns[provider], numel = sgd_callable(provider, device, getattr(torch, dtype_name), nesterov)
                ref = {}
                for provider, samples in measure_side_by_side(fns, device, 1, min_time).items():
                    emit("sgd_nesterov" if nesterov else "sgd_momentum", "step", provider, dtype_name, numel,
                         samples, 5 * numel * getattr(torch, dtype_name).itemsize, ref)
                del fns
    if "tutorial" in names:
        for kind in TUTORIALS:
            fns, points = {}, 0
            for provider in ("pyext", "eager", "graph"):
                fn, n = tutorial_callable(kind, provider, device) if provider in args.providers else (None, 0)
                if fn is not None:
                    fns[provider], points = fn, n
            ref = {}
            for provider, samples in measure_side_by_side(fns, device, 1, min_time).items():
                emit(f"tutorial_{kind}", "iter", provider, "float32", points, samples, 0, ref)
    if rows:
        save()

    for op in [o for o in OPS if o.name in names]:
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            for n in sizes:
                probe = op.make(n, dtype, device)
                set_bytes = sum(t.numel() * t.element_size() for t in probe)
                sets = input_sets(set_bytes)
                inputs = [probe] + [op.make(n, dtype, device) for _ in range(sets - 1)]
                numel = probe[0].numel()
                for mode in args.modes:
                    fns = {}
                    for provider in ("pyext", "eager", "compile"):
                        if provider not in args.providers:
                            continue
                        if provider == "compile" and args.quick and cpu and op.name not in ("bce_mean",
                                                                                            "bce_logits_mean"):
                            continue
                        fns[provider] = op_callable(op, provider, mode, inputs)
                    ref = {}
                    for provider, samples in measure_side_by_side(fns, device, sets, min_time).items():
                        emit(op.name, mode, provider, dtype_name, numel, samples,
                             op.bytes[mode] * numel * probe[0].element_size(), ref)
                    del fns
                del inputs, probe
        save()
    save()
    print(f"wrote {csv_path}")
    for path in plot(rows, out_dir, f"{device}_{'quick' if args.quick else 'full'}"):
        print(f"wrote {path}")


def plot(rows, out_dir, suffix):
    """One PNG per op, <op>_<suffix>.png (suffix: the device and the run's mode, as the CSV's name)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    ops = sorted({r["op"] for r in rows if r["mode"] in MODES})
    for op in ops:
        mine = [r for r in rows if r["op"] == op]
        modes = [m for m in MODES if any(r["mode"] == m for r in mine)]
        fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 3.6), squeeze=False)
        for ax, mode in zip(axes[0], modes):
            for provider in sorted({r["provider"] for r in mine}):
                for dtype in sorted({r["dtype"] for r in mine}):
                    pts = [(r["n"], r["gbs"]) for r in mine if r["mode"] == mode and r["provider"] == provider
                           and r["dtype"] == dtype]
                    if pts:
                        ax.plot(*zip(*pts), marker="o", label=f"{provider} {dtype}")
            ax.set(xscale="log", xlabel="elements", ylabel="GB/s", title=f"{op} {mode}")
            ax.legend(fontsize=7)
        path = out_dir / f"{op}_{suffix}.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


if __name__ == "__main__":
    main()
