"""Stage 3 of the course: the speech-to-speech transformer (notebooks 05 and 06).

- :mod:`~s2slib.s2s.tokens`: codec tokens of every utterance, cached by codec fingerprint.
- :mod:`~s2slib.s2s.config`: :class:`S2SConfig` and its presets (``smoke``, ``laptop``, ``gpu``).
- :mod:`~s2slib.s2s.delay`: the delay pattern over codebooks (MusicGen).
- :mod:`~s2slib.s2s.layers`: RoPE, attention with a KV cache, Conformer and decoder blocks.
- :mod:`~s2slib.s2s.model`: :class:`S2SModel`, the encoder-decoder over codec tokens.
- :mod:`~s2slib.s2s.data`: prompt/continuation batches.
- :mod:`~s2slib.s2s.train`: stage-1 pretraining (:class:`S2STrainer`).
- :mod:`~s2slib.s2s.generate`: sampling, generation and streaming audio.

Command line: ``python -m s2slib.s2s {tokenize,pretrain,generate} --help``.
"""
