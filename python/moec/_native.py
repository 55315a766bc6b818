"""Finding and binding libMoEC (Sources/CMoEC/include/moec.h) with ctypes.

The library is looked up, in order:
1. the file the environment variable ``MOEC_LIBRARY`` names;
2. the copy ``pip install ./python`` put into the package (``moec/lib/libMoEC.so``);
3. a SwiftPM build of the repository this package sits in (``.build/release`` or ``.build/debug``,
   the newer of the two), for running from a checkout with ``PYTHONPATH=python``.

Every function is declared with its C types here, once; ``call`` runs one and turns the C API's
``char **error`` into a ``MoecError``. ctypes releases the GIL around each foreign call, so runs of
plans from several Python threads go on at the same time.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading

from ._errors import MoecError

LIBRARY_NAME = "libMoEC.dylib" if sys.platform == "darwin" else "libMoEC.so"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
API_VERSION = 1

MOEC_F32 = 0
MOEC_I32 = 1

plan_t = ctypes.c_uint64
error_p = ctypes.POINTER(ctypes.c_void_p)


class Tensor(ctypes.Structure):
    """``moec_tensor``: a caller-owned buffer, its shape and element type."""
    _fields_ = [("data", ctypes.c_void_p), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("rank", ctypes.c_int32), ("dtype", ctypes.c_int32)]


class Options(ctypes.Structure):
    """``moec_options``: zero-initialised, ``size`` set to its size."""
    _fields_ = [("size", ctypes.c_uint32), ("threads", ctypes.c_int32), ("record_routing", ctypes.c_int32),
                ("weights", ctypes.c_char_p)]


# name: (result type, argument types)
PROTOTYPES = {
    "moec_version": (ctypes.c_char_p, []),
    "moec_compile": (plan_t, [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t,
                              ctypes.POINTER(Options), error_p]),
    "moec_load": (plan_t, [ctypes.c_char_p, ctypes.POINTER(Options), error_p]),
    "moec_save": (ctypes.c_int, [plan_t, ctypes.c_char_p, error_p]),
    "moec_input_count": (ctypes.c_int32, [plan_t, error_p]),
    "moec_is_sequence": (ctypes.c_int32, [plan_t, error_p]),
    "moec_output_count": (ctypes.c_int32, [plan_t, error_p]),
    "moec_input_name": (ctypes.c_int32, [plan_t, ctypes.c_int32, ctypes.c_char_p, ctypes.c_size_t, error_p]),
    "moec_output_name": (ctypes.c_int32, [plan_t, ctypes.c_int32, ctypes.c_char_p, ctypes.c_size_t, error_p]),
    "moec_input_shape": (ctypes.c_int32, [plan_t, ctypes.c_int32, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64),
                                          ctypes.c_size_t, ctypes.POINTER(ctypes.c_int32), error_p]),
    "moec_output_shape": (ctypes.c_int32, [plan_t, ctypes.c_int32, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64),
                                           ctypes.c_size_t, ctypes.POINTER(ctypes.c_int32), error_p]),
    "moec_run": (ctypes.c_int, [plan_t, ctypes.POINTER(Tensor), ctypes.c_size_t, ctypes.POINTER(Tensor),
                                ctypes.c_size_t, error_p]),
    # Strings the caller frees are read as addresses (c_void_p), not as c_char_p (which copies and
    # drops the pointer), so that they can be handed back to moec_string_free.
    "moec_stats_json": (ctypes.c_void_p, [plan_t, error_p]),
    "moec_stats_reset": (ctypes.c_int, [plan_t, error_p]),
    "moec_free": (ctypes.c_int, [plan_t, error_p]),
    "moec_sequence_new": (plan_t, [plan_t, ctypes.c_int64, error_p]),
    "moec_sequence_run": (ctypes.c_int, [plan_t, ctypes.POINTER(Tensor), ctypes.c_size_t, ctypes.POINTER(Tensor),
                                         ctypes.c_size_t, error_p]),
    "moec_sequence_length": (ctypes.c_int64, [plan_t, error_p]),
    "moec_sequence_rewind": (ctypes.c_int, [plan_t, ctypes.c_int64, error_p]),
    "moec_sequence_capacity": (ctypes.c_int64, [plan_t, error_p]),
    "moec_sequence_reserve": (ctypes.c_int, [plan_t, ctypes.c_int64, error_p]),
    "moec_sequence_free": (ctypes.c_int, [plan_t, error_p]),
    "moec_string_free": (None, [ctypes.c_void_p]),
}

_lock = threading.Lock()
_lib = None
_path = None


def candidates() -> list[str]:
    """Where libMoEC is looked for, in order (see the module's doc)."""
    env = os.environ.get("MOEC_LIBRARY")
    if env:
        return [env]
    found = [os.path.join(PACKAGE_DIR, "lib", LIBRARY_NAME)]
    repo = repository_root()
    if repo:
        builds = [os.path.join(repo, ".build", c, LIBRARY_NAME) for c in ("release", "debug")]
        builds = [b for b in builds if os.path.exists(b)]
        found += sorted(builds, key=os.path.getmtime, reverse=True)
    return found


def repository_root() -> str | None:
    """The moec checkout this package sits in (python/moec/ → the folder with Package.swift), if any."""
    d = PACKAGE_DIR
    for _ in range(3):
        d = os.path.dirname(d)
        if os.path.exists(os.path.join(d, "Package.swift")) and os.path.isdir(os.path.join(d, "graphs")):
            return d
    return None


def library():
    """The loaded library (loaded on first use)."""
    global _lib, _path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for path in candidates():
            if not os.path.exists(path):
                tried.append(f"{path} (no such file)")
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                tried.append(f"{path} ({e})")
                continue
            for name, (restype, argtypes) in PROTOTYPES.items():
                try:
                    f = getattr(lib, name)
                except AttributeError:
                    raise MoecError(f"{path}: not libMoEC (no symbol {name})") from None
                f.restype = restype
                f.argtypes = argtypes
            _lib, _path = lib, path
            return lib
        hint = ("set MOEC_LIBRARY to the path of libMoEC, or run 'swift build' in the repository and "
                "'pip install ./python'")
        raise MoecError("cannot load libMoEC: tried " + "; ".join(tried) + f"\n{hint}")


def library_path() -> str:
    """The path libMoEC was loaded from."""
    library()
    return _path


def take_string(address: int | None) -> str | None:
    """Reads a string the API returned and frees it."""
    if not address:
        return None
    try:
        return ctypes.string_at(address).decode("utf-8", errors="replace")
    finally:
        _lib.moec_string_free(address)


def call(name: str, *args, failed=lambda r: not r):
    """Runs API function `name` with `args` and a trailing error pointer; raises MoecError with
    moec's message when `failed(result)`."""
    lib = library()
    error = ctypes.c_void_p()
    result = getattr(lib, name)(*args, ctypes.byref(error))
    message = take_string(error.value)
    if failed(result):
        raise MoecError(message or f"{name} failed without a message")
    return result
