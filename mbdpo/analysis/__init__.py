"""Looking at runs: reading run directories, plots, latent embeddings and comparison reports.

Needs the ``plot`` extra (matplotlib, scikit-learn): ``pip install 'mbdpo[plot]'``.
"""
