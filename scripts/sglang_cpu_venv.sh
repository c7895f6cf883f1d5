#!/usr/bin/env bash
# Build the SGLang CPU venv (idempotent), optionally smoke-test a server on SmolLM2-135M.
#
#   bash scripts/sglang_cpu_venv.sh            # build into $SGLANG_VENV or .cache/sglang-venv (~2 min)
#   bash scripts/sglang_cpu_venv.sh --smoke    # build if needed, then launch a server, check /health
#                                              # and one chat completion, shut it down (~1 min)
#   bash scripts/sglang_cpu_venv.sh --rebuild  # delete the venv and build it again
#
# Why a venv of its own: `pip install sglang` pulls CUDA torch, ~40 nvidia packages and triton, and
# its transformers pin conflicts with verl's. Every package is installed --no-deps from the exact pins
# in scripts/sglang-cpu-pins.txt (torch==2.13.0+cpu comes from local disk through pip's find-links).
# SGLang imports three modules at start-up that it never calls on CPU (vllm._custom_ops, torchvision,
# triton); import-only stand-ins are written into the venv's site-packages (see offline-assets notes).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SGLANG_VENV:-$ROOT/.cache/sglang-venv}
PINS=$ROOT/scripts/sglang-cpu-pins.txt
BASE_PYTHON=${SGLANG_BASE_PYTHON:-python3}
MAIN_PYTHON=${MAIN_PYTHON:-$ROOT/.venv/bin/python}
STUBS_VERSION=1

mode=build
case "${1:-}" in
  "") ;;
  --smoke) mode=smoke ;;
  --rebuild) mode=rebuild ;;
  -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
  *) echo "unknown argument: $1 (use --smoke, --rebuild or --help)" >&2; exit 2 ;;
esac

stamp_value() { echo "pins=$(sha256sum "$PINS" | cut -d' ' -f1) stubs=$STUBS_VERSION"; }
STAMP=$VENV/.verl-ext-stamp

is_built() {
  [[ -f $STAMP ]] && [[ "$(cat "$STAMP")" == "$(stamp_value)" ]] && [[ -x $VENV/bin/python ]]
}

write_stubs() {
  local site
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$site/vllm" "$site/torchvision" "$site/triton"
  # One generic import-only mock, after SGLang's own sglang/_platform_stubs.py (_MockModule +
  # a meta-path finder): every attribute and submodule exists; calling one is a no-op decorator.
  cat >"$site/_verl_ext_import_stubs.py" <<'PY'
"""Import-only stand-ins written by verl-ext's scripts/sglang_cpu_venv.sh (SGLang on CPU imports
triton and torchvision but never runs them there). Pattern from sglang/_platform_stubs.py."""
import importlib.machinery
import sys
import types


class StubBase:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)


class MockModule(types.ModuleType):
    def __init__(self, name):
        super().__init__(name)
        self.__path__ = []
        self.__package__ = name
        self.__file__ = __file__
        self.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        full = f"{self.__name__}.{name}"
        if full in sys.modules:
            return sys.modules[full]
        if name[:1].isupper():
            value = type(name, (StubBase,), {"__module__": self.__name__})
        else:
            value = make(full)
        setattr(self, name, value)
        return value

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda fn: fn

    def __bool__(self):
        return False

    def __iter__(self):
        return iter([])

    def __repr__(self):
        return f"<import-only stub {self.__name__!r}>"


def make(name):
    mod = MockModule(name)
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, mod)
    return mod


class Finder:
    def __init__(self, root):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(self.root + "."):
            return (sys.modules.get(fullname) or make(fullname)).__spec__
        return None


def install(root):
    """Replace the importing package ``root`` by a mock and serve its submodules."""
    sys.meta_path.insert(0, Finder(root))
    return make(root)
PY
  cat >"$site/vllm/__init__.py" <<'PY'
"""Import-only stand-in (verl-ext sglang_cpu_venv.sh): SGLang imports vllm._custom_ops on CPU."""
PY
  cat >"$site/vllm/_custom_ops.py" <<'PY'
"""Import-only stand-in: SGLang's CPU path runs forward_native and never calls these."""


def _unavailable(name):
    def fn(*args, **kwargs):
        raise NotImplementedError(f"vllm._custom_ops.{name} is an import-only stub in the SGLang CPU venv")

    fn.__name__ = name
    return fn


rotary_embedding = _unavailable("rotary_embedding")
rms_norm = _unavailable("rms_norm")
fused_add_rms_norm = _unavailable("fused_add_rms_norm")
awq_dequantize = _unavailable("awq_dequantize")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _unavailable(name)
PY
  cat >"$site/torchvision/__init__.py" <<'PY'
"""Import-only stand-in (verl-ext sglang_cpu_venv.sh): PyPI's torchvision is CUDA-linked and breaks
on CPU torch; SGLang imports it even for text models."""
import enum

import _verl_ext_import_stubs as _stubs

_tv = _stubs.install(__name__)
_tv.__version__ = "0.0.0+stub"


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


_tv.transforms.InterpolationMode = InterpolationMode
_tv.transforms.functional.InterpolationMode = InterpolationMode
PY
  cat >"$site/triton/__init__.py" <<'PY'
"""Import-only stand-in (verl-ext sglang_cpu_venv.sh), shaped like sglang/_platform_stubs.py's."""
import _verl_ext_import_stubs as _stubs

_t = _stubs.install(__name__)
_t.__version__ = "3.0.0"
_t.cdiv = lambda a, b: -(a // -b)
_t.next_power_of_2 = lambda n: 1 << (n - 1).bit_length() if n > 0 else 1


class Config:
    def __init__(self, kwargs=None, num_warps=4, num_stages=2, **extra):
        self.kwargs, self.num_warps, self.num_stages = kwargs or {}, num_warps, num_stages


class constexpr:
    def __init__(self, value=None):
        self.value = value


class JITFunction:
    pass


class OutOfResources(Exception):
    pass


class PTXASError(Exception):
    pass


_t.Config = Config
_t.language.constexpr = constexpr
_t.runtime.jit.JITFunction = JITFunction
_t.runtime.autotuner.OutOfResources = OutOfResources
_t.runtime.autotuner.PTXASError = PTXASError
_t.runtime.cache.triton_key = lambda: "triton-stub"
_t.compiler.compiler.triton_key = lambda: "triton-stub"
PY
}

build() {
  if [[ ! -f $PINS ]]; then echo "error: $PINS is missing" >&2; exit 1; fi
  if ! ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1 && ! pip config list 2>/dev/null | grep -q find-links; then
    echo "warning: no local torch-2.13.0+cpu wheel found; pip must find torch==2.13.0+cpu itself" >&2
  fi
  rm -f "$STAMP"
  if [[ ! -x $VENV/bin/python ]]; then
    echo "creating $VENV"
    mkdir -p "$(dirname "$VENV")"
    "$BASE_PYTHON" -m venv "$VENV"
  fi
  echo "installing $(grep -c . "$PINS") pinned packages --no-deps (about 80 s)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$PINS"
  write_stubs
  "$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import torch, triton, torchvision, vllm._custom_ops  # noqa: F401  (the stand-ins import)
from torchvision.transforms import InterpolationMode  # noqa: F401
assert torch.__version__.startswith("2.13.0") and "+cpu" in torch.__version__, torch.__version__
print("sglang", md.version("sglang"), "torch", torch.__version__, "transformers", md.version("transformers"))
PY
  stamp_value >"$STAMP"
  echo "SGLang CPU venv ready: $VENV"
}

smoke() {
  local model
  model=$("$MAIN_PYTHON" -m verl_ext.assets smollm2 | tail -n 1)
  echo "smoke test: launching SGLang on $model"
  (cd "$ROOT" && "$MAIN_PYTHON" -m verl_ext_eval.backends.openai_server smoke \
      --python "$VENV/bin/python" --model-path "$model")
}

if [[ $mode == rebuild ]]; then rm -rf "$VENV"; mode=build; fi
if is_built; then
  echo "SGLang CPU venv up to date: $VENV"
else
  build
fi
if [[ $mode == smoke ]]; then smoke; fi
