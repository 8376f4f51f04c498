"""What the encoder and the decoder share: the model they run, the rates, the reference buffers
filled with what the decoder reconstructs, the frame geometry, and the HEVC intra coder when it
codes the I-frames. :class:`canfvc_codec.encoder.gop.Encoder` and
:class:`canfvc_codec.codec.Decoder` both build on :class:`Engine`, so that their references
cannot drift apart.
"""

from __future__ import annotations

import torch

from canfvc_codec.bitstream import INTRA
from canfvc_codec.hevc import HevcIntra
from canfvc_codec.io import VideoInfo
from canfvc_codec.io.color import rgb_to_yuv, yuv_to_rgb
from canfvc_codec.io.frame import Frame
from canfvc_codec.networks.video import References, VideoModel, pad_to_multiple, to_reference
from canfvc_codec.numerics import DEFAULT_NUMERICS, Numerics
from canfvc_codec.rates import Rates


class Engine:
    """State shared by the encoder and the decoder: model, the stream's rates, references,
    geometry, and the HEVC intra coder when it codes the I-frames (``hevc``; None: the model's
    ANFIC coder)."""

    def __init__(
        self,
        model: VideoModel,
        rates: Rates,
        width: int,
        height: int,
        device: torch.device,
        numerics: Numerics = DEFAULT_NUMERICS,
        hevc: HevcIntra | None = None,
    ) -> None:
        # Large frames are computed in stripes so that decoding memory stays bounded.
        self.model = numerics.prepare(model, device)
        self.rates = rates
        self.width, self.height = width, height
        self.device, self.dtype = device, numerics.dtype
        self.refs: References | None = None
        self.hevc = hevc
        self._planes: Frame | None = None  # the last frame's HEVC intra picture, if it was one

    def _hevc_reconstruction(self, planes: Frame) -> torch.Tensor:
        """An HEVC intra picture as the padded RGB frame x̂ that the references are made of:
        converted in float64 on the CPU, so that the encoder and any decoder, on any device, get
        the same 8-bit reference from the same (bit-exact) picture."""
        assert self.hevc is not None
        rgb = yuv_to_rgb(planes, self.hevc.info, dtype=torch.float64)
        return pad_to_multiple(rgb[None]).to(self.device, self.dtype)

    def output_planes(self, reconstruction: torch.Tensor, info: VideoInfo) -> Frame:
        """The YUV planes the decoder writes for the frame just coded: an HEVC I-frame's own
        picture, any other frame's ``reconstruction`` converted to ``info``'s format."""
        return self._planes if self._planes is not None else rgb_to_yuv(reconstruction, info)

    def _output(
        self,
        frame_type: str,
        x_hat: torch.Tensor,
        flow_hat: torch.Tensor | None,
        planes: Frame | None = None,
    ) -> torch.Tensor:
        """Store the decoded frame (and flow) as references; return it cropped, (3, H, W).
        ``planes``: the HEVC intra picture ``x_hat`` was converted from."""
        self._planes = planes
        reference = to_reference(x_hat)
        if frame_type == INTRA:
            self.refs = References([reference])
        else:
            assert self.refs is not None and flow_hat is not None
            self.refs = self.refs.push(reference, flow_hat)
        return reference[0, :, : self.height, : self.width]
