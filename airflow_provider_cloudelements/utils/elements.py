"""What the client knows about each Finance-hub element (reference §2.2.2, §3.2, §3.4, §3.5, §5).

One :class:`ElementSpec` per element key. The hook's CEQL builder, the operators' incremental
windows and the create-instance validation read it; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_provider_cloudelements.catalog import (
    FRESHBOOKS_CLASSIC_ALL_RESOURCES,
    FRESHBOOKS_RESOURCES,
    FRESHBOOKS_V2_ALL_RESOURCES,
    QBE_ALL_RESOURCES,
    QBE_RESOURCES,
    QBO_ALL_RESOURCES,
    QBO_RESOURCES,
)
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError


@dataclass(frozen=True)
class ElementSpec:
    """Client-side facts about one element.

    :param key: element key used in ``POST /instances`` (``element.key``).
    :param name: display name.
    :param resources: the element's polling resources (reference §5.2): the provider's defaults when a
        DAG syncs "everything" (the example DAGs, the demo). Every one is also in ``all_resources``.
    :param all_resources: every record resource of the reference §3.2 matrix for the element: what
        :func:`check_resource` accepts (extracts, uploads, record calls). Defaults to ``resources``.
    :param updated_field: record field holding the last-modified time (CEQL name; dotted names are
        backtick-quoted by the CEQL builder).
    :param ceql_date_format: how dates are written in CEQL literals for ``updated_field``:
        ``"iso"`` (``2024-01-31T10:00:00.000Z``), ``"iso_offset"`` (``yyyy-MM-dd'T'HH:mm:ssXXX``) or
        ``"date"`` (``yyyy-MM-dd``, day precision: the client filters the rest).
    :param supports_or: whether CEQL ``OR`` is accepted (QuickBooks Online: no, reference §3.4).
    :param required_configuration: groups of configuration keys; a body must satisfy one group.
    :param required_provider_data: provider data keys each group needs (same order as above).
    :param event_modes: ``polling`` and/or ``webhook`` (reference §3.2, last paragraph).
    :param soft_delete_field: field marking a record inactive/deleted without removing it.
    :param naive_timezone: IANA zone of date-times written without an offset (FreshBooks ``updated``).
        The reference does not document FreshBooks' zone; UTC is assumed. It is only the default of the
        one ``naive_timezone`` parameter of the extract and SQL load operators (the extract records the
        zone it used in its manifest, the loader reads the manifest's zone unless told otherwise).
    :param version_field: field holding the record's own version number, an integer that grows on every
        change (QuickBooks Online ``syncToken``, QuickBooks Enterprise ``EditSequence``); ``None`` when
        the element has none (FreshBooks). Read with
        :func:`~airflow_provider_cloudelements.utils.records.record_version`.
    """

    key: str
    name: str
    resources: tuple[str, ...]
    updated_field: str
    ceql_date_format: str
    supports_or: bool
    required_configuration: tuple[tuple[str, ...], ...]
    required_provider_data: tuple[tuple[str, ...], ...] = ((),)
    event_modes: tuple[str, ...] = ("polling",)
    soft_delete_field: str | None = None
    naive_timezone: str = "UTC"
    version_field: str | None = None
    id_fields: tuple[str, ...] = ("id",)
    extra: dict[str, str] = field(default_factory=dict)
    all_resources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        missing = [r for r in self.resources if r not in self.all_resources]
        if self.all_resources and missing:
            raise ValueError(f"{self.key}: polling resources missing from all_resources: {missing}")
        if not self.all_resources:
            object.__setattr__(self, "all_resources", self.resources)


ELEMENTS: dict[str, ElementSpec] = {
    "quickbooks": ElementSpec(
        key="quickbooks",
        name="QuickBooks Online",
        resources=QBO_RESOURCES,
        all_resources=QBO_ALL_RESOURCES,
        updated_field="metaData.lastUpdatedTime",
        ceql_date_format="iso",
        supports_or=False,
        # OAuth2 (code + realmId), or legacy OAuth1 (oauth_token + verifier + secret), reference §2.2.2
        required_configuration=(
            ("oauth.api.key", "oauth.api.secret", "oauth.callback.url"),
            ("oauth.api.key", "oauth.api.secret", "oauth.callback.url"),
        ),
        required_provider_data=(("code", "realmId"), ("oauth_token", "oauth_verifier", "secret", "realmId")),
        event_modes=("polling", "webhook"),
        soft_delete_field="active",
        version_field="syncToken",
    ),
    "quickbooksonprem": ElementSpec(
        key="quickbooksonprem",
        name="QuickBooks Enterprise",
        resources=QBE_RESOURCES,
        all_resources=QBE_ALL_RESOURCES,
        updated_field="TimeModified",
        ceql_date_format="iso_offset",
        supports_or=True,
        required_configuration=(("app.name", "host.ip"),),
        event_modes=("polling",),
        soft_delete_field="IsActive",
        version_field="EditSequence",
        id_fields=("ListID", "TxnID"),
    ),
    "freshbooksv2": ElementSpec(
        key="freshbooksv2",
        name="FreshBooks Cloud Accounting",
        resources=FRESHBOOKS_RESOURCES,
        all_resources=FRESHBOOKS_V2_ALL_RESOURCES,
        updated_field="updated",
        ceql_date_format="date",
        supports_or=True,
        required_configuration=(("oauth.api.key", "oauth.api.secret", "oauth.callback.url", "business.name"),),
        required_provider_data=(("code",),),
        event_modes=("webhook",),
        soft_delete_field="vis_state",
    ),
    "freshbooks": ElementSpec(
        key="freshbooks",
        name="FreshBooks Classic",
        resources=FRESHBOOKS_RESOURCES,
        all_resources=FRESHBOOKS_CLASSIC_ALL_RESOURCES,
        updated_field="updated",
        ceql_date_format="date",
        supports_or=True,
        required_configuration=(("oauth.api.key", "oauth.api.secret", "freshbooks.site.address"),),
        required_provider_data=(("oauth_token", "oauth_verifier", "secret"),),
        event_modes=("webhook",),
        soft_delete_field="vis_state",
    ),
}


def get_element(key: str) -> ElementSpec:
    """Return the :class:`ElementSpec` for ``key``.

    :raises CloudElementsConfigError: for an unknown element key (before any network call).
    """
    try:
        return ELEMENTS[key]
    except KeyError:
        known = ", ".join(sorted(ELEMENTS))
        raise CloudElementsConfigError(f"Unknown element key {key!r}; known Finance-hub elements: {known}") from None


def check_resource(element_key: str, resource: str) -> None:
    """Check ``resource`` against the element's :attr:`ElementSpec.all_resources` (reference §3.2).

    :raises CloudElementsConfigError: if ``resource`` is not a Finance-hub resource of the element (the
        message lists the supported ones).
    """
    spec = get_element(element_key)
    if resource not in spec.all_resources and not _is_common_resource(resource, spec.key):
        raise CloudElementsConfigError(
            f"Resource {resource!r} is not supported for element {element_key!r}; "
            f"supported: {', '.join(spec.all_resources)}"
        )


def _is_common_resource(resource: str, element_key: str) -> bool:
    """A common resource the element maps (issue 15: served through a transformation, ``common_model``)."""
    from airflow_provider_cloudelements.common_model import is_common_resource  # lazy: it imports this module

    return is_common_resource(resource, element_key)
