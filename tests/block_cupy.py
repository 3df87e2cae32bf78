"""pytest plugin, loaded with `-p block_cupy` (tests/ on PYTHONPATH): `import cupy` fails in this
process as it does on a machine without CuPy. A plugin named with -p is imported before collection,
so no test module or conftest can reach the installed CuPy first.

test_without_cupy.py runs the device and dispatch tests under it: CI installs CuPy, which would hide
every path that only a CuPy-less machine takes.
"""
import sys

# None in sys.modules makes any later import of the name raise ModuleNotFoundError.
for _name in ("cupy", "cupyx", "cupy_backends"):
    if _name in sys.modules and sys.modules[_name] is not None:
        raise RuntimeError(f"block_cupy loaded too late: {_name} is already imported")
    sys.modules[_name] = None
