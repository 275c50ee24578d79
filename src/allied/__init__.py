"""Allied: federated sharing of STIX 2.1 cyber threat intelligence between partner nations."""

__version__ = "0.1.0"
