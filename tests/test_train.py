"""The training job (python -m pyext.train): parity of the pyext and native backends, convergence
of both tutorial models, CSV data and its errors, checkpoints and predict, plots, TensorBoard,
a 2-process DDP run on CPU, CUDA graphs (GPU only)."""
import csv
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import DEVICES, HAS_CUDA
from pyext.train import DataError, scan_csv, train, tutorial_linear, tutorial_logistic
from pyext.train.__main__ import main
from pyext.train.data import CsvDataset, loader

PARITY = dict(rtol=1e-5, atol=1e-6)


def tutorial(kind):
    x, y = tutorial_linear(seed=0) if kind == "linear" else tutorial_logistic()
    return x, y, loader(x, y, None, None, False, 0, 1)


def run(kind, backend, device, iterations=None, batches=None, **kw):
    x, y, default_batches = tutorial(kind)
    settings = dict(linear=dict(iterations=2000, lr=0.03, momentum=0.0),
                    logistic=dict(iterations=1000, lr=0.01, momentum=0.9))[kind]
    if iterations is not None:
        settings["iterations"] = iterations
    return train(kind, backend, batches or default_batches, x.shape[1], torch.device(device), seed=0, **settings, **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_backends_agree_at_every_iteration(kind, device):
    ours, native = run(kind, "pyext", device), run(kind, "native", device)
    assert ours.iterations == native.iterations > 0
    torch.testing.assert_close(torch.tensor(ours.losses), torch.tensor(native.losses), **PARITY)
    for name, p in ours.parameters().items():
        torch.testing.assert_close(p, native.parameters()[name], **PARITY)


def test_linear_regression_reaches_least_squares():
    result = run("linear", "pyext", "cpu")
    x, y = tutorial_linear(seed=0)
    a = np.hstack([x.double().numpy(), np.ones((len(x), 1))])
    w, b = np.linalg.lstsq(a, y.double().numpy(), rcond=None)[0].flatten()
    params = result.parameters()
    assert abs(params["w"].item() - w) < 1e-3 and abs(params["b"].item() - b) < 1e-3
    assert abs(w - 2) < 0.5 and abs(b - 5) < 1.5  # and that is the line the data came from


def test_logistic_regression_reaches_tutorial_accuracy():
    result = run("logistic", "pyext", "cpu")
    assert result.metrics[-1] > 0.99
    assert result.iterations < 1000  # stopped early, as the tutorial does


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture
def clouds_csv(tmp_path):
    x, y = tutorial_logistic()
    return write_csv(tmp_path / "clouds.csv", ["a", "b", "label"],
                     [[*xi, int(yi[0])] for xi, yi in zip(x.tolist(), y.tolist())])


@pytest.mark.parametrize(
    "header,rows,target,task,message",
    [
        (None, [], None, "linear", "the file is empty"),
        (["a", "b"], [], None, "linear", "header but no data rows"),
        (["a", "y"], [[1, 2]], "label", "linear", r"line 1: no target column 'label' \(the columns are a, y\)"),
        (["a", "y"], [[1, 2], [3, "x"]], None, "linear", r"line 3, column 'y': 'x' is not a number"),
        (["a", "y"], [[1, 0], [2, 1], [3, 2]], None, "logistic", r"line 4: label 2 is not 0 or 1"),
        (["a", "b", "y"], [[1, 2, 0], [3, 4]], None, "linear", r"line 3: expected 3 values, found 2"),
        (["a", "y"], [[1, "nan"]], None, "linear", r"line 2, column 'y': 'nan' is not a finite number"),
    ],
)
def test_csv_errors_name_the_line(tmp_path, header, rows, target, task, message):
    path = write_csv(tmp_path / "data.csv", header, rows)
    with pytest.raises(DataError, match=message):
        scan_csv(path, target, task)


def test_missing_file_and_cli_exit_code(tmp_path, capsys):
    with pytest.raises(DataError, match="no such file"):
        scan_csv(str(tmp_path / "nope.csv"), None, "linear")
    assert main(["linear", "--data", str(tmp_path / "nope.csv"), "--no-progress", "--device", "cpu"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_csv_streams_in_mini_batches_and_predicts(tmp_path, clouds_csv, capsys):
    info = scan_csv(clouds_csv, None, "logistic")
    assert info.features == ["a", "b"] and info.target == "label" and info.rows == 200
    assert isinstance(CsvDataset(info, True), torch.utils.data.IterableDataset)  # rows are read as they are needed
    batches = list(loader(None, None, info, 64, True, 0, 1))
    assert [len(b[0]) for b in batches] == [64, 64, 64, 8]
    torch.testing.assert_close(torch.cat([b[0] for b in batches]).mean(0), torch.zeros(2), atol=1e-5, rtol=0)

    checkpoint = str(tmp_path / "model.pt")
    assert main(["logistic", "--data", clouds_csv, "--batch-size", "50", "--standardize", "--save", checkpoint,
                 "--no-progress", "--device", "cpu", "--plot", str(tmp_path / "plots"),
                 "--tensorboard", str(tmp_path / "tb")]) == 0
    out = capsys.readouterr().out
    assert "accuracy 1.0000" in out or "accuracy 0.99" in out
    assert (tmp_path / "plots" / "logistic_loss.png").stat().st_size > 0
    assert (tmp_path / "plots" / "logistic_boundary.png").stat().st_size > 0
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tb"))

    features_only = write_csv(tmp_path / "new.csv", ["a", "b"], [[3.0, 3.0], [-1.0, -1.0]])
    assert main(["predict", "--checkpoint", checkpoint, "--data", features_only]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "row,probability,class"
    assert lines[1].endswith(",0") and lines[2].endswith(",1")  # the two clouds' sides


def test_tutorial_command_prints_parity_and_writes_plots(tmp_path, capsys):
    assert main(["tutorial", "--device", "cpu", "--no-progress", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("parity OK") == 2 and "closed-form least squares" in out
    assert {p.name for p in tmp_path.iterdir()} == {"linear_loss.png", "linear_fit.png", "logistic_loss.png",
                                                    "logistic_boundary.png"}


def test_diverging_training_exits_non_zero(capsys):
    assert main(["linear", "--lr", "10", "--iterations", "200", "--no-progress", "--device", "cpu"]) == 1
    assert "FAILED: the loss is not finite" in capsys.readouterr().out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_ddp_two_processes_on_cpu_match_one(tmp_path, kind):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    single, double = str(tmp_path / "single.pt"), str(tmp_path / "ddp.pt")
    common = ["-m", "pyext.train", kind, "--device", "cpu", "--no-progress", "--iterations", "300"]
    subprocess.run([sys.executable, *common, "--save", single], check=True, env=env, capture_output=True)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={free_port()}"]
    done = subprocess.run([*launch, *common, "--save", double], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = torch.load(single)["state_dict"], torch.load(double)["state_dict"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU (or pyext built without CUDA)")
@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_cuda_graph_matches_eager(kind):
    eager = run(kind, "pyext", "cuda")
    graphed = run(kind, "pyext", "cuda", cuda_graph=True)
    assert graphed.iterations == eager.iterations
    torch.testing.assert_close(torch.tensor(graphed.losses), torch.tensor(eager.losses), **PARITY)
    for name, p in graphed.parameters().items():
        torch.testing.assert_close(p, eager.parameters()[name], **PARITY)


def test_cuda_graph_needs_cuda():
    with pytest.raises(ValueError, match="--cuda-graph needs --device cuda"):
        run("linear", "pyext", "cpu", iterations=5, cuda_graph=True)
