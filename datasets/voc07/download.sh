#!/usr/bin/env bash
# PASCAL VOC2007 trainval -> ./VOC2007/VOCdevkit/VOC2007. Run inside $DEEPCUT_DATA.
set -euo pipefail
mkdir -p VOC2007 && cd VOC2007
wget -nc http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar
tar xf VOCtrainval_06-Nov-2007.tar && rm VOCtrainval_06-Nov-2007.tar
echo "trainval: $(wc -l < VOCdevkit/VOC2007/ImageSets/Main/trainval.txt) (expect 5011)"
