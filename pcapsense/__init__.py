"""pcapsense: why did my HTTP connection die? Reads a packet capture, rebuilds every TCP
connection's state machine on both ends and says who closed it, how and when.

    >>> import pcapsense
    >>> result = pcapsense.analyze("capture.pcap")
    >>> result.connections            # pandas DataFrame, one row per TCP connection
"""

from .analysis import Analysis, Capture, analyze
from .capture.reader import CaptureError

__all__ = ["analyze", "Analysis", "Capture", "CaptureError", "__version__"]
__version__ = "0.1.0"
