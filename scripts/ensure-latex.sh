#!/usr/bin/env bash
# Install a minimal LaTeX toolchain (pdflatex, pdftoppm) from Debian's packages
# when it is missing and we are allowed to (root with apt-get). Never fails the build.
set -u
if command -v pdflatex >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-latex: not root or no apt-get; skipping LaTeX install" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends \
  texlive-latex-base texlive-latex-recommended texlive-latex-extra poppler-utils >/dev/null 2>&1
command -v pdflatex >/dev/null 2>&1
