"""resolve_device: "auto" resolves, and a device this machine cannot run is one InputError naming the
value and what is available, before anything is moved (before: AssertionError: Torch not compiled
with CUDA enabled, at the first .to(), in --dry-run too). Runs on a CPU-only machine."""

from __future__ import annotations

import re

import pytest
import torch

from autolora.cli import main
from autolora.devices import available_devices, resolve_device
from autolora.errors import InputError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_and_cpu(no_gpu):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert available_devices()[0] == "cpu"


def test_auto_takes_cuda_when_there(two_gpus):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize(
    "spec, says",
    [
        ("cuda", r"'cuda': no cuda device on this machine"),
        ("cuda:3", r"'cuda:3': no cuda device on this machine"),
        ("mps", r"'mps': no mps device on this machine"),
        ("xla", r"'xla': autolora does not run on 'xla' devices"),
        ("meta", r"'meta': autolora does not run on 'meta' devices"),
        ("nonsense", r"'nonsense' is not a device; expected 'auto' or a device"),
    ],
)
def test_unavailable_device_is_named(no_gpu, spec, says):
    with pytest.raises(InputError) as info:
        resolve_device(spec)
    msg = str(info.value)
    assert info.value.arg == "device" and msg.startswith("device: "), msg
    assert re.search(says, msg) and msg.endswith("available here: cpu"), msg


def test_gpu_index_out_of_range(two_gpus):
    with pytest.raises(InputError, match=r"'cuda:2': there is no cuda device 2 \(2 found\); available here: "
                       r"cpu, cuda:0, cuda:1$"):  # fmt: skip
        resolve_device("cuda:2")


def test_cli_dry_run_names_the_device(no_gpu, tmp_path, capsys):
    code = main(
        ["run", "--dry-run", "--device", "cuda", "--output-dir", str(tmp_path / "out"), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith("autolora: error: device: 'cuda': no cuda device on this machine"), err
    assert not (tmp_path / "out").exists()
