"""The tenant mail server's client ports: the DNS service publishes them as SRV records, the provisioner opens them
in the tenant's firewall."""

# (service, port) for Stalwart's SRV records: RFC 6186 / 8314 client discovery, JMAP (RFC 8620) and Outlook.
MAIL_SRV = (
    ("_jmap._tcp", 443),
    ("_imaps._tcp", 993),
    ("_imap._tcp", 143),
    ("_pop3s._tcp", 995),
    ("_submissions._tcp", 465),
    ("_submission._tcp", 587),
    ("_autodiscover._tcp", 443),
)
