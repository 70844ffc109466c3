"""The errors of pricing: promo codes and discounts."""

from __future__ import annotations

from billing.catalog.errors import TARIFF_INACTIVE, TARIFF_NOT_FOUND
from billing.errors import ApiError
from billing.pricing import rules

PROMO_CODE_NOT_FOUND = ApiError(404, "promo_code_not_found", "no such promo code")
# The pure rules name why a code cannot be used (rules.promo_problem); these say it as errors.
PROMO_CODE_EXPIRED = ApiError(
    422, rules.PROMO_CODE_EXPIRED, "the promo code is not valid now, or was deactivated"
)
PROMO_CODE_NOT_APPLICABLE = ApiError(
    422, rules.PROMO_CODE_NOT_APPLICABLE, "the promo code is not for this tariff or currency"
)
PROMO_CODE_EXHAUSTED = ApiError(422, "promo_code_exhausted", "the promo code is used up")
PROMO_CODE_ALREADY_USED = ApiError(
    422, "promo_code_already_used", "this viewer has used the promo code already"
)
PROMO_CODE_EXISTS = ApiError(409, "promo_code_exists", "a promo code with this code exists")
# An admin's change that the code's redemptions or window refuse (PATCH /promo-codes/{code}).
PROMO_CODE_LIMIT_BELOW_TAKEN = ApiError(
    409,
    "promo_code_limit_below_taken",
    "the limit is below the redemptions already reserved or redeemed",
)
PROMO_CODE_NOT_REACTIVATABLE = ApiError(
    409,
    "promo_code_not_reactivatable",
    "an ended or used-up code is reactivated only with a window or limit that admits it",
)
DURATION_DISCOUNT_NOT_FOUND = ApiError(404, "not_found", "no discount for this many months")
PERSONAL_DISCOUNT_NOT_FOUND = ApiError(404, "not_found", "the user has no personal discount")

# Every reason a viewer cannot use a promo code, by its code.
PROMO_CODE_UNUSABLE = {
    error.code: error
    for error in (
        PROMO_CODE_EXPIRED,
        PROMO_CODE_NOT_APPLICABLE,
        PROMO_CODE_EXHAUSTED,
        PROMO_CODE_ALREADY_USED,
    )
}

# What a quote can answer (an invoice is a quote frozen, so it answers them too).
QUOTE_ERRORS = (
    TARIFF_NOT_FOUND,
    TARIFF_INACTIVE,
    PROMO_CODE_NOT_FOUND,
    *PROMO_CODE_UNUSABLE.values(),
)
