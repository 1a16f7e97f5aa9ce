#!/usr/bin/env bash
# DUTS-TE -> ./DUTS-TE/{DUTS-TE-Image,DUTS-TE-Mask}. Run inside $DEEPCUT_DATA.
set -euo pipefail
wget -nc http://saliencydetection.net/duts/download/DUTS-TE.zip
unzip -q -n DUTS-TE.zip && rm DUTS-TE.zip
echo "images: $(ls DUTS-TE/DUTS-TE-Image | wc -l) (expect 5019), masks: $(ls DUTS-TE/DUTS-TE-Mask | wc -l) (expect 5019)"
