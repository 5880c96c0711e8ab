#!/usr/bin/env bash
# Install the Debian font packages the synthetic data engine draws with, if any is missing.
exec "$(dirname "$0")/ensure-debs.sh" fonts fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 fonts-freefont-ttf \
  fonts-urw-base35 fonts-dseg fonts-dotgothic16
