"""Apache Airflow provider for Cloud Elements (Finance hub: QuickBooks Online, QuickBooks Enterprise, FreshBooks)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
