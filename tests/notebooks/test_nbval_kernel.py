"""The nbval plugin that starts kernels on IPC sockets and retries a failed start (tests/notebooks/nbval_kernel.py)."""

import pytest

from tests.notebooks import nbval_kernel


def test_kernel_starts_on_ipc_sockets_and_runs_code(tmp_path):
    # nbval starts the kernel in the notebook's folder: the sockets must not depend on the working directory
    km, kc = nbval_kernel.start_new_kernel(kernel_name=nbval_kernel.nbval_kernel.CURRENT_ENV_KERNEL_NAME,
                                           cwd=str(tmp_path))
    try:
        assert km.transport == "ipc" and km.ip.startswith("/")
        reply = kc.execute_interactive("x = 6 * 7", timeout=30)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


class FlakyClient:
    def __init__(self, fails: list):
        self.fails = fails

    def start_channels(self):
        pass

    def stop_channels(self):
        pass

    def wait_for_ready(self, timeout):
        if self.fails:
            self.fails.pop()
            raise RuntimeError("Kernel died before replying to kernel_info")


def fake_manager(fails: list, started: list):
    class FakeManager:
        def __init__(self, kernel_name, transport, ip, kernel_spec_manager):
            started.append(transport)

        def start_kernel(self, **kwargs):
            pass

        def client(self):
            return FlakyClient(fails)

        def shutdown_kernel(self, now=False):
            pass

    return FakeManager


def test_a_failed_start_is_retried_once_and_reported(monkeypatch, capsys):
    started = []
    monkeypatch.setattr(nbval_kernel, "KernelManager", fake_manager(["dies"], started))
    nbval_kernel.start_new_kernel(kernel_name="python3")
    assert started == ["ipc", "ipc"]
    assert "failed to start (attempt 1)" in capsys.readouterr().err


def test_a_kernel_that_never_starts_raises(monkeypatch):
    started = []
    monkeypatch.setattr(nbval_kernel, "KernelManager", fake_manager(["dies", "dies"], started))
    with pytest.raises(RuntimeError, match="Kernel died"):
        nbval_kernel.start_new_kernel(kernel_name="python3")
    assert len(started) == 2
