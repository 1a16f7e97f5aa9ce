#!/usr/bin/env bash
# DUT-OMRON -> ./DUT-OMRON/{DUT-OMRON-image,pixelwiseGT-new-PNG}. Run inside $DEEPCUT_DATA.
set -euo pipefail
mkdir -p DUT-OMRON && cd DUT-OMRON
for zip in DUT-OMRON-image.zip DUT-OMRON-gt-pixelwise.zip.zip; do
    wget -nc "http://saliencydetection.net/dut-omron/download/$zip"
    unzip -q -n "$zip" && rm "$zip"
done
rm -rf __MACOSX
echo "images: $(ls DUT-OMRON-image | wc -l) (expect 5168), masks: $(ls pixelwiseGT-new-PNG | wc -l) (expect 5168)"
