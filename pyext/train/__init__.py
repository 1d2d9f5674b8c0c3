"""Training the PyTorch tutorial's two models with pyext's kernels: ``python -m pyext.train --help``.

- linear regression: x = rand(20, 1) * 10, y = 2x + 5 + noise, loss 0.5 mean((y - y_hat)^2), gradient descent;
- logistic regression: two Gaussian clouds, Linear(2, 1) + Sigmoid + BCELoss + SGD(lr=0.01, momentum=0.9);

each with the pyext backend (our add/mul/sigmoid/losses/SGD kernels) or the native one (torch's), on the
tutorial's data or a CSV file, on CPU or CUDA, in one process or several (torchrun, DDP).
"""
from .data import DataError, scan_csv, tutorial_linear, tutorial_logistic
from .loop import Result, train

__all__ = ["DataError", "Result", "scan_csv", "train", "tutorial_linear", "tutorial_logistic"]
