"""Everything made up offline: the news corpus, the Cendol look-alike, the learnable tasks and their
templates, the base's general instruction data and the unseen QA task. Library code reads text only
through `difusi.synthetic.corpus`."""
