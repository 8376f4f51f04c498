"""``canfvc eval``: canfvc against conventional codecs (command, runner, anchors, config, metrics,
BD-rate, report) and ``python -m canfvc_codec.eval.merge``, which joins runs into one report.
Research harnesses live in :mod:`canfvc_codec.lab`."""
