#!/usr/bin/env bash
# PASCAL VOC2012 trainval -> ./VOC2012/VOCdevkit/VOC2012. Run inside $DEEPCUT_DATA.
set -euo pipefail
mkdir -p VOC2012 && cd VOC2012
wget -nc http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar
tar xf VOCtrainval_11-May-2012.tar && rm VOCtrainval_11-May-2012.tar
echo "trainval: $(wc -l < VOCdevkit/VOC2012/ImageSets/Main/trainval.txt) (expect 11540)"
