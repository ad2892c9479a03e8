"""The signed-in customer of a request: from the session cookie, for reading; with the CSRF checks, for writing."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from letsbe_hub.customers import service
from letsbe_hub.customers.models import Customer
from letsbe_hub.web.csrf import CustomerWrite
from letsbe_hub.web.sessions import CUSTOMER, CustomerSession, SignInRequired
from letsbe_platform.errors import NotFound
from letsbe_platform.web import SessionDep


async def _customer(session: SessionDep, web: CustomerSession) -> Customer:
    try:
        return await service.get_customer(session, web.principal_id)
    except NotFound:
        raise SignInRequired(CUSTOMER) from None


async def _customer_writing(session: SessionDep, web: CustomerWrite) -> Customer:
    return await _customer(session, web)


CurrentCustomer = Annotated[Customer, Depends(_customer)]
CustomerWriting = Annotated[Customer, Depends(_customer_writing)]  # POSTs: Origin + CSRF token checked
