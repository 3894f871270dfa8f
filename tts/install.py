"""Install ChatTTS next to CPU torch without breaking transformers: `python -m tts.install`.

Why this exists: `pip install chattts` requires torchaudio, and every torchaudio wheel on PyPI
for Linux is a CUDA build. With CPU torch installed, pip either replaces torch by a CUDA build
(GBs) or, with --no-deps, leaves a torchaudio whose native library needs `libc10_cuda.so`;
`import transformers`' Qwen2-VL imports torchaudio and then fails.

What ChatTTS, vocos and encodec use of torchaudio is pure Python (MelSpectrogram, mel-scale
helpers), and torchaudio itself supports running without its native extension (`_load_lib`
returns False when the library file is absent). So we install the same torchaudio release
rebuilt without its `.so` files: a real wheel with a consistent RECORD, so pip can list,
upgrade and uninstall it as usual. We do so on CUDA machines too, because those libraries
match only the one torch release they were built for, and `make` installs pip's newest torch
there. ChatTTS, vocos and encodec go in with --no-deps; their other runtime needs are the
`speech` extra in pyproject.toml.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NO_DEPS_PACKAGES = ("chattts==0.2.5", "vocos==0.1.0", "encodec==0.1.1")
TORCHAUDIO = "torchaudio==2.11.0"  # newest on PyPI; its Python layer runs on torch 2.11-2.13
CHECK = "from transformers import Qwen2VLForConditionalGeneration; import ChatTTS"


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def strip_native_libs(wheel: Path, out_dir: Path) -> Path:
    """Rewrite a torchaudio wheel without `torchaudio/lib/*.so` (same name, fixed RECORD)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        kept = [i for i in src.infolist() if not _is_native_lib(i.filename)]
        record_name = next(i.filename for i in kept if i.filename.endswith(".dist-info/RECORD"))
        lines = []
        for info in kept:
            if info.filename == record_name:
                continue
            data = src.read(info)
            dst.writestr(info, data)
            lines.append(_record_line(info.filename, data))
        lines.append(f"{record_name},,")
        dst.writestr(record_name, "\n".join(lines) + "\n")
    return out


def _is_native_lib(name: str) -> bool:
    return name.startswith("torchaudio/lib/") and name.endswith(".so")


def install_torchaudio(index_args: list[str]) -> None:
    """torchaudio without its native libraries, whatever the torch: those are built for one exact
    torch release and CUDA (2.11 here), while ChatTTS only uses torchaudio's Python layer."""
    with tempfile.TemporaryDirectory() as tmp:
        _pip("download", "-q", "--no-deps", "--only-binary=:all:", *index_args, "-d", tmp, TORCHAUDIO)
        wheel = next(Path(tmp).glob("torchaudio-*.whl"))
        _pip("install", "-q", "--no-deps", "--force-reinstall", str(strip_native_libs(wheel, Path(tmp) / "cpu")))


def verify() -> None:
    """Qwen2-VL and ChatTTS must import together in one process (the failure this avoids)."""
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["(no output)"]
        sys.exit(f"tts.install: ChatTTS next to transformers does not import: {tail[0]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tts.install", description=__doc__.split("\n")[0])
    parser.add_argument("--find-links", help="install from this folder of wheels, offline")
    parser.add_argument("--strip", type=Path, metavar="WHEEL", help="only rewrite this torchaudio wheel without native libs (into ./cpu-wheels) and exit")
    args = parser.parse_args(argv)
    if args.strip:
        print(strip_native_libs(args.strip, Path("cpu-wheels")))
        return
    index_args = ["--no-index", "--find-links", args.find_links] if args.find_links else []
    _pip("install", "-q", "--no-deps", *index_args, *NO_DEPS_PACKAGES)
    install_torchaudio(index_args)
    verify()
    print("tts.install: ChatTTS installed; transformers' Qwen2-VL still imports")


if __name__ == "__main__":
    main()
