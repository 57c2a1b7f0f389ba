"""firegate panel dialect plugin: notifier3030."""

from firegate_codec_notifier3030.codec import Notifier3030Codec

__all__ = ["Notifier3030Codec"]
