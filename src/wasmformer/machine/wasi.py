"""WASI (``wasi_snapshot_preview1``) as the program's world: stdout, stderr, exit.

What a wasi-libc program sees, chosen to match what wasmtime's default WASI
context shows it, so that libc takes the same paths (and executes the same
number of instructions) under both:

- fd 0 is stdin, empty: ``fd_read`` reads 0 bytes. fd 1 and fd 2 are stdout
  and stderr: ``fd_write`` hands their bytes to the ``stdout``/``stderr``
  callbacks (or appends them to ``stdout_bytes``/``stderr_bytes`` when no
  callback is given). Like
  wasmtime's, it writes only the first non-empty buffer of its iovec list
  (a short write, which POSIX allows; libc then writes the rest).
- ``fd_fdstat_get`` on 0/1/2 reports filetype 0 (unknown; wasmtime's answer,
  so libc does not treat stdout as a terminal and buffers it fully), flags 0,
  rights ``FD_READ`` for fd 0 and ``FD_WRITE`` for fds 1 and 2.
- ``fd_seek`` on 0/1/2 fails with ESPIPE; ``fd_close`` on 0/1/2 closes them
  (later use gives EBADF); any other descriptor is EBADF, as are
  ``fd_prestat_get``/``fd_prestat_dir_name`` (no preopened directories).
- ``args``/``environ``: the ones given (empty by default).
- ``clock_time_get`` is always 0 and ``clock_res_get`` 1 ns; ``random_get``
  fills with zero bytes; ``sched_yield`` succeeds: all deterministic.
- ``proc_exit(code)`` raises ``ProcExit(code)``; the caller catches it.
- Any other ``wasi_snapshot_preview1`` function returning one i32 (an errno)
  returns ENOSYS (52). A bad pointer gives EFAULT (21).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..wasm.module import FuncType
from .runtime import Extern, HostFunction
from .semantics import to_signed

if TYPE_CHECKING:
    from .instance import Instance

MODULE = "wasi_snapshot_preview1"

SUCCESS, EBADF, EFAULT, ENOSYS, ESPIPE = 0, 8, 21, 52, 70
RIGHT_FD_READ, RIGHT_FD_WRITE = 0x2, 0x40


class ProcExit(Exception):
    """The program called ``proc_exit``: not an error, the end of the run."""

    def __init__(self, code: int):
        self.code = code  # as a signed i32, like wasmtime's ExitTrap.code
        super().__init__(f"proc_exit({code})")


def _sig(params: str, results: str = "i") -> FuncType:
    t = {"i": "i32", "I": "i64"}
    return FuncType(tuple(t[c] for c in params), tuple(t[c] for c in results))


class _Fault(Exception):
    """A pointer outside the caller's memory: the call returns EFAULT."""


class WasiHost:
    """Provides ``wasi_snapshot_preview1`` to an instance (pass it as ``host``)."""

    def __init__(self, *, stdout: Callable[[bytes], None] | None = None,
                 stderr: Callable[[bytes], None] | None = None,
                 args: Sequence[str] = (), env: Mapping[str, str] | None = None):
        self.stdout_bytes = bytearray()  # what was written to fd 1, when no callback is given
        self.stderr_bytes = bytearray()
        self.write_stdout = stdout or self.stdout_bytes.extend
        self.write_stderr = stderr or self.stderr_bytes.extend
        self.args = [a.encode() + b"\0" for a in args]
        self.env = [f"{k}={v}".encode() + b"\0" for k, v in (env or {}).items()]
        self.open_fds = {0, 1, 2}
        self._functions: dict[str, tuple[FuncType, Callable[..., int]]] = {
            "fd_write": (_sig("iiii"), self.fd_write),
            "fd_read": (_sig("iiii"), self.fd_read),
            "fd_seek": (_sig("iIii"), self.fd_seek),
            "fd_close": (_sig("i"), self.fd_close),
            "fd_fdstat_get": (_sig("ii"), self.fd_fdstat_get),
            "fd_prestat_get": (_sig("ii"), self.fd_prestat_get),
            "fd_prestat_dir_name": (_sig("iii"), self.fd_prestat_get),
            "args_sizes_get": (_sig("ii"), self.args_sizes_get),
            "args_get": (_sig("ii"), self.args_get),
            "environ_sizes_get": (_sig("ii"), self.environ_sizes_get),
            "environ_get": (_sig("ii"), self.environ_get),
            "clock_time_get": (_sig("iIi"), self.clock_time_get),
            "clock_res_get": (_sig("ii"), self.clock_res_get),
            "random_get": (_sig("ii"), self.random_get),
            "sched_yield": (_sig(""), self.sched_yield),
            "proc_exit": (_sig("i", ""), self.proc_exit),
        }

    def resolve(self, module: str, name: str, expected: Any) -> Extern | None:
        if module != MODULE:
            return None
        if name in self._functions:
            ftype, fn = self._functions[name]
            return HostFunction(ftype, _adapter(fn), f"{MODULE}.{name}")
        if isinstance(expected, FuncType) and expected.results == ("i32",):
            return HostFunction(expected, lambda caller, args: [ENOSYS], f"{MODULE}.{name}")
        return None

    # --- file descriptors ---

    def fd_write(self, mem: bytearray, fd: int, iovs: int, iovs_len: int, nwritten: int) -> int:
        if fd not in (1, 2) or fd not in self.open_fds:
            return EBADF
        data = b""
        for i in range(iovs_len):  # a short write: the first non-empty buffer only, as wasmtime
            buf, length = _u32(mem, iovs + 8 * i), _u32(mem, iovs + 8 * i + 4)
            if length:
                data = _slice(mem, buf, length)
                break
        _put(mem, nwritten, len(data), 4)
        if data:
            (self.write_stdout if fd == 1 else self.write_stderr)(data)
        return SUCCESS

    def fd_read(self, mem: bytearray, fd: int, iovs: int, iovs_len: int, nread: int) -> int:
        if fd != 0 or fd not in self.open_fds:
            return EBADF
        _put(mem, nread, 0, 4)  # stdin is empty
        return SUCCESS

    def fd_seek(self, mem: bytearray, fd: int, offset: int, whence: int, newoffset: int) -> int:
        return ESPIPE if fd in self.open_fds else EBADF

    def fd_close(self, mem: bytearray, fd: int) -> int:
        if fd not in self.open_fds:
            return EBADF
        self.open_fds.remove(fd)
        return SUCCESS

    def fd_fdstat_get(self, mem: bytearray, fd: int, buf: int) -> int:
        if fd not in self.open_fds:
            return EBADF
        rights = RIGHT_FD_READ if fd == 0 else RIGHT_FD_WRITE
        _put(mem, buf, 0, 8)  # filetype (u8), padding, flags (u16), padding
        _put(mem, buf + 8, rights, 8)  # rights_base
        _put(mem, buf + 16, rights, 8)  # rights_inheriting
        return SUCCESS

    def fd_prestat_get(self, mem: bytearray, fd: int, *rest: int) -> int:
        return EBADF  # no preopened directories

    # --- arguments and environment ---

    def args_sizes_get(self, mem: bytearray, count: int, size: int) -> int:
        return _sizes(mem, self.args, count, size)

    def args_get(self, mem: bytearray, pointers: int, buf: int) -> int:
        return _strings(mem, self.args, pointers, buf)

    def environ_sizes_get(self, mem: bytearray, count: int, size: int) -> int:
        return _sizes(mem, self.env, count, size)

    def environ_get(self, mem: bytearray, pointers: int, buf: int) -> int:
        return _strings(mem, self.env, pointers, buf)

    # --- the rest of the world, deterministic ---

    def clock_time_get(self, mem: bytearray, clock: int, precision: int, time: int) -> int:
        _put(mem, time, 0, 8)
        return SUCCESS

    def clock_res_get(self, mem: bytearray, clock: int, resolution: int) -> int:
        _put(mem, resolution, 1, 8)
        return SUCCESS

    def random_get(self, mem: bytearray, buf: int, length: int) -> int:
        _slice(mem, buf, length)  # bounds check
        mem[buf:buf + length] = bytes(length)
        return SUCCESS

    def sched_yield(self, mem: bytearray) -> int:
        return SUCCESS

    def proc_exit(self, mem: bytearray, code: int) -> int:
        raise ProcExit(to_signed(code, 32))


def _adapter(fn: Callable[..., int]) -> Callable[[Instance, list], list]:
    """Wrap a WASI method as a HostFunction body: memory in, errno out, EFAULT on bad pointers."""
    def call(caller: Instance, args: list) -> list:
        mem = caller.memory.data if caller.memory is not None else bytearray()
        try:
            return [fn(mem, *args)]
        except _Fault:
            return [EFAULT]
    return call


def _slice(mem: bytearray, start: int, length: int) -> bytes:
    """A copy of ``length`` bytes at ``start`` (a copy: a view would pin the memory's size)."""
    if start + length > len(mem):
        raise _Fault
    return bytes(mem[start:start + length])


def _u32(mem: bytearray, at: int) -> int:
    return int.from_bytes(_slice(mem, at, 4), "little")


def _put(mem: bytearray, at: int, value: int, width: int) -> None:
    _slice(mem, at, width)
    mem[at:at + width] = value.to_bytes(width, "little")


def _sizes(mem: bytearray, strings: list[bytes], count: int, size: int) -> int:
    _put(mem, count, len(strings), 4)
    _put(mem, size, sum(len(s) for s in strings), 4)
    return SUCCESS


def _strings(mem: bytearray, strings: list[bytes], pointers: int, buf: int) -> int:
    for i, s in enumerate(strings):
        _put(mem, pointers + 4 * i, buf, 4)
        _slice(mem, buf, len(s))
        mem[buf:buf + len(s)] = s
        buf += len(s)
    return SUCCESS
