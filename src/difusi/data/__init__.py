"""Data preparation: Cendol loading, filtering, sampling, clustering, chat formatting."""
