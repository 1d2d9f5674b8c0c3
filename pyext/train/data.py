"""Data for the two tutorial models: the tutorial's own synthetic sets, and users' CSV files.

A CSV file is read as a stream: one validating pass (errors name the line), which also gathers the
feature statistics for standardization, then training passes that parse only the rows of this
process's shard (rank::world_size) and batch them through a DataLoader, so a file larger than
memory trains.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset


class DataError(ValueError):
    """A problem with the user's data, with the file and line it was found on."""


def tutorial_linear(seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """x = rand(20, 1) * 10, y = 2x + 5 + N(0, 1), as in the tutorial."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(20, 1, generator=gen) * 10
    y = 2 * x + 5 + torch.randn(20, 1, generator=gen)
    return x, y


def tutorial_logistic() -> Tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian clouds of 100 points in 2-D, made after torch.manual_seed(1) as in the tutorial:
    class 0 ~ N(1.7, 1) + 1, class 1 ~ N(-1.7, 1) + 1."""
    torch.manual_seed(1)
    n_data = torch.ones(100, 2)
    x0 = torch.normal(1.7 * n_data, 1) + 1
    x1 = torch.normal(-1.7 * n_data, 1) + 1
    x = torch.cat((x0, x1)).float()
    y = torch.cat((torch.zeros(100, 1), torch.ones(100, 1))).float()
    return x, y


@dataclass
class CsvInfo:
    """What the validating pass learned of a CSV file."""

    path: str
    features: List[str]
    target: str
    target_index: int
    rows: int
    mean: torch.Tensor = field(repr=False)
    std: torch.Tensor = field(repr=False)


def _rows(path: str) -> Iterator[Tuple[int, List[str]]]:
    """(line number, fields) of every non-blank line after the header."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for fields in reader:
            if fields and any(s.strip() for s in fields):
                yield reader.line_num, fields


def _number(text: str, path: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}, line {line}, column '{column}': '{text}' is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}, line {line}, column '{column}': '{text}' is not a finite number")
    return value


def scan_csv(path: str, target: Optional[str], task: str, require_target: bool = True) -> CsvInfo:
    """Validates the whole file in one streaming pass and returns its columns and feature statistics.

    task is 'linear' or 'logistic' (then every label must be 0 or 1)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
    if not header or not any(h.strip() for h in header):
        raise DataError(f"{path}: the file is empty (a header line and data rows are expected)")
    header = [h.strip() for h in header]
    target = target if target is not None else header[-1]
    if target not in header:
        if require_target:
            raise DataError(f"{path}, line 1: no target column '{target}' (the columns are {', '.join(header)})")
        target_index = -1
    else:
        target_index = header.index(target)
    features = [h for i, h in enumerate(header) if i != target_index]
    if not features:
        raise DataError(f"{path}, line 1: no feature columns beside the target '{target}'")
    rows, total, total_sq = 0, torch.zeros(len(features), dtype=torch.float64), torch.zeros(len(features),
                                                                                          dtype=torch.float64)
    for line, fields in _rows(path):
        if len(fields) != len(header):
            raise DataError(f"{path}, line {line}: expected {len(header)} values, found {len(fields)}")
        values = [_number(s, path, line, header[i]) for i, s in enumerate(fields)]
        if target_index >= 0 and task == "logistic" and values[target_index] not in (0.0, 1.0):
            raise DataError(f"{path}, line {line}: label {fields[target_index].strip()} is not 0 or 1")
        x = torch.tensor([v for i, v in enumerate(values) if i != target_index], dtype=torch.float64)
        rows += 1
        total += x
        total_sq += x * x
    if rows == 0:
        raise DataError(f"{path}: the file has a header but no data rows")
    mean = total / rows
    std = (total_sq / rows - mean * mean).clamp_min(0).sqrt()
    std[std == 0] = 1.0
    return CsvInfo(path, features, target, target_index, rows, mean.float(), std.float())


class CsvDataset(IterableDataset):
    """The rows of this process's shard of a validated CSV file, as (features, target) pairs,
    standardized with the file's mean and std when asked."""

    def __init__(self, info: CsvInfo, standardize: bool, rank: int = 0, world_size: int = 1):
        self.info, self.standardize, self.rank, self.world_size = info, standardize, rank, world_size

    def __iter__(self):
        info = self.info
        for index, (line, fields) in enumerate(_rows(info.path)):
            if index % self.world_size != self.rank:
                continue
            values = [float(s) for s in fields]
            x = torch.tensor([v for i, v in enumerate(values) if i != info.target_index])
            if self.standardize:
                x = (x - info.mean) / info.std
            y = torch.tensor([values[info.target_index] if info.target_index >= 0 else float("nan")])
            yield x, y


def loader(x: Optional[torch.Tensor], y: Optional[torch.Tensor], info: Optional[CsvInfo], batch_size: Optional[int],
           standardize: bool, rank: int, world_size: int) -> DataLoader:
    """Mini-batches of this process's shard: in-memory tensors (the tutorial's data) or a CSV stream.
    Without a batch size, the whole shard is one batch (the tutorial's full-batch descent)."""
    if info is not None:
        shard_rows = len(range(rank, info.rows, world_size))
        return DataLoader(CsvDataset(info, standardize, rank, world_size), batch_size=batch_size or shard_rows)
    if standardize:  # statistics of the whole set, as for a CSV file, then this process's shard
        x = (x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-12)
    x, y = x[rank::world_size], y[rank::world_size]
    return DataLoader(TensorDataset(x, y), batch_size=batch_size or len(x), shuffle=False)
