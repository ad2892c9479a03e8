"""Customer accounts (identified by the email their orders carry), their sign-in links, the customer API
(``/api/v1/customer``) and the portal's pages (``/portal``)."""
