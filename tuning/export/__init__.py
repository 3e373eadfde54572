"""Exporting a searched model: `export` (`writer`) writes ``model.keras``, the TensorFlow formats
(`formats`) and a model card (`card`), from a model rebuilt from the run folder (`restore`).
``python -m tuning.export`` (`__main__`)."""

from .formats import FORMATS
from .writer import ExportResult, export

__all__ = ["ExportResult", "FORMATS", "export"]
