#!/usr/bin/env bash
# COCO 2014 train images + annotations -> ./COCO, the COCO20k list -> ./coco20k. Run inside $DEEPCUT_DATA.
set -euo pipefail
mkdir -p COCO coco20k
cd COCO
wget -nc http://images.cocodataset.org/zips/train2014.zip
unzip -q -n train2014.zip && rm train2014.zip
wget -nc http://images.cocodataset.org/annotations/annotations_trainval2014.zip
unzip -q -n annotations_trainval2014.zip annotations/instances_train2014.json && rm annotations_trainval2014.zip
cd ../coco20k
# LOST's list of the 19817 images, as shipped (unchanged) in TokenCut's repository.
wget -nc https://raw.githubusercontent.com/YangtaoWANG95/TokenCut/ce70ed6176b1876212f0a3d1144d28507c81427d/datasets/coco_20k_filenames.txt
echo "listed: $(wc -l < coco_20k_filenames.txt) (expect 19817), train2014 images: $(ls ../COCO/train2014 | wc -l) (82783)"
