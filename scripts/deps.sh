#!/bin/sh
# Installs fm's build dependencies from Debian packages when they are missing.
set -e
need=""
pkg-config --exists libarchive 2>/dev/null || need="$need libarchive-dev"
pkg-config --exists libzstd 2>/dev/null    || need="$need libzstd-dev"
pkg-config --exists libcrypto 2>/dev/null  || need="$need libssl-dev"
pkg-config --exists jansson 2>/dev/null    || need="$need libjansson-dev"
command -v pkg-config >/dev/null 2>&1      || need="$need pkg-config"
command -v python3 >/dev/null 2>&1         || need="$need python3 python3-venv"
if [ -n "$need" ]; then
  echo "deps: installing$need"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need pkg-config >/dev/null
fi
echo "deps: ok"
