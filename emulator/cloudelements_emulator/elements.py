"""Element catalog of the emulator: keys, ids, resources and per-element conventions.

Reference §2.2.2 (element keys/ids, create bodies), §3.2 (resource matrix), §3.3 (paging), §3.4
(CEQL specifics), §3.5 (record conventions), §5.2/§5.3 (event modes).

Per-element choices (documented here once, cited elsewhere):

* ``pageSize`` caps: QuickBooks Online 1000 (Intuit ``maxresults``), QuickBooks Enterprise 500,
  FreshBooks (both) 100 (``pagination.max`` of the classic element). The default page size is
  ``min(200, cap)``; above the cap the page is silently truncated and ``Elements-Error`` is set.
* Paging style: QBO and FreshBooks accept ``page`` (1-based) *and* ``nextPage``; QBE is cursor-only
  (``page`` > 1 → 400). ``Elements-Next-Page-Token`` is emitted by every element.
* Delete policy: QBO list entities, QBE lists and FreshBooks customers/invoices/payments/items are
  *soft* deleted (``active=false`` / ``IsActive=false`` / ``vis_state=1``, updated time bumped);
  transactions (QBO/QBE) and FreshBooks taxes are *hard* deleted (removed from queries; a tombstone
  is kept for ``EmulatorState.records(include_deleted=True)``).
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
    QBO_PATH_ALIASES,
    QBO_RESOURCES,
)

QBO_LISTS = frozenset(
    {
        "classes",
        "credit-terms",
        "currencies",
        "customers",
        "departments",
        "employees",
        "ledger-accounts",
        "payment-methods",
        "products",
        "tax-agencies",
        "tax-codes",
        "tax-rates",
        "vendors",
    }
)
#: QBO resources with one record per company: no create or delete (405), PATCH with the sync token.
QBO_SINGLETONS = frozenset({"company-info", "preferences"})
#: QBE list objects (``ListID``); every other QBE resource is a transaction (``TxnID``).
QBE_LISTS = frozenset(
    {
        "classes",
        "credit-terms",
        "currencies",
        "customers",
        "employees",
        "inventory-sites",
        "ledger-accounts",
        "payment-methods",
        "payroll-wage-items",
        "products",
        "tax-codes",
        "tax-rates",
        "vendors",
    }
)
FRESHBOOKS_SOFT = frozenset({"customers", "invoices", "payments", "items", "vendors"})

#: Fields a create (hub POST, bulk upload) must carry, per style and resource; anything else is optional.
_REQUIRED_QBO: dict[str, tuple[str, ...]] = {
    "customers": ("displayName",),
    "vendors": ("displayName",),
    "employees": ("givenName",),
    "invoices": ("customerRef",),
    "estimates": ("customerRef",),
    "credit-memos": ("customerRef",),
    "refund-receipts": ("depositToAccountRef",),
    "payments": ("customerRef", "totalAmt"),
    "bills": ("vendorRef",),
    "purchase-orders": ("vendorRef",),
    "vendor-credits": ("vendorRef",),
    "bill-payments": ("vendorRef", "totalAmt"),
    "purchases": ("accountRef", "paymentType"),
    "departments": ("name",),
    "tax-agencies": ("displayName",),
    "journal-entries": ("line",),
    "time-activities": ("nameOf",),
}
_REQUIRED_QBE: dict[str, tuple[str, ...]] = {
    "customers": ("Name",),
    "vendors": ("Name",),
    "employees": ("FirstName",),
    "products": ("Name",),
    "invoices": ("CustomerRef",),
    "sales-receipts": ("CustomerRef",),
    "credit-memos": ("CustomerRef",),
    "sales-orders": ("CustomerRef",),
    "payments": ("CustomerRef", "TotalAmount"),
    "bills": ("VendorRef",),
    "item-receipts": ("VendorRef",),
    "vendor-credits": ("VendorRef",),
    "currencies": ("Name",),
    "inventory-sites": ("Name",),
    "payroll-wage-items": ("Name",),
    "classes": ("Name",),
}
_REQUIRED_FB: dict[str, tuple[str, ...]] = {
    "invoices": ("client_id",),
    "payments": ("amount",),
    "items": ("name",),
    "taxes": ("name", "rate"),
}


@dataclass(frozen=True)
class ElementDef:
    """One emulated element.

    :ivar style: record convention family: ``qbo`` (camelCase), ``qbe`` (PascalCase QBXML) or ``fb``
        (FreshBooks snake_case) — reference §3.5.
    :ivar date_field: the element's "updated" field (CEQL name, dotted for nested).
    :ivar date_kind: how that field is rendered: ``epoch_ms``, ``iso_offset`` or ``fb_datetime``.
    :ivar resources: every record resource of the element (reference §3.2 matrix).
    :ivar polling_resources: the resources the element's poller watches (reference §5.2).
    :ivar aliases: extra path names of resources (QBO ``/vendor``, reference §9).
    :ivar singletons: resources with one fixed record: GET/PATCH only.
    """

    key: str
    id: int
    name: str
    hook_name: str
    style: str
    resources: tuple[str, ...]
    page_cap: int
    cursor_only: bool
    supports_or: bool
    date_field: str
    created_field: str
    date_kind: str
    event_modes: tuple[str, ...]
    default_vendor_type: str
    auth_type: str
    oauth1: bool
    list_resources: frozenset[str] = field(default_factory=frozenset)
    soft_delete: frozenset[str] = field(default_factory=frozenset)
    required_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    polling_resources: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    singletons: frozenset[str] = field(default_factory=frozenset)

    def resolve(self, name: str) -> str:
        """The canonical resource name of a path segment (aliases resolved)."""
        return self.aliases.get(name, name)

    def id_field(self, resource: str) -> str:
        """Record id field: ``id``, or ``ListID``/``TxnID`` for QBE (reference §3.5)."""
        if self.style == "qbe":
            return "ListID" if resource in self.list_resources else "TxnID"
        return "id"

    @property
    def default_page_size(self) -> int:
        return min(200, self.page_cap)

    def public(self) -> dict:
        """The element object served by ``GET /elements`` (reference §2.1)."""
        return {
            "id": self.id,
            "key": self.key,
            "name": self.name,
            "hookName": self.hook_name,
            "description": f"{self.name} (Cloud Elements emulator)",
            "hub": "finance",
            "active": True,
            "deleted": False,
            "typeOauth": self.auth_type.startswith("oauth"),
            "trialAccount": False,
            "authentication": {"type": self.auth_type},
            "bulkDownloadEnabled": True,
            "bulkUploadEnabled": True,
            "cloneable": False,
            "extendable": False,
            "beta": False,
            "configDescription": f"{self.name} configuration",
        }


ELEMENTS: dict[str, ElementDef] = {
    e.key: e
    for e in (
        ElementDef(
            key="quickbooks",
            id=39,
            name="QuickBooks Online",
            hook_name="QuickBooksOnline",
            style="qbo",
            resources=QBO_ALL_RESOURCES,
            polling_resources=QBO_RESOURCES,
            aliases=QBO_PATH_ALIASES,
            singletons=QBO_SINGLETONS,
            page_cap=1000,
            cursor_only=False,
            supports_or=False,
            date_field="metaData.lastUpdatedTime",
            created_field="metaData.createTime",
            date_kind="epoch_ms",
            event_modes=("polling", "webhook"),
            default_vendor_type="polling",
            auth_type="oauth2",
            oauth1=True,
            list_resources=QBO_LISTS,
            soft_delete=QBO_LISTS,
            required_fields=_REQUIRED_QBO,
        ),
        ElementDef(
            key="quickbooksonprem",
            id=195,
            name="QuickBooks Enterprise",
            hook_name="QuickBooksEnterprise",
            style="qbe",
            resources=QBE_ALL_RESOURCES,
            polling_resources=QBE_RESOURCES,
            page_cap=500,
            cursor_only=True,
            supports_or=True,
            date_field="TimeModified",
            created_field="TimeCreated",
            date_kind="iso_offset",
            event_modes=("polling",),
            default_vendor_type="polling",
            auth_type="custom",
            oauth1=False,
            list_resources=QBE_LISTS,
            soft_delete=QBE_LISTS,
            required_fields=_REQUIRED_QBE,
        ),
        ElementDef(
            key="freshbooksv2",
            id=5924,
            name="FreshBooks Cloud Accounting",
            hook_name="Freshbooksv2",
            style="fb",
            resources=FRESHBOOKS_V2_ALL_RESOURCES,
            polling_resources=FRESHBOOKS_RESOURCES,
            page_cap=100,
            cursor_only=False,
            supports_or=True,
            date_field="updated",
            created_field="created_at",
            date_kind="fb_datetime",
            event_modes=("webhook",),
            default_vendor_type="webhook",
            auth_type="oauth2",
            oauth1=False,
            soft_delete=FRESHBOOKS_SOFT,
            required_fields=_REQUIRED_FB,
        ),
        ElementDef(
            key="freshbooks",
            id=172,
            name="FreshBooks Classic",
            hook_name="FreshBooks",
            style="fb",
            resources=FRESHBOOKS_CLASSIC_ALL_RESOURCES,
            polling_resources=FRESHBOOKS_RESOURCES,
            page_cap=100,
            cursor_only=False,
            supports_or=True,
            date_field="updated",
            created_field="created_at",
            date_kind="fb_datetime",
            event_modes=("webhook",),
            default_vendor_type="webhook",
            auth_type="oauth1",
            oauth1=True,
            soft_delete=FRESHBOOKS_SOFT,
            required_fields=_REQUIRED_FB,
        ),
    )
}
ELEMENTS_BY_ID: dict[int, ElementDef] = {e.id: e for e in ELEMENTS.values()}


def find_element(key_or_id: str | int) -> ElementDef | None:
    """Look an element up by key or numeric id (``/elements/{keyOrId}``)."""
    if isinstance(key_or_id, int) or str(key_or_id).isdigit():
        return ELEMENTS_BY_ID.get(int(key_or_id))
    return ELEMENTS.get(str(key_or_id))


#: Configuration keys whose values are masked as ``********`` in responses (reference §2.2.3).
SECRET_CONFIG_KEYS = frozenset(
    {
        "oauth.api.key",
        "oauth.api.secret",
        "password",
        "oauth.user.token",
        "oauth.user.token.secret",
        "oauth.user.refresh_token",
        "event.notification.signature.key",
    }
)
MASK = "********"


def default_configuration(element: ElementDef) -> dict[str, str | None]:
    """Configuration defaults merged under the create body (reference §2.2.2, §2.2.4, §2.2.5)."""
    base: dict[str, str | None] = {
        "event.notification.enabled": "false",
        "event.vendor.type": element.default_vendor_type,
        "event.notification.callback.url": None,
        "event.notification.signature.key": None,
        "event.poller.refresh_interval": "15",
        "filter.response.nulls": "true",
        "pagination.max": str(element.page_cap),
        "pagination.type": "cursor" if element.cursor_only else "page",
    }
    if element.style == "qbe":
        base.update(
            {
                "bulk.add_metadata": "false",
                "bulk.query.field_name": "TimeModified",
                "bulk.query.operator": ">=",
                "bulk.query.date_mask": "yyyy-MM-dd'T'HH:mm:ssXXX",
                "bulk.query.download_format": "json",
                "bulk.attribute.created_time": "TimeCreated",
                "bulk.attribute.modified_time": "TimeModified",
            }
        )
    if element.key == "freshbooks":
        base["base.url"] = "https://{site.address}/api/2.1"
    return base


def required_keys(element: ElementDef, body: dict) -> tuple[list[str], list[str]]:
    """Return (configuration keys, providerData keys) a create body must carry (reference §2.2.2).

    QBO: OAuth2 (``providerData.code`` + ``realmId``) unless the body looks like the legacy OAuth1
    flow (``providerData.oauth_token``) or token-based creation (``externalAuthentication:
    "initial"``).
    """
    provider = body.get("providerData") or {}
    config = body.get("configuration") or {}
    if element.key == "quickbooks":
        oauth = ["oauth.api.key", "oauth.api.secret", "oauth.callback.url"]
        if body.get("externalAuthentication") == "initial":
            return [*oauth, "oauth.user.token", "oauth.user.token.secret", "quickbooks.realm.id"], []
        if "oauth_token" in provider or config.get("authentication.type") == "oauth1":
            return oauth, ["oauth_token", "oauth_verifier", "secret", "realmId"]
        return oauth, ["code", "realmId"]
    if element.key == "quickbooksonprem":
        return ["app.name", "host.ip"], []
    if element.key == "freshbooksv2":
        return ["oauth.api.key", "oauth.api.secret", "oauth.callback.url", "business.name"], ["code"]
    return ["oauth.api.key", "oauth.api.secret", "freshbooks.site.address"], [
        "oauth_token",
        "oauth_verifier",
        "secret",
    ]
