"""The lab: research harnesses and model-card bookkeeping, apart from the product.

Nothing in the codec, ``canfvc eval`` or training imports this package; it imports them. Each
harness is one command (``python -m canfvc_codec.lab`` lists them):

    python -m canfvc_codec.lab.estimate      RD estimated from the forward pass (follows training)
    python -m canfvc_codec.lab.card          a model card's measured half, from estimates and runs
    python -m canfvc_codec.lab.flow          motion searches' warp PSNR; where P-frame bits go
    python -m canfvc_codec.lab.intra_share   what P-frames cost against I-frames of the same picture
    python -m canfvc_codec.lab.ceiling       what the intra transforms reach at any rate, against λ
    python -m canfvc_codec.lab.determinism   decoding under other numerical paths and devices
    python -m canfvc_codec.lab.memory        decode peak memory per size, memory over a long encode
    python -m canfvc_codec.lab.entropy       the range coder's throughput
    python -m canfvc_codec.lab.bench         `make bench`: entropy coder, speed, dev RD evaluation
    python -m canfvc_codec.lab.binary_intra  the intra phase trained with binary latents (dm1/dm2)
    python -m canfvc_codec.lab.differential_modulation
                                             binary quantisers against rounding on a small model
    python -m canfvc_codec.lab.bd_between    BD-rate of one model against another, from RD records
    python -m canfvc_codec.lab.score_streams streams coded outside canfvc eval, scored as its record
    python -m canfvc_codec.lab.fit_intra_qp  the λ -> QP line of HEVC intra I-frames
    python -m canfvc_codec.lab.cli_speed     encode and decode seconds per frame, command line
    python -m canfvc_codec.lab.tree_peak_rss a command's wall time and process-tree peak memory
    python -m canfvc_codec.lab.train_speed   training steps per hour of configurations, by phase
    python -m canfvc_codec.lab.train_data_throughput
                                             the training data pipeline's batches per second

The wheel leaves the lab out: it runs from a checkout (``make install`` or ``PYTHONPATH=.``).
"""

# (command, what it does), in the order of the docstring above; `python -m canfvc_codec.lab`.
HARNESSES = (
    ("estimate", "RD estimated from the forward pass (follows training)"),
    ("card", "a model card's measured half, from estimates and runs"),
    ("flow", "motion searches' warp PSNR; where P-frame bits go"),
    ("intra_share", "what P-frames cost against I-frames of the same picture"),
    ("ceiling", "what the intra transforms reach at any rate, against λ"),
    ("determinism", "decoding under other numerical paths and devices"),
    ("memory", "decode peak memory per size, memory over a long encode"),
    ("entropy", "the range coder's throughput"),
    ("bench", "`make bench`: entropy coder, speed, dev RD evaluation"),
    ("binary_intra", "the intra phase trained with binary latents (dm1/dm2)"),
    ("differential_modulation", "binary quantisers against rounding on a small model"),
    ("bd_between", "BD-rate of one model against another, from RD records"),
    ("score_streams", "streams coded outside canfvc eval, scored as its record"),
    ("fit_intra_qp", "the λ -> QP line of HEVC intra I-frames"),
    ("cli_speed", "encode and decode seconds per frame, command line"),
    ("tree_peak_rss", "a command's wall time and whole-process-tree peak memory"),
    ("train_speed", "training steps per hour of two configurations, by phase"),
    ("train_data_throughput", "the training data pipeline's batches per second"),
)
