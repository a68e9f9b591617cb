"""What a benchmark ran on: CPU, cores, threads, load, device, Python and package versions, date (one header line set,
printed first by every script in this folder so that its figures can be read against the machine)."""

from __future__ import annotations

import datetime
import os
import platform
from importlib import metadata

import torch


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(device: torch.device, packages: tuple[str, ...]) -> str:
    """Three lines: the machine (CPU model, cores, torch threads, load average now, device), the versions of
    ``packages``, and today's date."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or cpu
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    versions = ", ".join(f"{name} {version(name)}" for name in packages)
    accelerator = torch.cuda.get_device_name(device) if device.type == "cuda" else "none used"
    return (f"machine: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, load average "
            f"{load:.1f} at the start; device {device} ({accelerator}); python {platform.python_version()}\n"
            f"versions: {versions}\ndate: {datetime.date.today().isoformat()}")
