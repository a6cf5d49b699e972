"""The CTranslate2 ``model.bin`` binary format: read and write, with no ctranslate2 import.

Layout (binary version 6, little endian)::

    u32 version | str spec_name | u32 revision | u32 n_variables
    n_variables x ( str name | u8 ndim | ndim x u32 dim | u8 dtype | u32 nbytes | bytes )
    u32 n_aliases | n_aliases x ( str alias | str target )

where ``str`` is ``u16 length (with the trailing NUL) | utf-8 bytes | NUL``. dtype ids
follow CTranslate2's ``DataType`` enum: float32, int8, int16, int32, float16, bfloat16.
int8-quantised weights come with a ``<name>_scale`` variable (``w = q / scale`` per row).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

BINARY_VERSION = 6
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


@dataclass
class CT2Model:
    """The contents of one ``model.bin``: variables by name (numpy arrays) and aliases."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        if name not in self.variables:
            raise ValueError(f"CTranslate2 model ({self.spec}) has no variable {name!r}")
        return self.variables[name]

    def tensor(self, name: str) -> torch.Tensor:
        """Variable ``name`` as float32, de-quantising int8 weights with their scale."""
        arr = self.get(name)
        scale_name = name + "_scale"
        if arr.dtype == np.int8 and scale_name in self.variables:
            scale = self.variables[scale_name].astype(np.float32)
            return torch.from_numpy(
                arr.astype(np.float32) / scale.reshape(-1, *([1] * (arr.ndim - 1)))
            )
        if arr.dtype == np.int8:
            raise ValueError(
                f"CTranslate2 variable {name!r} is int8 without a {scale_name!r} scale"
            )
        return torch.from_numpy(np.array(arr, copy=True)).float()

    def scalar(self, name: str) -> int:
        return int(self.get(name).reshape(()))


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(
                f"{self.path} is truncated (offset {self.pos} of {len(self.data)} bytes)"
            )
        value = struct.unpack_from("<" + fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def string(self) -> str:
        n = self.unpack("H")
        raw = self.data[self.pos : self.pos + n - 1]
        self.pos += n
        return raw.decode("utf-8")

    def array(self, shape: list[int], dtype_id: int, nbytes: int, name: str) -> np.ndarray:
        if dtype_id >= len(DTYPES):
            raise ValueError(f"{self.path}: variable {name!r} has unknown dtype id {dtype_id}")
        raw = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        if DTYPES[dtype_id] == "bfloat16":
            bits = torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16)
            return bits.float().numpy().reshape(shape)
        return np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype_id])).reshape(shape)


def read_ct2(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (a file, or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise ValueError(f"no CTranslate2 model at {path}: model.bin is missing")
    r = _Reader(path.read_bytes(), path)
    version = r.unpack("I")
    if version > BINARY_VERSION or version < 5:
        raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported (5 or 6)")
    model = CT2Model(spec=r.string(), revision=r.unpack("I"))
    for _ in range(r.unpack("I")):
        name = r.string()
        shape = [r.unpack("I") for _ in range(r.unpack("B"))]
        dtype_id, nbytes = r.unpack("B"), r.unpack("I")
        model.variables[name] = r.array(shape, dtype_id, nbytes, name)
    for _ in range(r.unpack("I")):
        alias = r.string()
        model.aliases[alias] = r.string()
    return model


def _pack_string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<H", len(raw) + 1) + raw + b"\0"


def write_ct2(path: str | Path, model: CT2Model) -> Path:
    """Write ``model`` as a ``model.bin`` (variables sorted by name, as CTranslate2 does)."""
    path = Path(path)
    chunks = [
        struct.pack("<I", BINARY_VERSION),
        _pack_string(model.spec),
        struct.pack("<I", model.revision),
        struct.pack("<I", len(model.variables)),
    ]
    for name in sorted(model.variables):
        arr = np.asarray(model.variables[name]).copy(order="C")  # keeps 0-d scalars 0-d
        if arr.dtype.name not in DTYPES:
            raise ValueError(f"CTranslate2 variable {name!r} has unsupported dtype {arr.dtype}")
        chunks += [
            _pack_string(name),
            struct.pack("<B", arr.ndim),
            *(struct.pack("<I", d) for d in arr.shape),
            struct.pack("<B", DTYPES.index(arr.dtype.name)),
            struct.pack("<I", arr.nbytes),
            arr.tobytes(),
        ]
    chunks.append(struct.pack("<I", len(model.aliases)))
    for alias, target in model.aliases.items():
        chunks += [_pack_string(alias), _pack_string(target)]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(b"".join(chunks))
    tmp.replace(path)
    return path
