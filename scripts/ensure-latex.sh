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
# The documents of derivations/ load only amsmath and amssymb: every file pdflatex reads
# (pdflatex -recorder, mapped with dpkg -S) comes from texlive-base or texlive-latex-base,
# so texlive-latex-base (~40 MB with its dependencies) and poppler-utils (pdftoppm) suffice.
apt-get install -y -qq --no-install-recommends \
  texlive-latex-base poppler-utils >/dev/null 2>&1
command -v pdflatex >/dev/null 2>&1
