"""Moves between systems, following Airflow's ``transfers`` convention.

* :mod:`.cloudelements_to_storage`: Cloud Elements → object storage (bulk, paged and changed-records
  extracts);
* :mod:`.storage_to_sql`: object storage → SQL (the upsert operator and its load engine).

Shared by both: :mod:`.landing` (partition folders, atomic files, the manifest publishing rule) and
:mod:`.plan` (what an extract resolved before its first transfer).
"""
