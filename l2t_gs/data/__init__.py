"""Datasets: VOCASET/BIWI loaders and the project corpus."""
