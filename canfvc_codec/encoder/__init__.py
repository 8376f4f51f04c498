"""The encoder's decisions, apart from the model: what the decoder never needs to know.

- ``gop``: the encoder side of the GOP loop (frame types, the P-frame's parts composed with the
  encoder's flow and latents);
- ``motion``: the motion search (DIS optical flow, or the model's SPyNet);
- ``refine``: encoder-side latent refinement, and the float32 copy that computes the analysis;
- ``schedule``: where I-frames go (intra period, adaptive intra);
- ``presets``: named trade-offs of encoding time against bits;
- ``options``: ``EncodeOptions``, what ``canfvc encode`` asks of
  :func:`canfvc_codec.codec.encode_video`.

Importing this package imports nothing: ``presets``, ``schedule`` and ``motion`` are torch-free,
so that the command line lists their choices without loading the networks.
"""
