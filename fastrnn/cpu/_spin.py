"""The primitives the thread team's threads meet on inside jitted code: acquire/release loads and
stores of an int64 flag (and a compare-and-swap, for pair.py), the CPU's spin-wait hint, and a
barrier built from them.

Each thread owns one flag and only ever raises it (release store of the step it has finished); a
thread that needs everyone's step-s results waits until every flag reads at least s (acquire
loads). No read-modify-write is needed, so the same barrier serves any team size. Flags sit
FLAG_STRIDE int64s apart, one cache line each.

A wait that spins long (another thread descheduled on a busy machine) gives its core away with
sched_yield every YIELD_AFTER spins instead of burning it.
"""
from __future__ import annotations

import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

FLAG_STRIDE = 8          # int64s per flag: 64 bytes
YIELD_AFTER = 2000       # pause instructions before a sched_yield

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def _flag_pointer(context, builder, sig, args):
    array_type = sig.args[0]
    array = context.make_array(array_type)(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, array_type, array, [args[1]])


@intrinsic
def load_acquire(typingctx, flags, index):
    """flags[index] (an int64 array), read with acquire ordering."""
    def codegen(context, builder, sig, args):
        return builder.load_atomic(_flag_pointer(context, builder, sig, args), "acquire", 8)
    return types.int64(flags, index), codegen


@intrinsic
def store_release(typingctx, flags, index, value):
    """flags[index] = value (int64), written with release ordering."""
    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, _flag_pointer(context, builder, sig, args), "release", 8)
        return context.get_dummy_value()
    return types.void(flags, index, value), codegen


@intrinsic
def compare_exchange(typingctx, flags, index, expected, desired):
    """Atomically: if flags[index] == expected, set it to desired; True when it did (sequentially
    consistent). pair.py's hand-over word moves through its states by this."""
    def codegen(context, builder, sig, args):
        expected = context.cast(builder, args[2], sig.args[2], types.int64)
        desired = context.cast(builder, args[3], sig.args[3], types.int64)
        result = builder.cmpxchg(_flag_pointer(context, builder, sig, args), expected, desired,
                                 "seq_cst", "seq_cst")
        return builder.extract_value(result, 1)
    return types.boolean(flags, index, expected, desired), codegen


@intrinsic
def spin_pause(typingctx):
    """The spin-wait hint (x86 `pause`); nothing elsewhere."""
    def codegen(context, builder, sig, args):
        if _X86:
            pause = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(pause, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def yield_core(typingctx):
    """sched_yield(): let another runnable thread have this core."""
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@njit(**_JIT)
def arrive_and_wait(flags, member, members, step):
    """Raise this member's flag to `step`, then wait until all `members` flags reach it.

    flags (members * FLAG_STRIDE,) int64, zero at the start of a team call.
    """
    store_release(flags, member * FLAG_STRIDE, step)
    spins = 0
    for other in range(members):
        while load_acquire(flags, other * FLAG_STRIDE) < step:
            spin_pause()
            spins += 1
            if spins >= YIELD_AFTER:
                yield_core()
                spins = 0
