"""pytest plugin for nbval: start each notebook's kernel on IPC sockets, and retry a start that fails once.

``tests/run_variants.sh`` runs two nbval processes side by side (two variants at a time). jupyter_client's
default TCP transport picks free ports by binding and releasing them, so two processes starting kernels at
the same moment can pick the same port; the kernel then dies at start and every cell of that notebook fails
with "Kernel died before replying to kernel_info" (seen once in CI, on notebook 03 under avx2-1t). IPC
sockets are files with a fresh random name for each kernel, so two kernels never share one. A start
that still fails is retried once, and the failure is reported on stderr either way. Used by ``make test``
(``-p tests.notebooks.nbval_kernel``).
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from pathlib import Path

from jupyter_client.manager import KernelManager
from nbval import kernel as nbval_kernel

RETRIES = 1


def start_new_kernel(startup_timeout=60, kernel_name="python", **kwargs):
    """nbval's start_new_kernel on IPC sockets, retried once: returns (KernelManager, KernelClient)."""
    for attempt in range(RETRIES + 1):
        # An absolute socket path: nbval starts the kernel in the notebook's folder, the client stays here.
        ip = str(Path(tempfile.gettempdir()) / f"nbval-{uuid.uuid4().hex}")
        km = KernelManager(kernel_name=kernel_name, transport="ipc", ip=ip,
                           kernel_spec_manager=nbval_kernel.NbvalKernelspecManager())
        km.start_kernel(**kwargs)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=startup_timeout)
            return km, kc
        except RuntimeError as error:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            print(f"nbval_kernel: kernel {kernel_name!r} failed to start (attempt {attempt + 1}): {error}",
                  file=sys.stderr)
            if attempt == RETRIES:
                raise


nbval_kernel.start_new_kernel = start_new_kernel
