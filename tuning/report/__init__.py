"""Reports of finished searches: one run's (`single`: ``results/<name>/report/``), several runs
compared (`comparison`), the anytime curves both draw (`curves`) and what every plot shares
(`plots`). ``python -m tuning.report`` (`__main__`)."""

from .comparison import write_comparison
from .single import of_workers, write_report

__all__ = ["of_workers", "write_comparison", "write_report"]
