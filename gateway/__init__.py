"""mssgw: a secure health-mail gateway for the MSSanté trust space and the e-prescription."""

__version__ = "0.1.0"
