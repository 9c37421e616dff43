"""SQL predicates of the loader's ordering rule (docs/reliability.md "Semantics").

Times are fixed-width normalised UTC text (``YYYY-MM-DDTHH:MM:SS.mmmZ``), so text comparison is time
order. Whole-second times (a paged ``snapshot_at``: the server ``Date`` floored to the second; QBE
``TimeModified`` and FreshBooks ``updated``: second resolution) stand for some instant of their second,
so they are compared to the second, and absence from a snapshot of the same second proves a version
gone only when it was certainly written before the snapshot.
"""

from __future__ import annotations


def beats(new: str, old: str) -> str:
    """Return the SQL predicate "version ``new`` wins over version ``old``".

    Both aliases have ``version_num``, ``observed_at``, ``updated_at``: the higher version number wins when
    both have one and they differ, else the later observed time, else the later updated time; missing
    times count as earliest and a full tie is false (the stored version stays). Observed times are
    compared to the second when either has no milliseconds (:func:`observed_key`).
    """
    kn, ko = observed_key(new, old), observed_key(old, new)
    return (
        f"(CASE WHEN {new}.version_num IS NOT NULL AND {old}.version_num IS NOT NULL "
        f"AND {new}.version_num <> {old}.version_num THEN {new}.version_num > {old}.version_num "
        f"WHEN {kn} <> {ko} THEN {kn} > {ko} "
        f"ELSE COALESCE({new}.updated_at, '') > COALESCE({old}.updated_at, '') END)"
    )


def observed_key(alias: str, other: str) -> str:
    """Return SQL for ``alias.observed_at`` as :func:`beats` compares it with ``other.observed_at``.

    A K without milliseconds (a paged ``snapshot_at``, or a whole-second u) stands for some instant of its
    second, so against it only the seconds count, and u decides a tie: a newer edit a paged extract saw
    (K = the second's start) does not lose to an older edit a bulk job saw earlier in that second (K = its
    ``createdDate``, with milliseconds).
    """
    coarse = f"({whole_second(f'{alias}.observed_at')} OR {whole_second(f'{other}.observed_at')})"
    value = f"COALESCE({alias}.observed_at, '')"
    return f"(CASE WHEN {coarse} THEN substr({value}, 1, 19) ELSE {value} END)"


def whole_second(value: str) -> str:
    """Return the SQL predicate "the normalised time ``value`` (may be NULL) has no sub-second part"."""
    return f"substr(COALESCE({value}, ''), 21, 3) = '000'"


def written_by(updated: str) -> str:
    """Return SQL for the latest instant a version with updated time ``updated`` can have been written.

    That is the time itself, or the last millisecond of its second when it has no sub-second part (QBE
    ``TimeModified``, FreshBooks ``updated``); ``''`` when ``updated`` is NULL.
    """
    return (
        f"(CASE WHEN {updated} IS NULL THEN '' WHEN {whole_second(updated)} "
        f"THEN substr({updated}, 1, 20) || '999Z' ELSE {updated} END)"
    )


def absence_proves(observed: str, updated: str, bound: str) -> str:
    """Return the SQL predicate "a complete snapshot at ``bound`` that lacks the record proves this version gone".

    The rule is d = s >= K (``observed_at``), and K must order the version before the snapshot. K from
    whole seconds does not order it within its second: a record created or restored after a page was
    read, in the same second, has K = s and is live although the snapshot lacks it. Such a version is
    proven gone only when it was written before s (:func:`written_by` < s); otherwise the next complete
    snapshot decides. K with milliseconds (a bulk ``createdDate``, a QBO epoch-ms u) orders it.
    """
    return (
        f"(COALESCE({observed}, '') <= {bound} AND (NOT {whole_second(observed)} OR {written_by(updated)} < {bound}))"
    )
