"""fulsk-chaos: chaos and resilience testing for the Fulsk solar-monitoring stack."""
__version__ = "0.1.0"
