"""DeepCut: unsupervised segmentation by GNN clustering of self-supervised ViT features."""
