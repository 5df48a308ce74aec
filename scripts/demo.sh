#!/bin/sh
# make demo: convert the Gemma 3 270M GGUF to an fm bundle, verify it, and
# generate text from a prompt. Usage: demo.sh MODEL.gguf
set -e
BUILD=${BUILD:-build}
MODEL=$1
OUT=${MODEL%.gguf}.fmb
# Gemma 3 270M here is the pretrained (not instruction-tuned) model: give it
# text to continue rather than a chat turn.
PROMPT=${FM_DEMO_PROMPT:-"Once upon a time, in a small village by the sea,"}
echo "== fm-convert $MODEL -> $OUT"
"$BUILD"/fm-convert "$MODEL" -o "$OUT" --force
echo "== fm-verify $OUT"
"$BUILD"/fm-verify "$OUT"
echo "== fm-run $OUT -p \"$PROMPT\" -n 96"
"$BUILD"/fm-run "$OUT" -p "$PROMPT" -n 96
echo
