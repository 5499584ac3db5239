"""TF32 and cuDNN settings of a CUDA run (``tf32``, ``cudnn_benchmark``), applied around training
and recorded in run.json (``cuda_settings``).

torch 2.9 and later control TF32 with ``fp32_precision`` ("tf32" or "ieee") per backend; mixing that
with the older ``allow_tf32`` flags or ``set_float32_matmul_precision`` is an error there, so this
module uses the new API where it exists and the old one only on older torch. The settings are
process-wide: :func:`apply` returns a function that puts the previous ones back. On the CPU nothing
is applied (they do not affect CPU kernels) and run.json records them as torch has them.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

_NEW_API = hasattr(torch.backends.cuda.matmul, "fp32_precision")


def current() -> dict[str, Any]:
    """The settings in effect: TF32 for matmuls and cuDNN convolutions, cuDNN benchmark/deterministic."""
    cudnn = torch.backends.cudnn
    out: dict[str, Any] = {"cudnn_benchmark": bool(cudnn.benchmark), "cudnn_deterministic": bool(cudnn.deterministic)}
    if _NEW_API:
        matmul, conv = torch.backends.cuda.matmul.fp32_precision, cudnn.conv.fp32_precision
        out.update(api="fp32_precision", matmul_fp32_precision=matmul, cudnn_conv_fp32_precision=conv,
                   tf32_matmul=matmul == "tf32", tf32_cudnn=conv == "tf32")
    else:
        out.update(api="allow_tf32", float32_matmul_precision=torch.get_float32_matmul_precision(),
                   tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32), tf32_cudnn=bool(cudnn.allow_tf32))
    return out


def apply(tf32: bool, cudnn_benchmark: bool) -> Callable[[], None]:
    """Set TF32 (matmuls and convolutions) and cuDNN benchmark; returns the undo."""
    cudnn = torch.backends.cudnn
    benchmark = cudnn.benchmark
    if _NEW_API:
        matmul, conv = torch.backends.cuda.matmul.fp32_precision, cudnn.conv.fp32_precision
        torch.backends.cuda.matmul.fp32_precision = cudnn.conv.fp32_precision = "tf32" if tf32 else "ieee"
    else:
        matmul, conv = torch.get_float32_matmul_precision(), cudnn.allow_tf32
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        cudnn.allow_tf32 = tf32
    cudnn.benchmark = cudnn_benchmark

    def undo() -> None:
        cudnn.benchmark = benchmark
        if _NEW_API:
            torch.backends.cuda.matmul.fp32_precision, cudnn.conv.fp32_precision = matmul, conv
        else:
            torch.set_float32_matmul_precision(matmul)
            cudnn.allow_tf32 = conv

    return undo
