"""QuickBooks Online record ids as the element serves them, ``<id>|<syncToken>`` (reference §3.5)."""

from __future__ import annotations

from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError


def bare_id(raw_id: Any) -> str:
    """A record id without a QBO ``|syncToken`` suffix (reference §3.5)."""
    return str(raw_id).split("|", 1)[0]


def _bare_qbo_id_literals(where: str) -> str:
    """Rewrite QBO ``<id>|<syncToken>`` literals in a CEQL ``where`` to bare ids.

    ``id = '22|3'`` / ``id IN ('22|3', '5')`` → the same with bare ids: a QBO id read as ``<id>|<syncToken>`` can be fed
    back into a CEQL ``where`` (the predicate compares ``id`` on the part before ``|``, :meth:`HubService.predicate`).
    Unparseable text is returned as is (compiling reports it).
    """
    try:
        tree = sqlglot.parse_one(f"SELECT * FROM t WHERE {where}", read="mysql")
    except SqlglotError:
        return where
    node = tree.args.get("where") if isinstance(tree, exp.Select) else None
    if node is None:
        return where
    for literal in list(node.find_all(exp.Literal)):
        parent = literal.parent.parent if isinstance(literal.parent, exp.Tuple) else literal.parent
        if parent is None:
            continue
        columns = [c for c in (parent.args.get("this"), parent.args.get("expression")) if isinstance(c, exp.Column)]
        if literal.is_string and "|" in literal.this and any(c.name == "id" and not c.table for c in columns):
            literal.replace(exp.Literal.string(bare_id(literal.this)))
    return node.this.sql(dialect="mysql")
