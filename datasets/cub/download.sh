#!/usr/bin/env bash
# CUB-200-2011 + masks -> ./CUB/{CUB_200_2011,segmentations}. Run inside $DEEPCUT_DATA.
set -euo pipefail
mkdir -p CUB && cd CUB
wget -nc -O CUB_200_2011.tgz "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1"
wget -nc -O segmentations.tgz "https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz?download=1"
tar xzf CUB_200_2011.tgz && rm CUB_200_2011.tgz
tar xzf segmentations.tgz && rm segmentations.tgz
# ReDO's train/val/test split, for subset: test1000 (pinned commit).
wget -nc -O CUB_200_2011/train_val_test_split.txt \
    https://raw.githubusercontent.com/mickaelChen/ReDO/93e4a6e2c5654c0f5b090aafbd4c25ccb0969815/datasplits/cub/train_val_test_split.txt
echo "images: $(wc -l < CUB_200_2011/images.txt) (expect 11788)," \
     "test: $(awk '$2 == 0' CUB_200_2011/train_test_split.txt | wc -l) (expect 5794)," \
     "test1000: $(awk '$2 == 2' CUB_200_2011/train_val_test_split.txt | wc -l) (expect 1000)," \
     "masks: $(find segmentations -name '*.png' | wc -l) (expect 11788)"
