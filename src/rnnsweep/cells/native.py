"""Builds and loads the C++ step loops of the fused CPU GRU and tanh RNN (fused_rnn.cpp).

The library is compiled once per machine and kept in a cache keyed by the source, torch's
version, the compiler, the flags and the CPU's instruction sets (it is built for this CPU);
every later process only loads it (milliseconds). Concurrent workers wait on a file lock
while the first one builds. `make setup` builds it ahead (`native.main()`); otherwise the
first process that runs a fused GRU or tanh RNN pays the build (`native.main()` prints how long
it took).

Without a C++ compiler, or when the build fails, `ops()` is None and the fused layers run
their Python loops, the same function about 1.5x slower; `status()` says which and why.
One g++ command, not torch.utils.cpp_extension.load: that one needs the ninja package, which
is not a dependency of the project.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

SOURCE = Path(__file__).with_name("fused_rnn.cpp")
LIBRARY = "rnnsweep_native"
# -fno-math-errno/-fno-trapping-math let the compiler vectorise floor() in exp; no
# -ffast-math: the loops must keep IEEE arithmetic to match torch's within float rounding.
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared",
         "-std=c++20", "-w")
log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where built libraries live: $RNNSWEEP_NATIVE_DIR, else the user's cache directory."""
    env = os.environ.get("RNNSWEEP_NATIVE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnsweep" / "native"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _command(compiler: str, output: Path) -> list[str]:
    from torch.utils import cpp_extension

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    lib_dir = cpp_extension.library_paths()[0]
    return [compiler, *FLAGS, f"-D_GLIBCXX_USE_CXX11_ABI={abi}", str(SOURCE), "-o", str(output),
            *(f"-I{p}" for p in cpp_extension.include_paths()), f"-L{lib_dir}", "-lc10",
            "-ltorch_cpu", f"-Wl,-rpath,{lib_dir}"]


def library_path(compiler: str) -> Path:
    """The cached library for this source, torch, compiler, flags and CPU."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), compiler.encode(),
                 " ".join(FLAGS).encode(), _cpu_flags().encode(), platform.machine().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"{LIBRARY}-{key.hexdigest()[:16]}.so"


def build(force: bool = False) -> Path:
    """The library's path, compiled first if it is not cached (or `force`). Raises
    RuntimeError with the compiler's message when there is no compiler or it fails."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not compiler:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    path = library_path(compiler)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here for the first's build
        if path.exists() and not force:
            return path
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            partial = Path(tmp) / path.name
            done = subprocess.run(_command(compiler, partial), capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{compiler} failed: {done.stderr.strip()[-2000:]}")
            os.replace(partial, path)  # atomic: no process ever loads a half-written file
    return path


_status = "not loaded yet"


@functools.cache
def ops() -> Any | None:
    """torch.ops.rnnsweep_native with the GRU and tanh-RNN loops, or None (see status())."""
    global _status
    try:
        path = build()
        torch.ops.load_library(str(path))
    except (RuntimeError, OSError) as err:
        _status = f"unavailable, Python loops run instead: {err}"
        log.warning("rnnsweep's C++ GRU/RNN loops are %s", _status)
        return None
    _status = f"loaded from {path}"
    return getattr(torch.ops, LIBRARY)


def status() -> str:
    """Whether the C++ loops are loaded, from where, or why not."""
    return _status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rnnsweep.cells.native",
        description="Build (once per machine) the C++ loops of the fused CPU GRU and tanh RNN.")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        path = build(force=args.force)
    except RuntimeError as err:
        print(f"rnnsweep native loops: not built, the Python loops will run: {err}",
              file=sys.stderr)
        return 0  # optional: everything works without it, only slower
    print(f"rnnsweep native loops: {path} ({time.perf_counter() - start:.1f} s)")
    return 0

