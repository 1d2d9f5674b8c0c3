"""A short run of every op over every layout, for `compute-sanitizer --tool memcheck` (and racecheck):
small tensors, odd sizes, misaligned and strided views, forward, backward and reductions.

    compute-sanitizer --tool memcheck --error-exitcode 1 python tests/sanitize_ops.py
"""
import torch

import pyext.ops as P
import pyext.optim


def views(n, dtype, device):
    base = torch.rand(2 * n + 3, dtype=dtype, device=device) * 0.9 + 0.05
    square = torch.rand(n, n, dtype=dtype, device=device) * 0.9 + 0.05
    return {
        "contiguous": base[:n],
        "offset": base[1 : n + 1],
        "stepped": base[::2][:n],
        "expanded": base[:1].expand(n),
        "transposed": square.t()[0],
        "2d-transposed": square.t(),
        "rows": square[:, 4:],
        "misaligned-rows": square[1:, 1:],
    }


def main(device="cuda"):
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        for n in (7, 1000):
            for name, x in views(n, dtype, device).items():
                x = x.detach().requires_grad_()
                y = torch.rand(x.shape, dtype=dtype, device=device)
                w = torch.rand(x.shape[-1:], dtype=dtype, device=device)
                y_, w_ = y.clone().requires_grad_(), w.clone().requires_grad_()  # mul's two gradients in one pass
                outs = [
                    P.add(x, y, alpha=0.5), P.add(x, 2.0), P.mul(x, y), P.mul(x, torch.tensor(3.0)),
                    P.sigmoid(x), P.mul(x, y[..., :1]), P.mul(x, y_), P.mul(x, w_),
                ]
                for reduction in ("none", "mean", "sum"):
                    outs += [
                        P.binary_cross_entropy(x, y, w, reduction=reduction),
                        P.binary_cross_entropy(x, y, reduction=reduction),
                        P.binary_cross_entropy_with_logits(x, y, w, pos_weight=w, reduction=reduction),
                        P.binary_cross_entropy_with_logits(x, y, reduction=reduction),
                        P.mse_loss(x, y, reduction=reduction),
                    ]
                total = sum(o.float().sum() for o in outs)
                total.backward()
                z = y.clone()
                P.add_(z, x.detach(), alpha=2)
                P.mul_(z, 0.5)
                assert torch.isfinite(z).all(), name
    # the SGD step: many tensors (several launches), odd sizes, a misaligned one, every option
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        params = [torch.randn(n, device=device, dtype=dtype, requires_grad=True)
                  for n in [1, 7, 65537, 300_000] + [33] * 250]
        params.append(torch.randn(1001, device=device, dtype=dtype)[1:].requires_grad_())
        for nesterov, momentum in ((False, 0.0), (False, 0.9), (True, 0.9)):
            opt = pyext.optim.SGD(params, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=0.01)
            for _ in range(2):
                for p in params:
                    p.grad = torch.randn_like(p)
                opt.step()
    torch.cuda.synchronize()
    print("sanitize_ops: every op and layout ran")


if __name__ == "__main__":
    main()
