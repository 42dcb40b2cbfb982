"""This host as the framework sees it: processes read from /proc, free ports, the Docker engine."""
