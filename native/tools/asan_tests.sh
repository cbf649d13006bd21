#!/usr/bin/env bash
# Run tests/engine once against an AddressSanitizer build of xnorlab.engine._native, without touching
# the installed (optimized) module that everybody else imports.
#   1. configure + build native/ with -DXNORLAB_ASAN=ON into build/asan (cmake + ninja);
#   2. make a shadow package dir (symlinks to xnorlab/* plus the ASan .so);
#   3. run pytest with libasan preloaded (detect_leaks=0: CPython itself "leaks" at exit) and
#      libstdc++ right after it: ASan resolves the real __cxa_throw when it starts, and the
#      python binary does not link libstdc++, so without it every C++ exception aborts;
#      after removing the editable-install finder so that the shadow package is imported.
# Usage: native/tools/asan_tests.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
BUILD=build/asan
SHADOW=build/asan-shadow
cmake -S native -B "$BUILD" -G Ninja -DCMAKE_MAKE_PROGRAM="$PWD/.venv/bin/ninja" \
  -Dpybind11_DIR="$($PY -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$PWD/$PY" \
  -DXNORLAB_ASAN=ON >/dev/null
.venv/bin/ninja -C "$BUILD" >/dev/null
rm -rf "$SHADOW" && mkdir -p "$SHADOW/xnorlab/engine"
for f in xnorlab/*; do
  case "$(basename "$f")" in engine) ;; *) ln -s "$PWD/$f" "$SHADOW/xnorlab/";; esac
done
for f in xnorlab/engine/*; do
  case "$(basename "$f")" in _native*.so) ;; *) ln -s "$PWD/$f" "$SHADOW/xnorlab/engine/";; esac
done
cp "$BUILD"/_native*.so "$SHADOW/xnorlab/engine/"
ASAN_OPTIONS=detect_leaks=0 \
  LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
  "$PY" - "$PWD/$SHADOW" "$@" <<'PYEOF'
import os
import sys
shadow = sys.argv[1]
# Child processes (tests that start a fresh interpreter) import the installed optimized module,
# which must not run under the preloaded ASan runtime (its __cxa_throw interceptor aborts there).
os.environ.pop("LD_PRELOAD", None)
sys.meta_path = [f for f in sys.meta_path if "_editable_skbc" not in type(f).__module__]
sys.path.insert(0, shadow)
import pytest
import xnorlab.engine._native as native
assert native.__file__.startswith(shadow), native.__file__
print("ASan module:", native.__file__)
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "tests/engine", *sys.argv[2:]]))
PYEOF
