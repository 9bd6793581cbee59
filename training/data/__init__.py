"""Training data: the synthetic corpus, datasets in VOCASET/BIWI layout, splits, teacher video, mouth crops."""
