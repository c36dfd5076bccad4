"""Start-up hook for `python -m imgdiff.trace -- cmd`: installs the import tracer in every Python
3.9+ process that finds this directory on PYTHONPATH, then runs the `sitecustomize` it shadows.

It owns only that: loading `../tracer.py` by path (importing the `imgdiff` package would cost the
traced program tens of milliseconds and modules it never asked for) and chaining. It must never
stop the program from starting: every failure becomes one line on stderr.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _install_tracer() -> None:
    try:
        if sys.version_info < (3, 9):  # noqa: UP036 - any python3 on PYTHONPATH runs this file
            return
        import _frozen_importlib
        import _frozen_importlib_external

        name = "_imgdiff_trace_tracer"
        path = os.path.join(os.path.dirname(_HERE), "tracer.py")
        # importlib.util would do the same for ~5 ms of imports; the bootstrap modules are loaded
        loader = _frozen_importlib_external.SourceFileLoader(name, path)
        spec = _frozen_importlib_external.spec_from_file_location(name, path, loader=loader)
        if spec is None:
            raise ImportError(f"cannot load {path}")
        module = _frozen_importlib.module_from_spec(spec)
        sys.modules[name] = module
        loader.exec_module(module)
        module.install()
    except Exception as exc:
        sys.stderr.write(f"imgdiff.trace: not tracing: {exc!r}\n")


def _chain() -> None:
    """Import the next `sitecustomize` on sys.path, as if this one did not exist; this directory
    leaves sys.path (it stays in PYTHONPATH for child processes)."""
    me = sys.modules.get(__name__)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    sys.modules.pop(__name__, None)
    try:
        __import__("sitecustomize")  # the shadowed hook runs on import
    except ImportError as exc:
        if exc.name != "sitecustomize":
            raise
        if me is not None:  # importlib expects to find this module under the name it loads
            sys.modules[__name__] = me


_install_tracer()
if __name__ == "sitecustomize":
    _chain()
