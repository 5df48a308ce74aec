#!/bin/sh
# Regenerates the committed fixtures: runs every tests/gen/gen_*.py, in name
# order, from the repo root, with the pinned packages of tests/gen/requirements.txt.
# The venv .venv-gen is (re)created when missing or when requirements.txt
# changed since it was made (llama-cpp-python builds from source: needs cmake
# and a C++ compiler, and takes a while).
# Env: FM_GEN_PYTHON  use this interpreter instead of .venv-gen (the scripts
#                     check the versions they depend on themselves)
#      FM_NO_MODEL=1  do not fetch models/gemma-3-270m-q4_k_m.gguf (its
#                     reference table is then left as it is)
set -eu
cd "$(dirname "$0")/../.."
req=tests/gen/requirements.txt
if [ -n "${FM_GEN_PYTHON:-}" ]; then
  py=$FM_GEN_PYTHON
else
  venv=.venv-gen
  py=$venv/bin/python
  want=$(sha256sum "$req" | cut -d' ' -f1)
  have=$(cat "$venv/.requirements.sha256" 2>/dev/null || true)
  if [ ! -x "$py" ] || [ "$want" != "$have" ]; then
    echo "regen: creating $venv from $req"
    rm -rf "$venv"
    ${PYTHON:-python3} -m venv "$venv"
    "$py" -m pip install -q --disable-pip-version-check -r "$req"
    echo "$want" > "$venv/.requirements.sha256"
  fi
fi
model=models/gemma-3-270m-q4_k_m.gguf
if [ ! -e "$model" ] && [ "${FM_NO_MODEL:-0}" != 1 ]; then
  sh scripts/get-gemma.sh "$model"
fi
n=0
for g in tests/gen/gen_*.py; do
  [ -f "$g" ] || continue
  echo "regen: $g"
  "$py" "$g"
  n=$((n+1))
done
echo "regen: $n generators ran"
