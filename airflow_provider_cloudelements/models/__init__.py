"""Shared models of the provider (no Airflow imports): bulk status, window, manifest, event filter, timestamps.

* :mod:`.status`: :class:`~.status.CloudElementsBulkJobStatus`;
* :mod:`.window`: :class:`~.window.ExtractWindow` and the window arithmetic;
* :mod:`.manifest`: :class:`~.manifest.ExtractManifest` (extract → load XCom, manifest v2);
* :mod:`.events`: :func:`~.events.event_matches`, the one event filter;
* :mod:`.timestamps`: :func:`~.timestamps.parse_timestamp`, the one timestamp parser.

Element specs live in :mod:`airflow_provider_cloudelements.utils.elements` and the catalog in
:mod:`airflow_provider_cloudelements.catalog`.
"""
