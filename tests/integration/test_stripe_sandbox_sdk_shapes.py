"""The Stripe sandbox's objects and events against the official ``stripe`` SDK's declarations.

The SDK (pinned by pyproject.toml, installed in CI) is generated from Stripe's OpenAPI spec:
each resource class (``stripe.checkout.Session``, ``stripe.PaymentIntent``…) and its nested
classes annotate every field of the object. How it encodes what a field may be:

- ``X`` — always there, never null (required and not nullable in the spec);
- ``Optional[X]`` — may be null. The generator gives the same ``Optional`` to a field the
  spec marks not required, so the SDK cannot tell "null" from "absent": this test wants every
  declared field present (null where there is nothing to say), except ``MAY_BE_ABSENT``;
- ``ExpandableField[X]`` (``Union[str, X]``) — an id, or the object when expanded;
- ``Union[Literal[...], str]`` — the spec's enumeration (the ``str`` is the generator's room
  for values added later): a value must be one of those listed;
- ``ListObject[X]`` a list object of X, ``List[X]``, ``UntypedStripeObject[T]`` (metadata and
  other free-form maps), ``Decimal`` (a decimal string), ``int``, ``bool``, ``str``.

So for each object: every declared field is there, nothing the SDK does not know is there,
and each value has the declared type, nested objects recursively.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import sys
import types
import typing
from decimal import Decimal, InvalidOperation
from typing import Any, ForwardRef, Literal, Union

import httpx
import pytest
import stripe
from fastapi import FastAPI
from stripe._list_object import ListObject
from stripe._stripe_object import StripeObject, UntypedStripeObject

from tests.integration.test_sandbox_fidelity import (
    Recorder,
    app,
    drain,
    press_stripe,
    recorder,
    session_params,
    stripe_get,
    stripe_post,
)

__all__ = ["app", "recorder"]  # the fixtures, used by name

CHECKED_AGAINST = f"stripe-python {stripe.VERSION} (API version {stripe.api_version})"
Session = stripe.checkout.Session
PaymentIntent = stripe.PaymentIntent
Charge = stripe.Charge
Refund = stripe.Refund
Event = stripe.Event

# Fields the spec does not require: Stripe leaves them out unless asked for or unless they
# apply. The first five are the exemptions test_sandbox_fidelity's schema check makes.
MAY_BE_ABSENT: dict[type[StripeObject], set[str]] = {
    Session: {"line_items"},  # only with expand[]=line_items
    # On request; Radar and Connect only; Level III card data, only where the charge has it.
    Charge: {"refunds", "radar_options", "transfer", "level3"},
    stripe.LineItem: {"discounts", "taxes"},  # only with expand[]=line_items.data.discounts
    Event: {"account"},  # Connect only
    # Only for the refunds they apply to: failed ones, bank transfers, described ones.
    Refund: {
        "description",
        "instructions_email",
        "failure_balance_transaction",
        "next_action",
        "failure_reason",
    },
    # Newer than those fragments (API 2023-08-16), each for the reason given:
    # only in events of type *.updated (the SDK's docstring says so);
    Event.Data: {"previous_attributes"},
    # only with expand[]=total_details.breakdown, expand[]=amount_details.line_items;
    Session.TotalDetails: {"breakdown"},
    PaymentIntent.AmountDetails: {"line_items"},
    # multi-currency prices and tiered pricing, only when expanded; a one-off price has none;
    stripe.Price: {"currency_options", "tiers"},
    # Stripe answers "tip": {} and "fraud_details": {} when there is no tip and no report;
    PaymentIntent.AmountDetails.Tip: {"amount"},
    Charge.FraudDetails: {"stripe_report", "user_report"},
}

# Objects of which Stripe requires only some fields, the rest there when they apply.
ONLY_THESE_ALWAYS: dict[type[StripeObject], set[str]] = {
    # An error carries what applies to it: Stripe's ``api_errors`` schema requires only
    # ``type`` (the schema test checked it with complete=False).
    PaymentIntent.LastPaymentError: {"type"},
    # Card options are listed as set, unset ones left out: Stripe's answers show these.
    PaymentIntent.PaymentMethodOptions.Card: {
        "installments",
        "mandate_options",
        "network",
        "request_three_d_secure",
    },
    Session.PaymentMethodOptions.Card: {"request_three_d_secure"},
}


def one_per_payment_method(cls: type[StripeObject], body: dict[str, Any],
                           parent: dict[str, Any]) -> set[str] | None:  # fmt: skip
    """Objects with one entry per payment method type (``card``, ``sepa_debit``…): Stripe
    includes only the entries that apply — the ``type`` used, or the types the intent or
    session allows. None for every other object."""
    if cls in (Charge.PaymentMethodDetails, Refund.DestinationDetails):
        return {"type", body.get("type", "")}
    if cls in (PaymentIntent.PaymentMethodOptions, Session.PaymentMethodOptions):
        return set(parent.get("payment_method_types", []))
    return None


# --- reading the SDK's declarations -----------------------------------------------------------


@functools.cache
def _names(module_name: str) -> dict[str, Any]:
    """The names a generated module's annotations use, with those it imports only for type
    checking (``if TYPE_CHECKING: from stripe._customer import Customer``)."""
    module = sys.modules[module_name]
    names = dict(vars(module))
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            imports: list[ast.stmt] = [
                part for part in node.body if isinstance(part, ast.ImportFrom)
            ]
            code = compile(ast.Module(body=imports, type_ignores=[]), "<imports>", "exec")
            exec(code, names)  # noqa: S102 - the SDK's own import lines, nothing else
    return names


def declared(cls: type[StripeObject]) -> dict[str, Any]:
    """The fields ``cls`` declares (its own annotations, not the base classes' ClassVars)."""
    own: dict[str, Any] = inspect.get_annotations(cls)
    return {
        name: hint
        for name, hint in own.items()
        if typing.get_origin(hint) is not typing.ClassVar and not name.startswith("_")
    }


def _resolved(hint: Any, module_name: str) -> Any:
    if isinstance(hint, ForwardRef):
        return eval(hint.__forward_arg__, _names(module_name))  # noqa: S307 - the SDK's names
    if isinstance(hint, str):
        return eval(hint, _names(module_name))  # noqa: S307
    return hint


# --- checking a value against a declaration -------------------------------------------------


class Check:
    """Collects what is wrong, each with the path to it (``charge.outcome.type``)."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def object(self, body: Any, cls: type[StripeObject], path: str,
               parent: dict[str, Any] | None = None) -> None:  # fmt: skip
        if not isinstance(body, dict):
            self.problems.append(f"{path}: {type(body).__name__}, not a {cls.__qualname__}")
            return
        fields = declared(cls)
        expected = set(fields) - MAY_BE_ABSENT.get(cls, set())
        expected &= ONLY_THESE_ALWAYS.get(cls, expected)
        if fields.get("deleted") == Literal[True] | None:  # only answers to a DELETE have it
            expected.discard("deleted")
        applies = one_per_payment_method(cls, body, parent or {})
        if applies is not None:
            expected &= applies
        for name in sorted(expected - set(body)):
            self.problems.append(f"{path}.{name}: missing ({_shown(fields[name])})")
        for name in sorted(set(body) - set(fields)):
            self.problems.append(f"{path}.{name}: not a field of {cls.__qualname__}")
        for name in sorted(set(body) & set(fields)):
            self.value(body[name], fields[name], f"{path}.{name}", cls.__module__, body)

    def value(self, value: Any, hint: Any, path: str, module: str,
              parent: dict[str, Any]) -> None:  # fmt: skip
        hint = _resolved(hint, module)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is Any:
            return
        if value is None and origin not in (Union, types.UnionType):
            self.problems.append(f"{path}: null, but the SDK says it never is")
            return
        if origin in (Union, types.UnionType):
            self._union(value, args, path, module, parent)
        elif origin is Literal:
            if value not in args:
                self.problems.append(f"{path}: {value!r} is not one of {list(args)}")
        elif hint is bool:
            self._is(value, bool, path)
        elif hint is int:
            self._is(value, int, path, not isinstance(value, bool))
        elif hint is float:
            self._is(value, (int, float), path, not isinstance(value, bool))
        elif hint is str:
            self._is(value, str, path)
        elif hint is Decimal:
            self._is(value, str, path, _is_decimal(value))
        elif origin in (list, typing.List):  # noqa: UP006 - the SDK's spelling
            if self._is(value, list, path):
                for index, item in enumerate(value):
                    self.value(item, args[0], f"{path}[{index}]", module, parent)
        elif origin in (dict, typing.Dict):  # noqa: UP006
            if self._is(value, dict, path):
                for key, item in value.items():
                    self.value(item, args[1], f"{path}.{key}", module, parent)
        elif origin is UntypedStripeObject:
            if self._is(value, dict, path):
                for key, item in value.items():
                    self.value(item, args[0], f"{path}.{key}", module, parent)
        elif origin is ListObject:
            self._list_object(value, args[0], path, module)
        elif isinstance(hint, type) and issubclass(hint, StripeObject):
            self.object(value, hint, path, parent)
        else:
            self.problems.append(f"{path}: the check does not know the SDK's type {hint!r}")

    def _union(self, value: Any, options: tuple[Any, ...], path: str, module: str,
               parent: dict[str, Any]) -> None:  # fmt: skip
        if value is None:
            if type(None) not in options:
                self.problems.append(f"{path}: null, but the SDK says it never is")
            return
        options = tuple(_resolved(option, module) for option in options if option is not type(None))
        literals = [arg for option in options if typing.get_origin(option) is Literal
                    for arg in typing.get_args(option)]  # fmt: skip
        if literals and str in options and len(options) == 2:  # an enumeration, open for later
            if value not in literals:
                self.problems.append(f"{path}: {value!r} is not one of {literals}")
            return
        if isinstance(value, str) and str in options:  # an expandable field's id, or a string
            return
        classes = [option for option in options
                   if isinstance(option, type) and issubclass(option, StripeObject)]  # fmt: skip
        if isinstance(value, dict) and classes:
            named = [
                cls for cls in classes if getattr(cls, "OBJECT_NAME", None) == value.get("object")
            ]
            self.object(value, (named or classes)[0], path, parent)
            return
        if len(options) == 1:
            self.value(value, options[0], path, module, parent)
            return
        self.problems.append(f"{path}: {value!r} is none of {[_shown(o) for o in options]}")

    def _list_object(self, value: Any, item: Any, path: str, module: str) -> None:
        if not self._is(value, dict, path):
            return
        if set(value) != {"object", "data", "has_more", "url"} or value["object"] != "list":
            self.problems.append(f"{path}: not a list object ({sorted(value)})")
        self._is(value.get("has_more"), bool, f"{path}.has_more")
        self._is(value.get("url"), str, f"{path}.url")
        if self._is(value.get("data"), list, f"{path}.data"):
            for index, entry in enumerate(value["data"]):
                self.value(entry, item, f"{path}.data[{index}]", module, value)

    def _is(self, value: Any, kind: type | tuple[type, ...], path: str, also: bool = True) -> bool:
        if isinstance(value, kind) and also:
            return True
        self.problems.append(f"{path}: {value!r} is not {_shown(kind)}")
        return False


def _is_decimal(value: Any) -> bool:
    try:
        return isinstance(value, str) and Decimal(value).is_finite()
    except InvalidOperation:
        return False


def _shown(hint: Any) -> str:
    named = hint.__name__ if isinstance(hint, type) else str(hint)
    return re.sub(r"\b(typing|typing_extensions|stripe\.[\w.]+)\.", "", named)


def problems(body: Any, cls: type[StripeObject], name: str | None = None) -> list[str]:
    check = Check()
    check.object(body, cls, name or str(getattr(cls, "OBJECT_NAME", cls.__qualname__)))
    return check.problems


def assert_as_declared(body: Any, cls: type[StripeObject]) -> None:
    found = problems(body, cls)
    assert found == [], f"{len(found)} differences from {CHECKED_AGAINST}:\n" + "\n".join(found)


# --- the check itself can fail ---------------------------------------------------------------


def test_the_check_reports_missing_unknown_and_mistyped_fields() -> None:
    refund = {
        "id": "re_1", "object": "refund", "amount": "100", "charge": {"id": "ch_1"},
        "created": 1, "currency": "rub", "metadata": {"order": 7}, "payment_intent": None,
        "reason": "changed_mind", "status": None, "refunded_by": "sandbox",
    }  # fmt: skip

    found = problems(refund, Refund)

    assert "refund.amount: '100' is not int" in found
    assert "refund.created: missing" not in found
    assert any(line.startswith("refund.balance_transaction: missing") for line in found)
    assert "refund.refunded_by: not a field of Refund" in found
    assert "refund.metadata.order: 7 is not str" in found
    assert any(line.startswith("refund.reason: 'changed_mind' is not one of") for line in found)
    # An expanded object is checked as the object it is: this charge lacks nearly everything.
    assert any(line.startswith("refund.charge.amount: missing") for line in found)
    assert any(line.startswith("charge.created: null") for line in problems(
        {"created": None}, Charge))  # fmt: skip


# --- the sandbox ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider_name", ["stripe"])
async def test_stripe_sandbox_objects_and_events_are_as_the_sdk_declares(
    app: FastAPI, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    found: list[str] = []  # every difference, so that one run lists them all
    created = await stripe_post(client, "/checkout/sessions", session_params(), key="k1")
    assert created.status_code == 200, created.text
    session = created.json()
    found += problems(session, Session, "created")

    assert (await press_stripe(client, session["id"], action="decline")).status_code == 200
    declined = await stripe_get(
        client, f"/checkout/sessions/{session['id']}?expand[]=payment_intent.latest_charge"
    )
    assert declined["payment_intent"]["status"] == "requires_payment_method"
    assert declined["payment_intent"]["latest_charge"]["status"] == "failed"
    found += problems(declined, Session, "declined")

    assert (await press_stripe(client, session["id"], action="pay")).status_code == 303
    paid = await stripe_get(
        client,
        f"/checkout/sessions/{session['id']}?expand[]=line_items"
        "&expand[]=payment_intent.latest_charge",
    )
    intent = paid["payment_intent"]
    assert intent["latest_charge"]["status"] == "succeeded"
    found += problems(paid, Session, "paid")
    found += problems(await stripe_get(client, f"/payment_intents/{intent['id']}"), PaymentIntent)

    refunded = await stripe_post(client, "/refunds", {"payment_intent": intent["id"]}, key="r1")
    assert refunded.status_code == 200, refunded.text
    found += problems(refunded.json(), Refund)
    assert await stripe_get(client, f"/refunds/{refunded.json()['id']}") == refunded.json()

    await drain(app)
    events = recorder.bodies("/api/v1/webhooks/stripe")
    assert [sent["type"] for sent in events] == [
        "payment_intent.payment_failed", "checkout.session.completed", "charge.refunded",
    ]  # fmt: skip
    subjects: dict[str, type[StripeObject]] = {
        "payment_intent": PaymentIntent,
        "checkout": Session,
        "charge": Charge,
    }
    for sent in events:
        assert sent["api_version"] == stripe.api_version
        found += problems(sent, Event, sent["type"])
        found += problems(sent["data"]["object"], subjects[sent["type"].split(".")[0]],
                          f"{sent['type']}.data.object")  # fmt: skip
    assert found == [], f"{len(found)} differences from {CHECKED_AGAINST}:\n" + "\n".join(found)
