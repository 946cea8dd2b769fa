"""Whether ``torch.compile`` can build kernels here, asked before a run rather than learnt from its first step.

Inductor writes C++ (CPU) or Triton (CUDA) kernels and compiles them with the system's compiler on the first call.
Without one, the failure comes minutes into a run as a long traceback; this check turns it into one line.
"""

from __future__ import annotations

import os
import shutil

import torch


def compiler_missing(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here, or None.

    CPU kernels need a C++ compiler (``$CXX``, else ``g++``: inductor's own search); Triton's launcher for CUDA
    kernels needs a C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``).
    """
    if device.type == "cuda":
        names, what = [os.environ.get("CC")] if os.environ.get("CC") else ["cc", "gcc", "clang"], "a C compiler"
    else:
        names, what = [os.environ.get("CXX") or "g++"], "a C++ compiler"
    if any(shutil.which(name) for name in names):
        return None
    return f"torch.compile on {device.type} needs {what} ({' or '.join(names)}) on PATH, and none is there"
