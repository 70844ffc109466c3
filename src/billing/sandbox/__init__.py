"""The built-in ЮKassa sandbox: an emulator of the part of ЮKassa's API v3 billing uses.

Mounted under ``/sandbox``: ``/sandbox/v3/...`` answers like ``https://api.yookassa.ru/v3``
and ``/sandbox/checkout/{id}`` is the page a viewer is sent to. It keeps its own records
(``sandbox_payments``, ``sandbox_refunds``; the 54-FZ receipts it took ride on the payments'
records, see ``receipts``, and so do the methods saved for charges without the viewer, see
``service``) and never reads billing's. Its Stripe mode (``stripe_*``, under
``/sandbox/stripe``) keeps ``sandbox_stripe_*``: sessions, refunds, idempotency keys,
customers and their saved cards. The test cards both take are in ``cards``.
"""

# The sandbox's tables live on billing's declarative Base: importing the models here puts
# them in its metadata wherever the package is used (migrations check, test truncation).
from billing.sandbox import models as models
