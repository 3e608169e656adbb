"""The seed's data pipeline: Cendol source, normalise, scan (subset filter, de-duplication), stratify,
embed, cluster, select, prepare (the stages in order), data card, chat format."""
