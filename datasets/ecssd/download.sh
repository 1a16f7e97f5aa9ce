#!/usr/bin/env bash
# ECSSD -> ./ECSSD/{images,ground_truth_mask}. Run inside $DEEPCUT_DATA.
set -euo pipefail
mkdir -p ECSSD && cd ECSSD
base=https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD
for part in images ground_truth_mask; do
    wget -nc "$base/$part.zip"
    unzip -q -n "$part.zip" && rm "$part.zip"
done
echo "images: $(ls images | wc -l) (expect 1000), masks: $(ls ground_truth_mask | wc -l) (expect 1000)"
