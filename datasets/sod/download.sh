#!/usr/bin/env bash
# SOD: BSDS300 images + SOD masks -> ./SOD/{images,masks}. Run inside $DEEPCUT_DATA.
set -euo pipefail
commit=b4696d6846611529ff5a246ff892a4fd548a70c2   # ArcherFMY/sal_eval_toolbox
mkdir -p SOD/images SOD/masks && cd SOD
wget -nc https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/BSDS300-images.tgz
wget -nc -O toolbox.tar.gz "https://github.com/ArcherFMY/sal_eval_toolbox/archive/$commit.tar.gz"
tar xzf BSDS300-images.tgz
tar xzf toolbox.tar.gz "sal_eval_toolbox-$commit/tools/GroundTruth/SOD"
cp "sal_eval_toolbox-$commit/tools/GroundTruth/SOD/"*.png masks/
for mask in masks/*.png; do
    id=$(basename "$mask" .png)
    cp BSDS300/images/*/"$id.jpg" images/
done
rm -rf BSDS300 BSDS300-images.tgz toolbox.tar.gz "sal_eval_toolbox-$commit"
echo "images: $(ls images | wc -l) (expect 300), masks: $(ls masks | wc -l) (expect 300)"
