"""autolora doctor's torch line: the installed build, CUDA, the GPU a run would use, and a warning when
the machine has a GPU that the installed torch cannot use."""

from __future__ import annotations

import torch

from autolora import doctor


def test_cpu_build_on_a_gpu_machine_warns(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    tb = doctor.torch_build("nvidia-smi -L")
    assert tb["build"] == "CPU-only" and not tb["cuda_available"] and tb["gpu"] is None
    assert "GPU is present (nvidia-smi -L) but torch is the CPU build" in tb["warning"]
    assert doctor.torch_build(None)["warning"] is None  # no GPU: the CPU build is right


def test_cuda_build_reports_the_gpu_it_would_use(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H200 #{i}")
    tb = doctor.torch_build("nvidia-smi -L")
    assert tb == {
        "build": "CUDA 12.8",
        "cuda_available": True,
        "gpu": "cuda:1 (NVIDIA H200 #1)",
        "gpu_found": "nvidia-smi -L",
        "warning": None,
    }
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "CUDA 12.8 is unavailable" in doctor.torch_build("nvidia-smi -L")["warning"]


def test_the_report_names_the_build_and_warns(monkeypatch):
    monkeypatch.setenv("AUTOLORA_GPU_PROBE", "present")
    assert doctor.gpu_found() == "AUTOLORA_GPU_PROBE=present"
    text = doctor.format_description(doctor.describe(build=False))
    expected = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
    assert f"torch:      {expected} build; CUDA available" in text
    assert ("warning:    an NVIDIA GPU is present" in text) == (torch.version.cuda is None)
    monkeypatch.setenv("AUTOLORA_GPU_PROBE", "absent")
    assert doctor.gpu_found() is None and "warning:" not in doctor.format_description(doctor.describe())
